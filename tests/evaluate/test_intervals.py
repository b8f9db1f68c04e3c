"""Wilson intervals and the paired bootstrap of a difference of accuracies (sqft.evaluate.intervals)."""

import math

import numpy as np
import pytest

from sqft.errors import SqftError
from sqft.evaluate.intervals import (
    decode_outcomes,
    encode_outcomes,
    items_digest,
    metric_interval,
    paired_bootstrap,
    paired_difference,
    wilson_interval,
    with_intervals,
)

# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3 (Wilson)
NEWCOMBE = [((81, 263), (0.2553, 0.3662)), ((15, 148), (0.0624, 0.1605)), ((0, 20), (0.0, 0.1611)),
            ((1, 29), (0.0061, 0.1718))]  # fmt: skip


@pytest.mark.parametrize("kn,expected", NEWCOMBE)
def test_wilson_matches_the_textbook_values(kn, expected):
    lo, hi = wilson_interval(*kn)
    assert abs(lo - expected[0]) < 5e-5 and abs(hi - expected[1]) < 5e-5


def test_wilson_contains_the_estimate_stays_in_unit_interval_and_shrinks_like_root_n():
    for n in (1, 7, 50, 1000):
        for k in range(0, n + 1, max(1, n // 7)):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[1] > 0.0 and wilson_interval(10, 10)[0] < 1.0  # never empty at p̂ = 0, 1
    z, ns = 1.959963984540054, (100, 400, 1600, 6400)
    widths = [np.subtract(*wilson_interval(n // 2, n)[::-1]) for n in ns]
    # at p̂ = ½ the width is z / √(n (1 + z²/n)) exactly: ∝ 1/√n, quadrupling n (nearly) halves it
    for n, w in zip(ns, widths):
        assert abs(w - z / math.sqrt(n + z * z)) < 1e-12
    ratios = [w0 / w1 for w0, w1 in zip(widths, widths[1:])]
    assert all(1.95 < r < 2.0 for r in ratios) and ratios == sorted(ratios)  # → 2 from below


def test_wilson_refuses_impossible_counts():
    with pytest.raises(SqftError, match="n=0"):
        wilson_interval(0, 0)
    with pytest.raises(SqftError, match="k=5"):
        wilson_interval(5, 4)


def test_outcomes_round_trip_and_the_digest_depends_on_items_and_order():
    bits = encode_outcomes([True, False, 1, 0, 1])
    assert bits == "10101" and decode_outcomes(bits).tolist() == [1, 0, 1, 0, 1]
    with pytest.raises(SqftError, match="0/1"):
        decode_outcomes("10x")
    assert items_digest(["a", "b"]) == items_digest(["a", "b"])
    assert len({items_digest(k) for k in (["a", "b"], ["b", "a"], ["ab"], ["a", "b", ""])}) == 4


def test_with_intervals_adds_keys_and_keeps_the_old_ones():
    result = {"acc": 0.75, "n": 4}
    with_intervals(result, {"acc": [1, 1, 0, 1]}, ["q1", "q2", "q3", "q4"])
    assert result["acc"] == 0.75 and result["n"] == 4
    assert result["acc_ci95"] == list(wilson_interval(3, 4)) and result["correct"] == {"acc": "1101"}
    assert result["items_sha256"] == items_digest(["q1", "q2", "q3", "q4"])
    # a results entry written before intervals existed: Wilson from value and n; not for perplexity
    assert metric_interval({"acc": 0.25, "n": 8}, "acc") == wilson_interval(2, 8)
    assert metric_interval({"perplexity": 3.0, "n": 8}, "perplexity") is None


def test_paired_bootstrap_of_identical_models_is_exactly_zero():
    a = np.random.default_rng(0).integers(0, 2, 300)
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_never_worse_model_interval_is_nonnegative_and_holds_the_gain():
    n, k = 200, 12
    a = np.random.default_rng(1).integers(0, 2, n)
    b = a.copy()
    better = np.flatnonzero(a == 0)[:k]  # b is right on exactly k items a gets wrong, never the reverse
    b[better] = 1
    diff, lo, hi = paired_bootstrap(a, b, seed=3)
    assert diff == k / n
    assert 0.0 <= lo < k / n < hi <= 2 * k / n
    # the bootstrap standard error of a mean of k ones in n is ≈ √(p(1−p)/n): the interval is about ±2 of it
    se = math.sqrt(k / n * (1 - k / n) / n)
    assert abs((hi - lo) - 2 * 1.96 * se) < 0.3 * (hi - lo)
    assert paired_bootstrap(b, a, seed=3)[0] == -k / n


def test_paired_bootstrap_is_reproducible_with_its_seed():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 2, 150), rng.integers(0, 2, 150)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    assert paired_bootstrap(a, b, seed=7)[1:] != paired_bootstrap(a, b, seed=8)[1:]


def test_paired_difference_refuses_different_items_and_missing_outcomes():
    ref = with_intervals({"acc": 0.5, "n": 4}, {"acc": [1, 0, 1, 0]}, ["a", "b", "c", "d"])
    same = with_intervals({"acc": 0.75, "n": 4}, {"acc": [1, 1, 1, 0]}, ["a", "b", "c", "d"])
    other = with_intervals({"acc": 0.75, "n": 4}, {"acc": [1, 1, 1, 0]}, ["a", "b", "d", "c"])
    assert paired_difference(ref, same, "acc")[0] == 0.25
    with pytest.raises(SqftError, match="not on the same items"):
        paired_difference(ref, other, "acc")
    with pytest.raises(SqftError, match="no per-item outcomes"):
        paired_difference(ref, {"acc": 0.75, "n": 4}, "acc")
    with pytest.raises(SqftError, match="equally long"):
        paired_bootstrap([1, 0], [1, 0, 1])
