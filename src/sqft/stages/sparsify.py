"""The sparsify stage: load a model, prune it (`sqft.sparsify.sparsify`), write the sparse artifact."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from sqft.sparsify.api import SparsifyConfig, SparsifyResult, check_pattern_fits, sparsify
from sqft.stages.common import StageIO, run_calibrated_stage

__all__ = ["run_sparsify"]

log = logging.getLogger(__name__)


def run_sparsify(io: StageIO, config: SparsifyConfig) -> dict[str, Any]:
    """Load `io.source`, prune it, write the artifact `io.output`. Returns the manifest."""

    def apply(model: nn.Module, windows: torch.Tensor | None) -> SparsifyResult:
        result = sparsify(model, config, windows, quiet=io.quiet)
        log.info("sparsity over targets: %.4f", result.report["total"])
        return result

    return run_calibrated_stage(
        "sparsify",
        io,
        config,
        lambda m: check_pattern_fits(m, config),
        apply,
        lambda r: {"sparsity": r.report, "layers": r.layers},
    )
