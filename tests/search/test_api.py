import json
import math

import pytest
import torch

from sqft.data import MCExample, TrainingExample
from sqft.errors import SqftError
from sqft.search.api import (
    SearchConfig,
    choose_configuration,
    make_score_fn,
    mean_token_loss,
    write_search_outputs,
)
from sqft.search.hill_climbing import HillClimbingConfig, hill_climb
from sqft.search.space import SearchSpace, load_config

PNG = b"\x89PNG\r\n\x1a\n"


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


def test_heuristic_strategy_scores_its_one_configuration(space):
    calls = []
    res = choose_configuration(space, "minimal", lambda c: calls.append(c) or 0.25, HillClimbingConfig())
    assert res.best == space.minimal() and res.best_score == 0.25 and calls == [space.minimal()]
    unscored = choose_configuration(space, "maximal", None, HillClimbingConfig())
    assert unscored.best == space.maximal() and math.isnan(unscored.best_score) and unscored.evaluations == []


def test_outputs_round_trip(tmp_path, space):
    res = hill_climb(space, lambda c: -abs(sum(c.values()) - 40), HillClimbingConfig(3, 2, 1, 6), quiet=True)
    summary = write_search_outputs(tmp_path, res, space, {"strategy": "hill-climbing", "metric": "loss"})
    assert load_config(tmp_path / "configuration.json", space) == res.best
    data = json.loads((tmp_path / "search.json").read_text())
    assert (
        data["n_evaluations"] == len(data["evaluations"]) == len(res.evaluations) == summary["n_evaluations"]
    )
    assert data["evaluations"][0]["config"] == space.median() and data["score"] == res.best_score
    assert max(e["score"] for e in data["evaluations"]) == data["score"] >= data["start_score"]
    for name in ("rank_distribution.png", "search_trace.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"strategy": "best"}, "strategy 'best'"),
        ({"strategy": "hill-climbing"}, "--validation"),
        ({"strategy": "median", "metric": "bleu"}, "metric"),
        ({"strategy": "median", "proxy_samples": 0}, "proxy_samples"),
        ({"strategy": "hill-climbing", "validation": "v.jsonl", "budget": 0}, "budget"),
    ],
)
def test_search_config_rejects_bad_values(kwargs, words):
    with pytest.raises(SqftError, match=words):
        SearchConfig(**kwargs)


def test_split_group_finds_the_layer_index():
    from sqft.search.plots import split_group

    assert split_group("model.layers.12.qkv") == (12, "model.layers.*.qkv")
    assert split_group("model.layers.3.self_attn.q_proj") == (3, "model.layers.*.self_attn.q_proj")
    assert split_group("shared") == (None, "shared")


def test_test_data_in_another_format_is_read_in_its_own(tmp_path):
    import json

    from sqft.search.api import SearchConfig, _validation_proxy

    valid = tmp_path / "valid.json"  # LLM-Adapters records (loss metric)
    valid.write_text(
        json.dumps([{"instruction": f"Is {i} even?", "input": "", "output": "yes"} for i in range(4)])
    )
    test = tmp_path / "test.jsonl"  # multiple choice
    test.write_text(
        "".join(json.dumps({"query": f"Q{i}", "choices": ["a", "b"], "gold": 0}) + "\n" for i in range(3))
    )
    fmt, metric, proxy, _ = _validation_proxy(
        SearchConfig(strategy="median", validation=str(valid), test_data=str(test), proxy_samples=4)
    )
    assert (fmt, metric, len(proxy)) == ("math", "loss", 4)
