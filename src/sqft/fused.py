"""Fused weight builds for training: one `torch.compile`d kernel instead of one eager kernel per operation.

Training on an INT4 base remakes every weight it multiplies by at every step (dequantize; for QA-SparsePEFT also
requantize), in forward and again in backward. Eager PyTorch runs each elementwise operation of those chains as
a separate pass over the whole weight, which on a GPU costs more than the matmul it feeds; compiled, a chain is
one pass. Only training uses the fused path: a fused kernel may round a value that lies exactly between two
codes differently, so evaluation, merge and export always run the eager reference, bit for bit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["Fusable", "fused_by_default", "set_fused"]

log = logging.getLogger(__name__)


def fused_by_default() -> bool:
    """Fuse when training on CUDA (Triton kernels); on a CPU compiling costs more than it saves for short runs."""
    return torch.cuda.is_available()


class Fusable:
    """`fn` with a compiled twin: `f(*args)` runs eager, `f.fused(*args)` the compiled one.

    Compiled on first use, with dynamic shapes (so once per combination of the non-tensor arguments: keep
    those few). If compiling fails (no Triton, no C++ compiler), a warning is logged once and the eager `fn` is
    used from then on: never a failed training run.
    """

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self._compiled: Callable[..., Any] | None = None
        self._failed = False

    @property
    def failed(self) -> bool:
        """Compiling failed once; `fused` runs eagerly from then on."""
        return self._failed

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def fused(self, *args: Any) -> Any:
        if self._failed:
            return self.fn(*args)
        if self._compiled is None:
            # dynamic shapes: one kernel serves every layer shape (q, k/v, up, down), instead of one compile per
            # shape and flag combination, which would soon hit dynamo's recompile limit
            self._compiled = torch.compile(self.fn, fullgraph=True, dynamic=True)
        try:
            return self._compiled(*args)
        except Exception as e:  # a compiler problem; the eager function gives the same values
            self._failed = True
            log.warning(
                "could not compile %s (%s: %s); running it eagerly", self.fn.__name__, type(e).__name__, e
            )
            return self.fn(*args)


def set_fused(model: torch.nn.Module, enabled: bool) -> int:
    """Switch the fused training path of every layer that has one (INT4 bases, QA adapters); how many there are."""
    layers = [m for m in model.modules() if isinstance(getattr(m, "fused", None), bool)]
    for m in layers:
        m.fused = enabled
    return len(layers)
