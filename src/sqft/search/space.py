"""The NLS search space: ordered adapter groups, each with its elastic ranks sorted descending.

A *configuration* is plain data, `dict[str, int]` (group → active rank), so it can be saved as JSON, passed to
`sqft.adapt.set_active_ranks` and hashed through `SearchSpace.key`. Positions index a group's descending list:
position 0 is the largest rank. A *neighbour at step S* of a configuration moves exactly S groups by one
position each (paper Algorithm 1, `Neighbor-sample`).
"""

from __future__ import annotations

import itertools
import json
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from sqft.adapt.export import elastic_space
from sqft.errors import SqftError
from sqft.files import read_json_file

__all__ = ["Config", "SearchSpace", "load_config", "save_config"]

Config = dict[str, int]

# Above this many S-step neighbours, sample by rejection instead of enumerating them all.
_ENUMERATE_LIMIT = 4096


class SearchSpace:
    """Groups in a fixed order, each with a strictly descending tuple of allowed ranks."""

    def __init__(self, spaces: Mapping[str, Sequence[int]]) -> None:
        if not spaces:
            raise SqftError(
                "the search space has no groups: the adapter has no elastic (NLS) ranks to search"
            )
        self.spaces: dict[str, tuple[int, ...]] = {}
        for group, ranks in spaces.items():
            ranks = list(ranks)
            if not ranks or any(not isinstance(r, int) or isinstance(r, bool) or r <= 0 for r in ranks):
                raise SqftError(
                    f"group '{group}' has search space {ranks}: give a non-empty list of positive ints"
                )
            self.spaces[str(group)] = tuple(sorted(set(ranks), reverse=True))

    @property
    def groups(self) -> list[str]:
        return list(self.spaces)

    def __len__(self) -> int:
        return len(self.spaces)

    def __repr__(self) -> str:
        return f"SearchSpace({len(self)} groups, {self.size()} configurations)"

    @property
    def n_movable(self) -> int:
        """Groups with more than one rank: the most a neighbour can move (the largest valid step S)."""
        return sum(1 for ranks in self.spaces.values() if len(ranks) > 1)

    def check_step(self, step: int) -> None:
        if not 1 <= step <= self.n_movable:
            raise SqftError(
                f"neighbour step {step} is impossible: {self.n_movable} group(s) have more than one rank "
                f"(step must be 1..{self.n_movable})"
            )

    def size(self) -> int:
        """Number of distinct configurations (product of the per-group space sizes)."""
        n = 1
        for ranks in self.spaces.values():
            n *= len(ranks)
        return n

    # --- reference configurations (SPEC §4) ---------------------------------------------------------------

    def maximal(self) -> Config:
        return {g: ranks[0] for g, ranks in self.spaces.items()}

    def minimal(self) -> Config:
        return {g: ranks[-1] for g, ranks in self.spaces.items()}

    def median(self) -> Config:
        """The paper's heuristic: each group's median rank; for an even-size space the larger middle value.

        On the descending list `[32, 24, 16, 8]` that is index `(k - 1) // 2` → 24; on `[32, 24, 16]` → 24.
        """
        return {g: ranks[(len(ranks) - 1) // 2] for g, ranks in self.spaces.items()}

    # --- validation and canonical form --------------------------------------------------------------------

    def validate(self, config: Mapping[str, int]) -> Config:
        """Check that `config` names every group exactly once with an allowed rank; return it in group order."""
        unknown = [g for g in config if g not in self.spaces]
        if unknown:
            raise SqftError(
                f"configuration names unknown group(s) {unknown[:5]}: the adapter's groups are "
                f"{self.groups[:5]}{' ...' if len(self) > 5 else ''} (check that it belongs to this adapter)"
            )
        missing = [g for g in self.spaces if g not in config]
        if missing:
            raise SqftError(f"configuration lacks group(s) {missing[:5]}: give a rank for every group")
        out: Config = {}
        for g, ranks in self.spaces.items():
            r = config[g]
            if isinstance(r, bool) or not isinstance(r, int) or r not in ranks:
                raise SqftError(f"rank {r!r} for group '{g}' is not in its search space {list(ranks)}")
            out[g] = r
        return out

    def key(self, config: Mapping[str, int]) -> tuple[int, ...]:
        """Canonical hashable form: the ranks in group order."""
        return tuple(config[g] for g in self.spaces)

    def from_key(self, key: Sequence[int]) -> Config:
        return dict(zip(self.spaces, key, strict=True))

    def positions(self, config: Mapping[str, int]) -> list[int]:
        """Index of each group's rank in its descending space."""
        return [self.spaces[g].index(config[g]) for g in self.spaces]

    # --- neighbours ---------------------------------------------------------------------------------------

    def _moves(self, pos: list[int]) -> list[tuple[int, ...]]:
        """Per group, the allowed one-position moves (-1 = larger rank, +1 = smaller rank)."""
        sizes = [len(r) for r in self.spaces.values()]
        return [tuple(d for d in (-1, 1) if 0 <= p + d < k) for p, k in zip(pos, sizes, strict=True)]

    def count_neighbours(self, config: Mapping[str, int], step: int) -> int:
        """Number of distinct configurations that differ from `config` in exactly `step` groups by one position.

        Elementary symmetric polynomial e_step of the per-group move counts (0, 1 or 2).
        """
        e = [1] + [0] * step
        for moves in self._moves(self.positions(config)):
            for j in range(step, 0, -1):
                e[j] += e[j - 1] * len(moves)
        return e[step]

    def neighbours(
        self,
        config: Mapping[str, int],
        step: int,
        n: int,
        rng: random.Random,
        visited: Iterable[tuple[int, ...]] = (),
    ) -> list[Config]:
        """Up to `n` distinct unvisited configurations, each moving exactly `step` groups one position.

        `visited` holds `key()`s. Fewer than `n` come back only when fewer unvisited neighbours exist (small
        neighbourhoods are enumerated, so this is exact) or, for huge ones, when rejection sampling keeps
        hitting visited ones. Deterministic for a given `rng` state.
        """
        config = self.validate(config)
        self.check_step(step)
        if n <= 0:
            return []
        seen = set(visited)
        if self.count_neighbours(config, step) <= _ENUMERATE_LIMIT:
            pool = [k for k in self._all_neighbour_keys(config, step) if k not in seen]
            picked = rng.sample(pool, min(n, len(pool)))
        else:
            picked = self._sample_neighbour_keys(config, step, n, rng, seen)
        return [self.from_key(k) for k in picked]

    def _all_neighbour_keys(self, config: Config, step: int) -> list[tuple[int, ...]]:
        pos = self.positions(config)
        moves = self._moves(pos)
        movable = [i for i, m in enumerate(moves) if m]
        keys = []
        for chosen in itertools.combinations(movable, step):
            for dirs in itertools.product(*(moves[i] for i in chosen)):
                keys.append(self._shift(pos, chosen, dirs))
        return keys

    def _sample_neighbour_keys(
        self, config: Config, step: int, n: int, rng: random.Random, seen: set[tuple[int, ...]]
    ) -> list[tuple[int, ...]]:
        pos = self.positions(config)
        moves = self._moves(pos)
        movable = [i for i, m in enumerate(moves) if m]
        picked: list[tuple[int, ...]] = []
        for _ in range(100 * n):
            chosen = sorted(rng.sample(movable, step))
            dirs = [rng.choice(moves[i]) for i in chosen]
            k = self._shift(pos, chosen, dirs)
            if k not in seen:
                seen.add(k)
                picked.append(k)
                if len(picked) == n:
                    break
        return picked

    def _shift(self, pos: list[int], chosen: Sequence[int], dirs: Sequence[int]) -> tuple[int, ...]:
        new = list(pos)
        for i, d in zip(chosen, dirs, strict=True):
            new[i] += d
        spaces = list(self.spaces.values())
        return tuple(spaces[i][p] for i, p in enumerate(new))

    # --- I/O ----------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, list[int]]:
        return {g: list(r) for g, r in self.spaces.items()}

    @classmethod
    def from_adapter(cls, adapter_dir: str | os.PathLike) -> SearchSpace:
        """The space stored with a trained NLS adapter (via `sqft.adapt.elastic_space`)."""
        return cls(elastic_space(adapter_dir))


def save_config(config: Mapping[str, int], path: str | os.PathLike) -> None:
    """Write a configuration as a flat JSON object `{group: rank}` (group order kept)."""
    Path(path).write_text(json.dumps(dict(config), indent=2) + "\n")


def load_config(path: str | os.PathLike, space: SearchSpace | None = None) -> Config:
    """Read a configuration JSON: a flat `{group: rank}` or an object with a `"config"` key (our search
    output); validated against `space` when given."""
    p = Path(path)
    if not p.is_file():
        raise SqftError(f"configuration file '{p}' does not exist")
    data = read_json_file(p, "configuration file")
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in data.values()
    ):
        raise SqftError(
            f"configuration file '{p}' must hold a JSON object {{group: rank}} with integer ranks"
        )
    config = {str(k): int(v) for k, v in data.items()}
    return space.validate(config) if space is not None else config
