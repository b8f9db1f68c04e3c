"""The quantize stage: load a model, quantize it (`sqft.quantize.quantize`), write the GPTQ INT4 artifact."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from sqft.quantize.api import QuantizationResult, QuantizeConfig, check_group_size, quantize
from sqft.quantize.format import save_gptq_model
from sqft.stages.common import StageIO, run_calibrated_stage

__all__ = ["run_quantize"]

log = logging.getLogger(__name__)


def _figures(r: QuantizationResult) -> dict[str, Any]:
    return {
        "sparsity_before": r.sparsity_before,
        "sparsity_after": r.sparsity_after,
        "zeros_before": r.zeros_before,
        "zeros_after": r.zeros_after,
        "numel": r.numel,
        "layers": r.layers,
    }


def run_quantize(io: StageIO, config: QuantizeConfig) -> dict[str, Any]:
    """Load `io.source`, quantize it, write the GPTQ artifact `io.output`. Returns the manifest."""

    def apply(model: nn.Module, windows: torch.Tensor | None) -> QuantizationResult:
        result = quantize(model, config, windows, quiet=io.quiet)
        log.info("sparsity over targets %.4f -> %.4f", result.sparsity_before, result.sparsity_after)
        return result

    def save(m: nn.Module, tok: Any, d: Any) -> None:
        save_gptq_model(m, tok, d, config.checkpoint_format, config.group_size)

    # an INT4 artifact holds about bits/16 of the fp16 targets plus the dense embeddings: half is an upper bound
    return run_calibrated_stage(
        "quantize", io, config, lambda m: check_group_size(m, config), apply, _figures, save, 0.5
    )
