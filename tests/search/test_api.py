import json
import math

import pytest

from sqft.errors import SqftError
from sqft.search.api import (
    SearchConfig,
    choose_configuration,
    write_search_outputs,
)
from sqft.search.hill_climbing import HillClimbingConfig, hill_climb
from sqft.search.space import SearchSpace, load_config

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def space():
    return SearchSpace({f"model.layers.{i}.self_attn": [32, 24, 16] for i in range(2)})


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

    from sqft.search.api import SearchConfig, validation_proxy

    valid = tmp_path / "valid.json"  # LLM-Adapters records (loss metric)
    valid.write_text(
        json.dumps([{"instruction": f"Is {i} even?", "input": "", "output": "yes"} for i in range(4)])
    )
    test = tmp_path / "test.jsonl"  # multiple choice
    test.write_text(
        "".join(json.dumps({"query": f"Q{i}", "choices": ["a", "b"], "gold": 0}) + "\n" for i in range(3))
    )
    fmt, metric, proxy, _ = validation_proxy(
        SearchConfig(strategy="median", validation=str(valid), test_data=str(test), proxy_samples=4)
    )
    assert (fmt, metric, len(proxy)) == ("math", "loss", 4)
