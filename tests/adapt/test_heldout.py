"""Held-out loss: a token-weighted mean independent of batching, logged on schedule at a fixed sub-adapter."""

import torch

from sqft.adapt import AdaptConfig, TrainConfig, adapter_layers, groups_of, inject_adapters, set_active_ranks
from sqft.adapt.heldout import HeldOutLossCallback, mean_token_loss
from sqft.adapt.train import finetune
from sqft.data import as_training_examples, build_training_dataset, pad_collate
from tests.adapt.helpers import sparse_model
from tests.adapt.test_train import RECORDS
from tests.conftest import char_tokenizer
from tests.tolerance import assert_close


def _rows(tokenizer, records, cutoff=48):
    return build_training_dataset(tokenizer, as_training_examples(records), cutoff)


def test_mean_token_loss_is_the_token_weighted_mean_whatever_the_batching():
    tok, model = char_tokenizer(), sparse_model().eval()
    rows = _rows(tok, RECORDS[:5])
    collate = pad_collate(tok)
    losses = [mean_token_loss(model, rows, collate, batch_size=b) for b in (1, 2, 5)]
    for loss in losses[1:]:
        assert_close(loss, losses[0], torch.float32, 64)  # batched: padded rows, sums in another order
    # by hand: Σ over rows of (row mean × its labelled positions) / all labelled positions
    per_row = []
    for r in rows:
        ids = torch.tensor([r["input_ids"]])
        with torch.no_grad():
            out = model(input_ids=ids, labels=ids)
        per_row.append((float(out.loss), len(r["input_ids"]) - 1))
    want = sum(loss * n for loss, n in per_row) / sum(n for _, n in per_row)
    assert_close(losses[0], want, torch.float32, 64)


def test_callback_logs_on_schedule_at_the_median_configuration_and_restores_ranks(tmp_path):
    tok, model = char_tokenizer(), sparse_model()
    heldout = _rows(tok, RECORDS[12:])
    cb = HeldOutLossCallback(model, heldout, pad_collate(tok), every=2)
    adapt = AdaptConfig.for_pipeline("sqft-sparsepeft", r_max=8, ranks=(8, 6, 4), alpha=16, dropout=0.0)
    train = TrainConfig(
        batch_size=4, micro_batch_size=2, warmup_steps=0, max_steps=5, learning_rate=2e-2, cutoff=48
    )
    finetune(model, tok, RECORDS[:12], adapt, train, tmp_path / "w", progress=False, callbacks=[cb])
    assert [s for s, _ in cb.curve] == [0, 2, 4, 5]  # step 0, every 2, and the last
    assert cb.config == dict.fromkeys(groups_of(model), 6)  # the median of (8, 6, 4)
    assert cb.curve[-1][1] < cb.curve[0][1]  # the adapter learns on held-out text too
    # evaluate() leaves the sampler's ranks as they were
    set_active_ranks(model, dict.fromkeys(groups_of(model), 4))
    loss = cb.evaluate(99)
    assert all(m.active_rank == 4 for m in adapter_layers(model).values() if m.group is not None)
    set_active_ranks(model, cb.config)
    assert_close(mean_token_loss(model.eval(), heldout, pad_collate(tok)), loss, torch.float32, 64)


def test_callback_without_nls_groups_evaluates_the_model_as_is():
    tok, model = char_tokenizer(), sparse_model()
    inject_adapters(model, AdaptConfig(adapter="lora", r_max=4, alpha=8))
    cb = HeldOutLossCallback(model, _rows(tok, RECORDS[:3]), pad_collate(tok))
    assert cb.evaluate(0) == mean_token_loss(model.eval(), cb.rows, cb.collate) and cb.config == {}
