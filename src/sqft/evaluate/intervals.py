"""Uncertainty of accuracies: the Wilson interval of one proportion, and a paired bootstrap of a difference.

An accuracy over n items is k/n; a results entry carries it with `n`, its 95% interval `<metric>_ci95` and,
for comparisons on the same items, the per-item outcomes and a digest of the items:

    {"acc": 0.61, "acc_ci95": [0.566, 0.652], "n": 500,
     "correct": {"acc": "0110…", "acc_norm": "…"},     one character per item, '1' = correct, in item order
     "items_sha256": "3f2a…"}                           sha256 of the item identities, in the same order

Two results are paired only when their digests (and lengths) agree: the same items in the same order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sqft.errors import SqftError

__all__ = [
    "ACCURACY_METRICS",
    "Z95",
    "CI_SUFFIX",
    "wilson_interval",
    "encode_outcomes",
    "decode_outcomes",
    "items_digest",
    "with_intervals",
    "metric_interval",
    "paired_bootstrap",
    "paired_difference",
]

Z95 = 1.959963984540054  # Φ⁻¹(0.975): the two-sided 95% normal quantile
CI_SUFFIX = "_ci95"
# the metrics that are proportions of items, so carry a Wilson interval
ACCURACY_METRICS = ("strict_match", "flexible_match", "acc", "acc_norm", "accuracy")


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion p̂ = k / n (Wilson 1927; Newcombe 1998, method 3):

        centre = (p̂ + z² / 2n) / (1 + z² / n)
        half   = z / (1 + z² / n) · √( p̂ (1 − p̂) / n + z² / 4n² )
        [centre − half, centre + half]

    Unlike the normal (Wald) interval p̂ ± z √(p̂(1−p̂)/n) it stays inside [0, 1] and is not empty at p̂ = 0 or 1.
    """
    if not isinstance(n, int) or n < 1:
        raise SqftError(f"n={n!r}: an interval needs at least one item")
    if not 0 <= k <= n:
        raise SqftError(f"k={k!r} correct out of n={n}: k must be in [0, n]")
    p, z2 = k / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exactly 0 (1) at k = 0 (n), where centre = half
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def encode_outcomes(correct: Sequence[bool | int]) -> str:
    """Per-item outcomes as a string of '0'/'1' (one character per item, in item order)."""
    return "".join("1" if c else "0" for c in correct)


def decode_outcomes(bits: str) -> np.ndarray:
    """Inverse of `encode_outcomes`: int8 array of 0/1."""
    if not isinstance(bits, str) or set(bits) - {"0", "1"}:
        raise SqftError(f"per-item outcomes must be a string of 0/1, got {str(bits)[:20]!r}")
    return np.frombuffer(bits.encode(), dtype=np.uint8).astype(np.int8) - ord("0")


def items_digest(keys: Sequence[str]) -> str:
    """sha256 (hex) of the items' identities in order: equal digests ⇔ the same items in the same order."""
    h = hashlib.sha256()
    for key in keys:
        data = key.encode()
        # length-prefixed: no two key lists collide by concatenation
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def with_intervals(
    result: dict[str, Any], outcomes: Mapping[str, Sequence[bool | int]], keys: Sequence[str] | None = None
) -> dict[str, Any]:
    """`result` (in place) plus, per metric of `outcomes`, `<metric>_ci95` (Wilson) and the encoded outcomes
    under "correct"; "items_sha256" when the item identities `keys` are given. Existing keys are not changed."""
    for metric, correct in outcomes.items():
        result[metric + CI_SUFFIX] = list(wilson_interval(int(sum(map(bool, correct))), len(correct)))
    result["correct"] = {m: encode_outcomes(c) for m, c in outcomes.items()}
    if keys is not None:
        result["items_sha256"] = items_digest(keys)
    return result


def metric_interval(metrics: Mapping[str, Any], metric: str) -> tuple[float, float] | None:
    """A metric's 95% interval: the stored one, else Wilson from the value and `n` (results written before
    intervals were stored); None when neither is there."""
    stored = metrics.get(metric + CI_SUFFIX)
    if isinstance(stored, (list, tuple)) and len(stored) == 2:
        return float(stored[0]), float(stored[1])
    value, n = metrics.get(metric), metrics.get("n")
    if metric not in ACCURACY_METRICS:
        return None
    if isinstance(value, (int, float)) and isinstance(n, int) and n > 0 and 0 <= value <= 1:
        return wilson_interval(round(value * n), n)
    return None


def paired_bootstrap(
    reference: Sequence[int] | np.ndarray,
    other: Sequence[int] | np.ndarray,
    n_resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(Δ, lo, hi): Δ = acc(other) − acc(reference) on the same n items, and its percentile bootstrap interval.

    Each resample draws n item indices with replacement and takes the mean of d_i = other_i − reference_i.
    As d_i ∈ {−1, 0, 1}, that mean is (N₊ − N₋) / n with (N₊, N₋, N₀) ~ Multinomial(n; n₊/n, n₋/n, n₀/n),
    which is drawn directly (the same distribution as resampling indices, in O(n_resamples) work).
    Identical outcomes give [0, 0]; the interval is reproducible for a given `seed`.
    """
    a, b = np.asarray(reference, dtype=np.int64), np.asarray(other, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise SqftError(
            f"paired outcomes must be two equally long non-empty 0/1 sequences, got {a.shape} and {b.shape}"
        )
    if not 0 < level < 1 or n_resamples < 1:
        raise SqftError(f"level={level} must be in (0, 1) and n_resamples={n_resamples} positive")
    d = b - a
    n = d.size
    counts = np.array([(d == 1).sum(), (d == -1).sum(), (d == 0).sum()], dtype=np.float64)
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=n_resamples)  # (R, 3)
    means = (draws[:, 0] - draws[:, 1]) / n
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(d.mean()), float(lo), float(hi)


def paired_difference(
    reference: Mapping[str, Any],
    other: Mapping[str, Any],
    metric: str,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """`paired_bootstrap` of one metric of two results entries of the same task; SqftError unless both hold
    per-item outcomes of `metric` on the same items (equal `items_sha256` and n)."""
    outcomes = [(r.get("correct") or {}).get(metric) for r in (reference, other)]
    if any(o is None for o in outcomes):
        raise SqftError(
            f"no per-item outcomes of '{metric}' in both results: re-run `sqft evaluate` (results written before "
            "per-item outcomes were stored cannot be paired)"
        )
    digests = [r.get("items_sha256") for r in (reference, other)]
    if digests[0] is None or digests[0] != digests[1] or len(outcomes[0]) != len(outcomes[1]):
        raise SqftError(
            f"the two results of '{metric}' are not on the same items (items_sha256 {str(digests[0])[:12]} vs "
            f"{str(digests[1])[:12]}, n {len(outcomes[0])} vs {len(outcomes[1])}): evaluate both on the same "
            "data, limit and order to compare them pairwise"
        )
    return paired_bootstrap(decode_outcomes(outcomes[0]), decode_outcomes(outcomes[1]), n_resamples, seed)
