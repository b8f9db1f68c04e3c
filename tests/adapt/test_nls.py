"""NLS sampling: seeded, once per optimizer step, statistics, consistent under gradient checkpointing."""

import torch

from sqft.adapt import AdaptConfig, adapter_layers, groups_of, inject_adapters, set_active_ranks
from sqft.adapt.nls import NLSSampler, NLSStats
from tests.adapt.helpers import randomize_adapters_, sparse_model, tokens

SPACES = {"a": [32, 24, 16], "b": [32, 24, 16], "c": [8, 4]}


def test_sampler_is_seeded_and_uniform():
    s0, s0b, s1 = NLSSampler(SPACES, 0), NLSSampler(SPACES, 0), NLSSampler(SPACES, 1)
    draws = [s0.sample(t) for t in range(600)]
    assert draws == [s0b.sample(t) for t in range(600)]
    assert draws != [s1.sample(t) for t in range(600)]
    assert all(d["c"] in (8, 4) for d in draws)
    counts = torch.tensor([sum(d["a"] == r for d in draws) for r in (32, 24, 16)], dtype=torch.float)
    assert (counts - 200).abs().max() < 4 * (600 * (1 / 3) * (2 / 3)) ** 0.5  # within 4σ of uniform


def test_stats_counts_sum_to_steps_and_mean_loss():
    stats = NLSStats({"a": [32, 16]})
    for r, loss in [(32, 1.0), (16, 2.0), (32, 3.0)]:
        stats.record({"a": r}, loss)
    js = stats.to_json()
    assert (
        js["steps"] == 3 and sum(js["counts"]["a"].values()) == 3 and js["counts"]["a"] == {"32": 2, "16": 1}
    )
    assert js["loss_by_config"] == [
        {"config": {"a": 32}, "mean_loss": 2.0, "n": 2},
        {"config": {"a": 16}, "mean_loss": 2.0, "n": 1},
    ]
    assert NLSStats.from_json(js).to_json() == js


def _grads(model, x, checkpointing: bool):
    model.train()
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.activation_checkpointing_disable()
    model.zero_grad()
    torch.manual_seed(7)  # same dropout masks; checkpointing replays the RNG state in recomputation
    model(x, labels=x).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_recomputes_with_the_forward_rank():
    model = sparse_model()
    inject_adapters(model, AdaptConfig(sparse_adapter=True, dropout=0.1))
    randomize_adapters_(model)
    set_active_ranks(model, {"model.layers.0.qkv": 16, "model.layers.1.qkv": 24})
    x = tokens()
    plain = _grads(model, x, checkpointing=False)
    ckpt = _grads(model, x, checkpointing=True)
    assert plain.keys() == ckpt.keys() and len(plain) == 20
    for n in plain:
        assert torch.equal(plain[n], ckpt[n]), n
    q = adapter_layers(model)["model.layers.0.self_attn.q_proj"]
    assert (
        q.lora_A.grad[16:].abs().sum() == 0 and q.lora_A.grad[:16].abs().sum() > 0
    )  # only rank-16 rows train
    assert groups_of(model)
