"""Proxy-set scores of sub-adapter candidates (the callables the search stage hands to `sqft.search`)."""

import pytest
import torch

from sqft.data import MCExample, TrainingExample
from sqft.evaluate.proxy import make_score_fn, mean_token_loss
from sqft.search.space import SearchSpace


@pytest.fixture
def space():
    return SearchSpace({f"model.layers.{i}.self_attn": [32, 24, 16] for i in range(2)})


def test_mean_token_loss_is_the_models_own_loss(model, tokenizer):
    ex = TrainingExample("Question: 2+2?\nAnswer:", " 4")
    ids = tokenizer(ex.text, return_tensors="pt")["input_ids"]
    ids = torch.cat([ids, torch.tensor([[tokenizer.eos_token_id]])], dim=1)
    with torch.no_grad():
        want = model(input_ids=ids, labels=ids).loss.item()
    assert mean_token_loss(model, tokenizer, [ex]) == pytest.approx(want, rel=1e-5)


def test_mean_token_loss_is_token_weighted_across_batches(model, tokenizer):
    exs = [
        TrainingExample("Q: a\nA:", " b"),
        TrainingExample("Question: a longer one?\nAnswer:", " yes it is"),
    ]
    one = mean_token_loss(model, tokenizer, exs, batch_size=1)
    assert mean_token_loss(model, tokenizer, exs, batch_size=2) == pytest.approx(one, rel=1e-5)


def test_score_fn_switches_ranks_then_scores(model, tokenizer, space):
    seen = []
    proxy = [TrainingExample("Q: 1+1?\nA:", " 2")]
    score = make_score_fn(model, tokenizer, proxy, "loss", lambda m, c: seen.append(dict(c)))
    s = score(space.median())
    assert seen == [space.median()]
    assert s == pytest.approx(-mean_token_loss(model, tokenizer, proxy))
    mc = [MCExample("Is the sky blue?", ("yes", "no"), 0), MCExample("Is fire cold?", ("yes", "no"), 1)]
    acc = make_score_fn(model, tokenizer, mc, "accuracy", lambda m, c: None)(space.median())
    assert acc in (0.0, 0.5, 1.0)
