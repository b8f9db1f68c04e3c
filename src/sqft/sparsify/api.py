"""Sparsify: `sparsify(model, config, windows)` prunes the target linears in place (the stage that loads and
writes artifacts is `sqft.stages.sparsify.run_sparsify`).

Wanda and SparseGPT run through the shared layer-sequential calibration loop; magnitude needs no data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sqft.calibration import Hessian, InputSqNorm, run_layerwise
from sqft.devices import check_device
from sqft.errors import SqftError
from sqft.modeling.structure import DEFAULT_TARGETS, check_targets, find_target_linears
from sqft.sparsify.masks import magnitude_score, parse_pattern, prune_mask, wanda_score
from sqft.sparsify.sparsegpt import sparsegpt_prune
from sqft.typecheck import check_field_types

__all__ = [
    "METHODS",
    "SparsifyConfig",
    "SparsifyResult",
    "check_pattern_fits",
    "sparsify",
    "sparsity_report",
]

log = logging.getLogger(__name__)

METHODS = ("wanda", "magnitude", "sparsegpt")


@dataclass
class SparsifyConfig:
    """How to prune. `pattern` 'N:M' (e.g. '2:4') overrides `sparsity` with N/M."""

    method: str = "wanda"
    sparsity: float = 0.5
    pattern: str | None = None  # None = unstructured
    n_samples: int = 128
    seq_len: int = 2048
    seed: int = 0
    percdamp: float = 0.01  # SparseGPT damping, fraction of mean diag(H)
    blocksize: int = 128  # SparseGPT column block
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    ignore: list[str] = field(default_factory=list)
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_field_types(self)
        check_device(self.device)
        if self.n_samples < 1 or self.seq_len < 1:
            raise SqftError(f"n_samples ({self.n_samples}) and seq_len ({self.seq_len}) must be positive")
        if self.method not in METHODS:
            raise SqftError(f"unknown sparsify method '{self.method}': choose one of {', '.join(METHODS)}")
        try:
            parse_pattern(self.pattern)
        except ValueError as e:
            raise SqftError(str(e)) from e
        if self.nm is not None:
            self.sparsity = self.nm[0] / self.nm[1]
        if not 0.0 <= self.sparsity < 1.0:
            raise SqftError(f"sparsity {self.sparsity} is outside [0, 1): use e.g. --sparsity 0.5")
        if self.method == "sparsegpt" and self.nm is not None and self.blocksize % self.nm[1]:
            raise SqftError(f"SparseGPT blocksize {self.blocksize} must be a multiple of M={self.nm[1]}")
        if self.percdamp <= 0:
            raise SqftError(f"damping {self.percdamp} must be > 0 (default 0.01)")

    @property
    def nm(self) -> tuple[int, int] | None:
        """(N, M) of an N:M pattern, None for unstructured."""
        return parse_pattern(self.pattern)

    @property
    def needs_calibration(self) -> bool:
        return self.method != "magnitude" and self.sparsity > 0


@dataclass
class SparsifyResult:
    report: dict[str, Any]  # per-layer and total sparsity
    layers: dict[str, Any]  # per-layer figures (time, zeros)


def check_pattern_fits(model: nn.Module, config: SparsifyConfig) -> None:
    """Refuse an N:M pattern whose M does not divide a target's in_features, before any work starts."""
    check_targets(model, config.targets, config.ignore)
    if config.nm is None:
        return
    m = config.nm[1]
    for name, lin in find_target_linears(model, config.targets, config.ignore).items():
        if lin.in_features % m:
            raise SqftError(
                f"pattern {config.pattern}: M={m} does not divide in_features={lin.in_features} of {name}; "
                "use unstructured --sparsity or another pattern"
            )


def _prune_linear(lin: nn.Linear, stat: Any, config: SparsifyConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    W = lin.weight.data
    if config.method == "sparsegpt":
        W_new, pruned = sparsegpt_prune(
            W, stat.H, config.sparsity, config.nm, config.blocksize, config.percdamp
        )
        W.copy_(W_new)
    else:
        score = wanda_score(W, stat.sq_norm) if config.method == "wanda" else magnitude_score(W)
        pruned = prune_mask(score, config.sparsity, config.nm)
        W[pruned] = 0
    return {"zeros": int((W == 0).sum()), "numel": W.numel(), "seconds": round(time.perf_counter() - t0, 4)}


def sparsify(
    model: nn.Module, config: SparsifyConfig, windows: torch.Tensor | None = None, quiet: bool = False
) -> SparsifyResult:
    """Prune the model's target linears in place. `windows` (n, T) token ids are needed for wanda/sparsegpt."""
    check_pattern_fits(model, config)
    if config.needs_calibration and windows is None:
        raise SqftError(f"method '{config.method}' needs calibration data: pass --calibration FILE")
    device = torch.device(config.device)

    def make_acc(lin: nn.Linear):
        return (InputSqNorm if config.method == "wanda" else Hessian)(lin.in_features, device)

    if config.sparsity == 0:
        layers: dict[str, Any] = {}
    else:
        res = run_layerwise(
            model,
            windows if config.needs_calibration else None,
            lambda name, lin, stat: _prune_linear(lin, stat, config),
            make_acc if config.needs_calibration else None,
            targets=config.targets,
            ignore=config.ignore,
            device=device,
            desc=f"sparsify ({config.method})",
            quiet=quiet,
        )
        layers = res.figures
    return SparsifyResult(report=sparsity_report(model, config.targets, config.ignore), layers=layers)


def sparsity_report(
    model: nn.Module, targets: list[str] | tuple[str, ...] = DEFAULT_TARGETS, ignore: list[str] | tuple = ()
) -> dict[str, Any]:
    """Zeros per target layer and in total (over targets). INT4 layers are dequantized to count zeros."""
    per_layer: dict[str, float] = {}
    zeros = total = 0
    for name, lin in find_target_linears(model, targets, ignore).items():
        W = lin.dequantize() if hasattr(lin, "dequantize") else lin.weight
        z = int((W == 0).sum())
        per_layer[name] = z / W.numel()
        zeros += z
        total += W.numel()
    return {"total": zeros / max(total, 1), "zeros": zeros, "numel": total, "per_layer": per_layer}
