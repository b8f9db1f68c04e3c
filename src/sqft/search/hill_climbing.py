"""Hill-climbing sub-adapter search (paper §3.3, Algorithm 1), over any score function.

    c_a ← c_h;  V ← {c_h};  D_M ← Sample(D, M)          (the proxy set is the caller's: `score` closes over it)
    for t in 1..T:
        C ← Neighbor-sample(c_a, N, S) − V               N unvisited configurations, S groups moved one position
        V ← V ∪ C
        c_m ← argmax_{c ∈ C} Acc(D_M, c)
        if Acc(c_m) > Acc(c*): c_a ← c_m                  the anchor moves only on improvement over the best seen
    return c* = c_a

The heuristic configuration c_h is scored first, so the result is never worse than it on the proxy set. The
budget caps the number of scored configurations (c_h included). Scores are cached by configuration: nothing
is scored twice.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from sqft.errors import SqftError
from sqft.search.space import Config, SearchSpace

__all__ = ["HillClimbingConfig", "Evaluation", "SearchResult", "CachedScorer", "hill_climb"]

log = logging.getLogger(__name__)


@dataclass
class HillClimbingConfig:
    """Algorithm 1's knobs (the proxy size M lives with the data, see `sqft.search.api`)."""

    turns: int = 10  # T
    neighbours: int = 8  # N per turn
    step: int = 1  # S groups moved one position
    budget: int = 50  # most configurations scored, the start included
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("turns", "neighbours", "step", "budget"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SqftError(f"hill-climbing {name}={value!r}: must be a positive integer")


@dataclass(frozen=True)
class Evaluation:
    """One scored configuration, in the order they were scored."""

    index: int
    turn: int  # 0 = the start configuration
    config: Config
    score: float


@dataclass
class SearchResult:
    best: Config
    best_score: float
    start: Config
    start_score: float
    evaluations: list[Evaluation] = field(default_factory=list)
    turns_run: int = 0


class CachedScorer:
    """Score each configuration once; `calls` counts real evaluations of the wrapped function."""

    def __init__(self, space: SearchSpace, score: Callable[[Config], float]) -> None:
        self.space, self._score = space, score
        self.cache: dict[tuple[int, ...], float] = {}
        self.calls = 0

    def __call__(self, config: Mapping[str, int]) -> float:
        key = self.space.key(config)
        if key not in self.cache:
            self.calls += 1
            self.cache[key] = float(self._score(dict(config)))
        return self.cache[key]


def hill_climb(
    space: SearchSpace,
    score: Callable[[Config], float],
    cfg: HillClimbingConfig,
    start: Mapping[str, int] | None = None,
    quiet: bool = False,
) -> SearchResult:
    """Algorithm 1 from `start` (default: the median configuration); higher score is better."""
    scorer = score if isinstance(score, CachedScorer) else CachedScorer(space, score)
    space.check_step(cfg.step)  # before anything is scored
    rng = random.Random(cfg.seed)
    anchor = space.validate(start if start is not None else space.median())
    evaluations: list[Evaluation] = []

    def evaluate(config: Config, turn: int) -> float:
        s = scorer(config)
        evaluations.append(Evaluation(len(evaluations), turn, config, s))
        return s

    best_score = start_score = evaluate(anchor, 0)
    visited = {space.key(anchor)}
    result = SearchResult(anchor, best_score, anchor, start_score, evaluations)
    bar = tqdm(total=cfg.budget, initial=1, desc="hill-climbing", disable=quiet, unit="config")
    for t in range(1, cfg.turns + 1):
        remaining = cfg.budget - len(evaluations)
        if remaining <= 0:
            break
        candidates = space.neighbours(anchor, cfg.step, min(cfg.neighbours, remaining), rng, visited)
        if not candidates:
            log.info("turn %d: every %d-step neighbour of the anchor was visited; stopping", t, cfg.step)
            break
        visited |= {space.key(c) for c in candidates}
        scores = [evaluate(c, t) for c in candidates]
        bar.update(len(candidates))
        m = max(range(len(candidates)), key=lambda i: scores[i])  # first of the best on ties
        result.turns_run = t
        if scores[m] > best_score:
            anchor, best_score = candidates[m], scores[m]
            log.info("turn %d: new best %.4f", t, best_score)
    bar.close()
    result.best, result.best_score = anchor, best_score
    return result
