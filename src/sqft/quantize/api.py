"""Quantize: `quantize(model, config, windows)` replaces the target linears by `QuantLinear`s in place (the stage
that loads and writes artifacts is `sqft.stages.quantize.run_quantize`).

GPTQ runs through the shared layer-sequential calibration loop (one Hessian per target linear); RTN needs no
data. Each layer is swapped for its `QuantLinear` as soon as it is quantized, so the blocks that follow are
calibrated on the outputs the quantized model will really produce.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sqft.calibration import Hessian, run_layerwise
from sqft.devices import check_device
from sqft.errors import SqftError
from sqft.modeling.structure import DEFAULT_TARGETS, check_targets, find_target_linears
from sqft.quantize.format import FORMATS, replace_module
from sqft.quantize.gptq import gptq_quantize, reconstruction_error
from sqft.quantize.packing import SUPPORTED_BITS
from sqft.quantize.qlinear import QuantLinear
from sqft.quantize.rtn import rtn_quantize
from sqft.typecheck import check_field_types

__all__ = [
    "METHODS",
    "QuantizeConfig",
    "QuantizationResult",
    "auto_group_size",
    "check_group_size",
    "quantize",
]

log = logging.getLogger(__name__)

METHODS = ("gptq", "rtn")


@dataclass
class QuantizeConfig:
    """How to quantize. `group_size=-1` is one group per output row (per channel); None (the default) chooses
    it from the model (`auto_group_size`: 128 where it divides every target, else the largest power of two that
    does), while an explicit size is used as given or refused."""

    method: str = "gptq"
    bits: int = 4
    group_size: int | None = None
    sym: bool = False
    percdamp: float = 0.01  # GPTQ damping λ = percdamp · mean(diag H)
    blocksize: int = 128  # GPTQ column block of the lazy batch update
    n_samples: int = 128
    seq_len: int = 2048
    seed: int = 0
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    ignore: list[str] = field(default_factory=list)
    device: str = "cpu"
    checkpoint_format: str = "gptq"  # v1 (z ≥ 1, read everywhere) or gptq_v2
    group_size_auto: bool = field(default=False, init=False)
    """True when `group_size` was chosen from the model (recorded in the manifest)."""

    def __post_init__(self) -> None:
        check_field_types(self)
        check_device(self.device)
        if self.method not in METHODS:
            raise SqftError(f"unknown quantize method '{self.method}': choose one of {', '.join(METHODS)}")
        if self.bits not in SUPPORTED_BITS:
            raise SqftError(
                f"bits={self.bits} is not supported: use one of {', '.join(map(str, SUPPORTED_BITS))}"
            )
        if self.group_size is not None and self.group_size != -1 and self.group_size < 1:
            raise SqftError(f"group size {self.group_size} is invalid: use a positive size (e.g. 128) or -1")
        if not 0 < self.percdamp < 1:
            raise SqftError(f"damping {self.percdamp} must be in (0, 1) (default 0.01)")
        if self.blocksize < 1:
            raise SqftError(f"GPTQ blocksize {self.blocksize} must be positive (default 128)")
        if self.n_samples < 1 or self.seq_len < 1:
            raise SqftError(f"n_samples ({self.n_samples}) and seq_len ({self.seq_len}) must be positive")
        if self.checkpoint_format not in FORMATS:
            raise SqftError(
                f"unknown checkpoint format '{self.checkpoint_format}': use one of {', '.join(FORMATS)}"
            )

    @property
    def needs_calibration(self) -> bool:
        return self.method == "gptq"

    @property
    def min_zero(self) -> int:
        """GPTQ v1 stores z − 1, so it needs z ≥ 1."""
        return 1 if self.checkpoint_format == "gptq" else 0


@dataclass
class QuantizationResult:
    layers: dict[str, Any]  # per full layer name: error figures, zeros before/after, seconds
    zeros_before: int  # exact zeros over the target weights before quantization
    zeros_after: int  # exact zeros of the dequantized target weights
    numel: int
    seconds: float = 0.0

    @property
    def sparsity_before(self) -> float:
        return self.zeros_before / max(self.numel, 1)

    @property
    def sparsity_after(self) -> float:
        return self.zeros_after / max(self.numel, 1)


DEFAULT_GROUP_SIZE = 128
MIN_AUTO_GROUP_SIZE = 16  # below this an automatic choice falls back to per-channel (-1)


def _common_sizes(in_features: list[int]) -> list[int]:
    """Powers of two from 256 down to 2 that divide every in_features."""
    return [g for g in (256, 128, 64, 32, 16, 8, 4, 2) if all(n % g == 0 for n in in_features)]


def auto_group_size(in_features: list[int]) -> int:
    """128 when it divides every in_features, else the largest power of two that does (at least 16), else -1."""
    fits = [g for g in _common_sizes(in_features) if g <= DEFAULT_GROUP_SIZE]
    return fits[0] if fits and fits[0] >= MIN_AUTO_GROUP_SIZE else -1


def check_group_size(model: nn.Module, config: QuantizeConfig) -> dict[str, nn.Linear]:
    """The target linears, after refusing quantized ones and group sizes that do not divide in_features.

    An automatic group size (`config.group_size=None`) is chosen here, from every target, and written into
    `config` (with `group_size_auto=True`) so that the quantization, the checkpoint and the manifest use it.
    """
    check_targets(model, config.targets, config.ignore)
    linears = find_target_linears(model, config.targets, config.ignore)
    for name, lin in linears.items():
        if not isinstance(lin, nn.Linear):
            raise SqftError(
                f"{name} is already quantized ({type(lin).__name__}): quantize a full-precision model"
            )
    widths = [lin.in_features for lin in linears.values()]
    if config.group_size is None:
        config.group_size, config.group_size_auto = auto_group_size(widths), True
        log.info("group size %d (automatic: it divides the in_features of every target)", config.group_size)
    for name, lin in linears.items():
        if config.group_size != -1 and lin.in_features % config.group_size:
            raise SqftError(
                f"group size {config.group_size} does not divide in_features={lin.in_features} of {name}: "
                f"use --group-size -1 (per channel), one of {_common_sizes(widths)} (they divide every "
                "target), or leave --group-size out to choose automatically"
            )
    return linears


def _quantize_linear(
    name: str, lin: nn.Linear, stat: Hessian | None, config: QuantizeConfig, model: nn.Module
):
    t0 = time.perf_counter()
    W = lin.weight.data  # (out, in)
    if config.method == "gptq":
        q, scale, zero = gptq_quantize(
            W,
            stat.H,
            config.bits,
            config.group_size,
            config.sym,
            config.percdamp,
            config.blocksize,
            config.min_zero,
        )
    else:
        q, scale, zero = rtn_quantize(W, config.bits, config.group_size, config.sym, config.min_zero)
    bias = None if lin.bias is None else lin.bias.data
    qlin = QuantLinear.from_codes(q, scale, zero, config.bits, config.group_size, config.sym, bias)
    W_hat = qlin.dequantize()  # (out, in) fp32
    figures = {
        "weight_mse": float(((W.float() - W_hat) ** 2).mean()),
        "zeros_before": int((W == 0).sum()),
        "zeros_after": int((W_hat == 0).sum()),
        "numel": W.numel(),
    }
    if stat is not None:
        err, ref = (
            reconstruction_error(W, W_hat, stat.H),
            reconstruction_error(W, torch.zeros_like(W), stat.H),
        )
        figures.update(output_error=err, relative_output_error=err / ref if ref > 0 else 0.0)
    replace_module(model, name, qlin.to(W.device))
    figures["seconds"] = round(time.perf_counter() - t0, 4)
    return figures


def quantize(
    model: nn.Module, config: QuantizeConfig, windows: torch.Tensor | None = None, quiet: bool = False
) -> QuantizationResult:
    """Quantize the model's target linears in place. `windows` (n, T) token ids are needed for GPTQ."""
    check_group_size(model, config)
    if config.needs_calibration and windows is None:
        raise SqftError(f"method '{config.method}' needs calibration data: pass --calibration FILE")
    device = torch.device(config.device)
    t0 = time.perf_counter()
    res = run_layerwise(
        model,
        windows if config.needs_calibration else None,
        lambda name, lin, stat: _quantize_linear(name, lin, stat, config, model),
        (lambda lin: Hessian(lin.in_features, device)) if config.needs_calibration else None,
        targets=config.targets,
        ignore=config.ignore,
        device=device,
        desc=f"quantize ({config.method}, {config.bits}-bit)",
        quiet=quiet,
    )
    layers = res.figures
    return QuantizationResult(
        layers=layers,
        zeros_before=sum(f["zeros_before"] for f in layers.values()),
        zeros_after=sum(f["zeros_after"] for f in layers.values()),
        numel=sum(f["numel"] for f in layers.values()),
        seconds=time.perf_counter() - t0,
    )
