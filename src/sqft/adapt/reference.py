"""The adapter forwards as the paper writes them, in plain autograd: what a reader reads first.

Each variant is a few lines of tensor algebra; autograd derives the backward (for QA-SparsePEFT through the
straight-through estimator `fake_quantize_ste`). The layer runs the memory-saving path of `adapt.recompute`
by default, an optimisation of these functions that must agree with them (outputs and gradients, within a
bound of the compute dtype: `tests/adapt/test_reference.py`). Select this path with `AdapterLinear.path =
"reference"` (it keeps each layer's weight-sized tensors alive until backward).

Shapes: x (…, in); W, M (out, in); A (r, in), B (out, r) after the NLS slice; s = α / r_max. Weight algebra
in fp32, the matmul in the compute dtype of x (the autocast dtype inside autocast), as the recompute path does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sqft.adapt.equations import QAParams
from sqft.quantize.primitives import dequantize, expand_groups, fake_quantize_ste
from sqft.quantize.qlinear import compute_dtype

__all__ = ["lora", "delta", "sparse_peft", "qa_sparse_peft", "int4_base"]

Dropout = Callable[[torch.Tensor], torch.Tensor]


def lora(
    x: torch.Tensor,
    base: Callable[[torch.Tensor], torch.Tensor],
    A: torch.Tensor,
    B: torch.Tensor,
    s: float,
    dropout: Dropout | None = None,
) -> torch.Tensor:
    """LoRA / NLS: y = base(x) + s · dropout(x) Aᵀ Bᵀ, with base(x) = x Wᵀ + b."""
    y = base(x)
    dt = y.dtype
    x_a = x if dropout is None else dropout(x)
    return y + F.linear(F.linear(x_a.to(dt), A.to(dt)), B.to(dt)) * s


def delta(A: torch.Tensor, B: torch.Tensor, s: float, M: torch.Tensor | None) -> torch.Tensor:
    """L = s·(B A) ⊙ M (out, in) in fp32; M None for a dense adapter."""
    L = s * (B.float() @ A.float())
    return L if M is None else torch.where(M, L, 0.0)


def sparse_peft(
    x: torch.Tensor,
    W: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    s: float,
    M: torch.Tensor | None,
    dropout: Dropout | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """SparsePEFT: L = s·(B A) ⊙ M, y = x Wᵀ + dropout(x) Lᵀ; without dropout one GEMM, y = x (W + L)ᵀ."""
    x, dt = _compute(x)
    L = delta(A, B, s, M)  # (out, in)
    b = None if bias is None else bias.to(dt)
    if dropout is None:
        return F.linear(x, (W.float() + L).to(dt), b)
    return F.linear(x, W.to(dt), b) + F.linear(dropout(x), L.to(dt))


def qa_sparse_peft(
    x: torch.Tensor,
    W: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    s: float,
    M: torch.Tensor | None,
    qa: QAParams,
    dropout: Dropout | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """QA-SparsePEFT: W_m = W + L, Ŵ = fake_quant_ste(W_m; s_q, z), y = dropout(x) Ŵᵀ (dropout on the whole
    layer input, one GEMM, as the authors' `sqft_qa_linear.py`)."""
    x, dt = _compute(x)
    W_m = W.float() + delta(A, B, s, M)  # (out, in)
    n_in = W_m.shape[1]
    s_q, z = (expand_groups(p.float(), qa.group_size, n_in) for p in (qa.scale, qa.zero))  # (out, in)
    W_hat = fake_quantize_ste(W_m, s_q, z, qa.bits)
    x_in = x if dropout is None else dropout(x)
    return F.linear(x_in, W_hat.to(dt), None if bias is None else bias.to(dt))


def int4_base(
    q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, u: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The base weight of QA on an INT-b model (qa_base gptq, gptq-dither): W = s_q (q − z + u) (out, in) fp32,
    and M = 1[q ≠ z]. q (out, in) codes, scale / zero (out, G), u (out, in) dither offsets or None."""
    s_q, z = (expand_groups(p.float(), q.shape[1] // p.shape[1], q.shape[1]) for p in (scale, zero))
    W = dequantize(q, s_q, z)
    if u is not None:
        W = W + s_q * u
    return W, q != z


def _compute(x: torch.Tensor) -> tuple[torch.Tensor, torch.dtype]:
    dt = compute_dtype(x)
    return x.to(dt), dt
