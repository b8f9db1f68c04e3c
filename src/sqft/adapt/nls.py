"""NLS training: sample one sub-adapter per optimizer step, outside `forward`, and record statistics.

The configuration of optimizer step t is drawn uniformly (each group independently) from a generator seeded
with (seed, t), so it is the same on every DDP process and after a resume, and it is stored in the modules
before the step's first forward: a gradient-checkpointing recomputation therefore sees the same ranks.
Statistics for the search heuristics (`nls_stats.json`):
    {"counts": {group: {rank: n}}, "loss_by_config": [{"config", "mean_loss", "n"}], "steps": N}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from sqft.adapt.inject import groups_of, set_active_ranks

__all__ = ["STATS_FILE", "NLSSampler", "NLSStats", "NLSCallback"]

STATS_FILE = "nls_stats.json"


class NLSSampler:
    """Uniform configurations over `spaces` (group → ranks), reproducible per step."""

    def __init__(self, spaces: Mapping[str, Sequence[int]], seed: int = 0) -> None:
        self.spaces = {g: list(r) for g, r in spaces.items()}
        self.seed = seed

    def sample(self, step: int) -> dict[str, int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        idx = torch.randint(0, 1 << 30, (len(self.spaces),), generator=gen)
        return {g: r[int(i) % len(r)] for (g, r), i in zip(self.spaces.items(), idx)}


class NLSStats:
    """Activation counts per (group, rank) and the mean training loss per sampled configuration."""

    def __init__(self, spaces: Mapping[str, Sequence[int]]) -> None:
        self.counts = {g: {str(r): 0 for r in ranks} for g, ranks in spaces.items()}
        self.loss: dict[tuple, list[float]] = {}  # config key → [sum of losses, n]
        self.steps = 0

    def record(self, config: Mapping[str, int], loss: float | None) -> None:
        for g, r in config.items():
            self.counts[g][str(r)] += 1
        self.steps += 1
        if loss is not None:
            key = tuple(sorted(config.items()))
            acc = self.loss.setdefault(key, [0.0, 0])
            acc[0] += loss
            acc[1] += 1

    def to_json(self) -> dict[str, Any]:
        by_config = [
            {"config": dict(k), "mean_loss": s / n, "n": n} for k, (s, n) in self.loss.items() if n > 0
        ]
        by_config.sort(key=lambda e: e["mean_loss"])
        return {"counts": self.counts, "loss_by_config": by_config, "steps": self.steps}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NLSStats:
        stats = cls({})
        stats.counts = {g: dict(c) for g, c in data["counts"].items()}
        stats.steps = int(data["steps"])
        for e in data["loss_by_config"]:
            stats.loss[tuple(sorted(e["config"].items()))] = [e["mean_loss"] * e["n"], e["n"]]
        return stats

    def save(self, directory: str | os.PathLike) -> None:
        (Path(directory) / STATS_FILE).write_text(json.dumps(self.to_json(), indent=1) + "\n")


class NLSCallback(TrainerCallback):
    """Sample at each optimizer step's start; record its configuration and mean micro-batch loss at its end."""

    def __init__(self, model: nn.Module, spaces: Mapping[str, Sequence[int]], seed: int = 0) -> None:
        self.model = model
        self.sampler = NLSSampler(spaces, seed)
        self.stats = NLSStats(spaces)
        self.config: dict[str, int] | None = None
        self._step: int | None = None
        self._losses: list[torch.Tensor] = []  # per micro-batch: (sum of token losses, tokens)
        model.register_forward_hook(self._capture_loss, with_kwargs=True)

    def _capture_loss(self, module: nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        """Accumulate this process's token-loss sum and count (the Trainer may divide by the step's tokens)."""
        loss, labels = getattr(output, "loss", None), kwargs.get("labels")
        if not module.training or loss is None or labels is None:
            return
        n = (labels[..., 1:] != -100).sum()
        n_div = kwargs.get("num_items_in_batch")
        total = loss.detach().float() * (n_div if n_div is not None else n)
        self._losses.append(torch.stack([total, n.float().to(total.device)]))

    def activate(self, step: int) -> dict[str, int]:
        if self._step != step:  # at most one draw per optimizer step
            self.config = self.sampler.sample(step)
            set_active_ranks(self.model, self.config)
            self._step = step
            self._losses = []
        return self.config

    def on_train_begin(self, args, state, control, **kw):  # type: ignore[override]
        resumed = Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATS_FILE
        if state.global_step > 0 and resumed.is_file():
            self.stats = NLSStats.from_json(json.loads(resumed.read_text()))

    def on_step_begin(self, args, state, control, **kw):  # type: ignore[override]
        self.activate(state.global_step)

    def on_step_end(self, args, state, control, **kw):  # type: ignore[override]
        loss = None
        if self._losses:
            total, n = torch.stack(self._losses).sum(dim=0).tolist()
            loss = total / n if n > 0 else None
        self.stats.record(self.config, loss)
        self._step, self._losses = None, []

    def on_save(self, args, state, control, **kw):  # type: ignore[override]
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and ckpt.is_dir():
            self.stats.save(ckpt)

    def on_train_end(self, args, state, control, **kw):  # type: ignore[override]
        full = {g: max(int(r) for r in c) for g, c in self.stats.counts.items()}
        if full and groups_of(self.model):
            set_active_ranks(self.model, full)  # leave the super-adapter at its maximal configuration
