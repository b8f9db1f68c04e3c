import random

import pytest

from sqft.errors import SqftError
from sqft.search.hill_climbing import CachedScorer, HillClimbingConfig, hill_climb
from sqft.search.space import SearchSpace

RANKS = [32, 28, 24, 20, 16, 12, 8]


def make_space(n_groups=6):
    return SearchSpace({f"layer.{i}": RANKS for i in range(n_groups)})


def target(space):
    """A known optimum away from the median (20): alternate 32 / 8 (3 positions away, each group)."""
    return {g: (32 if i % 2 else 8) for i, g in enumerate(space.groups)}


def distance_score(space, opt):
    """Higher is better; 0 exactly at the optimum, -(sum of position distances) elsewhere."""
    p_opt = space.positions(opt)

    def score(config):
        return -float(sum(abs(a - b) for a, b in zip(space.positions(config), p_opt, strict=True)))

    return score


def test_finds_known_optimum_within_budget():
    space = make_space()
    opt = target(space)
    cfg = HillClimbingConfig(turns=30, neighbours=6, step=1, budget=120, seed=0)
    res = hill_climb(space, distance_score(space, opt), cfg, quiet=True)
    assert res.best == opt and res.best_score == 0.0
    assert len(res.evaluations) <= 120
    assert res.start == space.median() and res.start_score == -18.0  # 6 groups × 3 positions


def test_visited_configurations_are_never_rescored():
    space = make_space(3)
    calls = []

    def score(config):
        calls.append(space.key(config))
        return -abs(config["layer.0"] - 8) - abs(config["layer.1"] - 32)

    res = hill_climb(
        space, score, HillClimbingConfig(turns=50, neighbours=4, step=1, budget=60, seed=3), quiet=True
    )
    assert len(calls) == len(set(calls)) == len(res.evaluations)
    assert len({space.key(e.config) for e in res.evaluations}) == len(res.evaluations)


def test_cached_scorer_counts_real_calls():
    space = make_space(2)
    scorer = CachedScorer(space, lambda c: float(c["layer.0"]))
    for _ in range(3):
        assert scorer(space.median()) == 20.0
    assert scorer.calls == 1


def test_budget_caps_scored_configurations():
    space = make_space()
    for budget in (1, 2, 7, 13):
        res = hill_climb(
            space, distance_score(space, target(space)), HillClimbingConfig(10, 5, 1, budget), quiet=True
        )
        assert len(res.evaluations) == budget


def test_seeded_runs_repeat_exactly_and_seeds_differ():
    space = make_space()
    score = distance_score(space, target(space))
    runs = [hill_climb(space, score, HillClimbingConfig(8, 4, 2, 40, seed=s), quiet=True) for s in (7, 7, 8)]
    trace = [[(e.config, e.score) for e in r.evaluations] for r in runs]
    assert trace[0] == trace[1]
    assert trace[0] != trace[2]


def test_median_first_and_never_worse_than_median():
    space = make_space()
    score = distance_score(space, space.median())  # the median is the global optimum: nothing beats it
    res = hill_climb(space, score, HillClimbingConfig(5, 4, 1, 30), quiet=True)
    assert res.evaluations[0].config == space.median() and res.evaluations[0].turn == 0
    assert res.best == space.median() and res.best_score == res.start_score == 0.0
    for seed in range(5):  # on any score function the result is ≥ the median's score

        def noisy(c, seed=seed):
            return float(hash((seed, space.key(c))) % 97)

        r = hill_climb(space, noisy, HillClimbingConfig(5, 4, 1, 20, seed), quiet=True)
        assert r.best_score >= r.start_score
        assert r.best_score == max(e.score for e in r.evaluations)


def test_anchor_moves_only_on_strict_improvement():
    space = make_space(2)
    res = hill_climb(space, lambda c: 1.0, HillClimbingConfig(5, 3, 1, 20), quiet=True)
    assert res.best == space.median()  # all ties: the anchor never moves
    anchors_neighbour = {space.key(c) for c in space.neighbours(space.median(), 1, 99, random.Random())}
    assert all(space.key(e.config) in anchors_neighbour for e in res.evaluations[1:])


def test_stops_when_neighbourhood_exhausted():
    space = SearchSpace({"a": [32, 16], "b": [32, 16]})
    res = hill_climb(
        space, lambda c: 0.0, HillClimbingConfig(turns=10, neighbours=1, step=1, budget=100), quiet=True
    )
    assert len(res.evaluations) == 3  # median (32, 32) + its two 1-step neighbours, then nothing unvisited


@pytest.mark.parametrize("field", ["turns", "neighbours", "step", "budget"])
def test_config_rejects_non_positive(field):
    with pytest.raises(SqftError, match=field):
        HillClimbingConfig(**{field: 0})


def test_impossible_step_fails_before_anything_is_scored():
    space = SearchSpace({"a": [32, 16], "b": [32, 16], "fixed": [8]})
    calls = []
    with pytest.raises(SqftError, match="step 3"):
        hill_climb(space, lambda c: calls.append(c) or 0.0, HillClimbingConfig(step=3), quiet=True)
    assert calls == []
