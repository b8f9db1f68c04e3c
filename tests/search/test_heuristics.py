import json

import pytest

from sqft.errors import SqftError
from sqft.search.heuristics import resolve_config
from sqft.search.space import SearchSpace


@pytest.fixture
def space():
    return SearchSpace({"a": [32, 24, 16], "b": [32, 24, 16], "c": [16, 8]})


def test_named_reference_configurations(space):
    assert resolve_config("median", space, None) == {"a": 24, "b": 24, "c": 16}
    assert resolve_config("maximal", space, None) == {"a": 32, "b": 32, "c": 16}
    assert resolve_config("minimal", space, None) == {"a": 16, "b": 16, "c": 8}


def test_most_frequent_picks_argmax_and_breaks_ties_to_larger_rank(space):
    counts = {"a": {"32": 5, "24": 9, "16": 1}, "b": {"32": 4, "16": 4}, "c": {"8": 2}}
    assert resolve_config("most-frequent", space, {"counts": counts}) == {"a": 24, "b": 32, "c": 8}


def test_most_frequent_rejects_foreign_stats(space):
    with pytest.raises(SqftError, match="no entry for group 'c'"):
        resolve_config("most-frequent", space, {"counts": {"a": {"32": 1}, "b": {"32": 1}}})
    with pytest.raises(SqftError, match="outside its space"):
        resolve_config("most-frequent", space, {"counts": {"a": {"12": 1}, "b": {}, "c": {}}})


def _entry(a, b, c, loss):
    return {"config": {"a": a, "b": b, "c": c}, "mean_loss": loss, "n": 3}


def test_min_loss_votes_over_top_k_and_single_best(space):
    stats = {
        "loss_by_config": [
            _entry(32, 16, 8, 1.30),
            _entry(16, 16, 16, 1.00),  # the single best
            _entry(24, 16, 8, 1.10),
            _entry(24, 32, 8, 1.20),
            _entry(16, 32, 16, 9.00),  # outside the top 3
        ]
    }
    assert resolve_config("min-loss:1", space, stats) == {"a": 16, "b": 16, "c": 16}
    # top 3 = losses 1.00, 1.10, 1.20: a → 24 (2 votes), b → 16 (2 votes), c → 8 (2 votes)
    assert resolve_config("min-loss:3", space, stats) == {"a": 24, "b": 16, "c": 8}
    # top 2: a ties 16 vs 24 → rank of the lower-loss configuration (16)
    assert resolve_config("min-loss:2", space, stats) == {"a": 16, "b": 16, "c": 16}
    assert resolve_config("min-loss", space, stats) == resolve_config("min-loss:10", space, stats)


@pytest.mark.parametrize("spec", ["most-frequent", "min-loss"])
def test_heuristics_needing_stats_fail_clearly_without_them(space, spec):
    for stats in (None, {}, {"counts": {}, "loss_by_config": []}):
        with pytest.raises(SqftError, match="nls_stats"):
            resolve_config(spec, space, stats)


def test_unknown_spec_and_bad_k(space):
    with pytest.raises(SqftError, match="unknown configuration"):
        resolve_config("best", space, None)
    with pytest.raises(SqftError, match="positive integer"):
        resolve_config("min-loss:0", space, {"loss_by_config": [_entry(32, 32, 16, 1.0)]})


def test_json_path(tmp_path, space):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps({"a": 16, "b": 32, "c": 8}))
    assert resolve_config(str(p), space, None) == {"a": 16, "b": 32, "c": 8}
    with pytest.raises(SqftError, match="does not exist"):
        resolve_config(str(tmp_path / "missing.json"), space, None)
