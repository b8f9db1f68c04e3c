"""Adapter math, as in the paper (§2.3 SparsePEFT, §2.4 QA-SparsePEFT) — pure tensor functions.

    L   = s · (B A) ⊙ M                     SparsePEFT delta (M = 1 when the adapter is dense)
    W_m = W + L                             merged weight
    Ŵ   = s_q · (clamp(round(W_m / s_q) + z, 0, 2^b − 1) − z)     QA-SparsePEFT, STE gradient

`adapted_linear` computes `y = x W_mᵀ` (or `x Ŵᵀ`) with one GEMM when dropout is off, and
`y = x (W_m − L)ᵀ + dropout(x) Lᵀ` with two GEMMs when it is on (dropout feeds only the adapter branch; the
value of the fixed part is the exact merged weight minus L). Its backward *recomputes* L and W_m from (A, B)
instead of storing them, so a layer keeps only its inputs for backward, as plain LoRA does. All weight algebra
is done in fp32 and cast to the compute dtype once, so training's eval forward and the merged model use the
very same weight (bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sqft.quantize.primitives import qmax

__all__ = [
    "QAParams",
    "pack_mask",
    "unpack_mask",
    "masked_delta",
    "fake_quant_groups",
    "quant_codes",
    "merged_weight",
    "adapted_linear",
    "frozen_linear",
]


@dataclass
class QAParams:
    """Frozen quantization parameters of one linear: scale, zero (out, G) fp32, bits and group size."""

    scale: torch.Tensor  # (out, G)
    zero: torch.Tensor  # (out, G)
    bits: int
    group_size: int
    sym: bool = False


def pack_mask(M: torch.Tensor) -> torch.Tensor:
    """M (out, in) bool → (out, ⌈in/8⌉) uint8: bit j of byte k is M[:, 8k + j]. One bit per weight, not a byte."""
    out, n_in = M.shape
    Mb = F.pad(M.to(torch.uint8), (0, (-n_in) % 8)).view(out, -1, 8)  # (out, ⌈in/8⌉, 8)
    shifts = torch.arange(8, dtype=torch.uint8, device=M.device)
    return (Mb << shifts).sum(-1, dtype=torch.uint8)  # distinct bits: the sum is their OR


def unpack_mask(P: torch.Tensor, n_in: int) -> torch.Tensor:
    """Inverse of `pack_mask`: (out, ⌈in/8⌉) uint8 → (out, in) bool."""
    shifts = torch.arange(8, dtype=torch.uint8, device=P.device)
    bits = (P.unsqueeze(-1) >> shifts) & 1  # (out, ⌈in/8⌉, 8)
    return bits.view(P.shape[0], -1)[:, :n_in].bool()


def masked_delta(A: torch.Tensor, B: torch.Tensor, s: float, M: torch.Tensor | None) -> torch.Tensor:
    """L = s · (B A) ⊙ M in fp32. A (r, in), B (out, r), M (out, in) bool or None → (out, in)."""
    L = (B.float() @ A.float()) * s  # (out, in)
    return L * M if M is not None else L


def _grouped(W: torch.Tensor, qa: QAParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """View W (out, in) as (out, G, gs) with scale/zero (out, G, 1), padding in to a multiple of gs."""
    out, n_in = W.shape
    G = qa.scale.shape[1]
    gs = -(-n_in // G)
    if G * gs != n_in:
        W = F.pad(W, (0, G * gs - n_in))
    return W.view(out, G, gs), qa.scale.float()[:, :, None], qa.zero.float()[:, :, None]


def quant_codes(W_m: torch.Tensor, qa: QAParams) -> torch.Tensor:
    """Q = clamp(round(W_m / s_q) + z, 0, 2^b − 1) as int32 (out, in)."""
    n_in = W_m.shape[1]
    Wg, sq, z = _grouped(W_m.float(), qa)
    Q = torch.clamp(torch.round(Wg / sq) + z, 0, qmax(qa.bits))  # (out, G, gs)
    return Q.flatten(1)[:, :n_in].to(torch.int32)


def fake_quant_groups(W_m: torch.Tensor, qa: QAParams) -> torch.Tensor:
    """Ŵ = s_q (Q − z) in fp32 (out, in) — the weight the merged INT4 layer dequantizes to."""
    n_in = W_m.shape[1]
    Wg, sq, z = _grouped(W_m.float(), qa)
    Q = torch.clamp(torch.round(Wg / sq) + z, 0, qmax(qa.bits))
    return (sq * (Q - z)).flatten(1)[:, :n_in]


def merged_weight(W: torch.Tensor, L: torch.Tensor, qa: QAParams | None) -> torch.Tensor:
    """W + L (SparsePEFT merge, eq. 2), fake-quantized with the frozen (s_q, z) for QA-SparsePEFT (eq. 3–4)."""
    W_m = W.float() + L
    return W_m if qa is None else fake_quant_groups(W_m, qa)


def _fixed_part(base_weight, W_eff: torch.Tensor, L: torch.Tensor, qa: QAParams | None) -> torch.Tensor:
    """The part of W_eff that sees x (not dropout(x)): W for SparsePEFT, Ŵ − L for QA (STE gives L its grad)."""
    return base_weight().float() if qa is None else W_eff - L


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    dev = x.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype


class _AdaptedLinear(torch.autograd.Function):
    """y = x W_effᵀ + b (x_drop None) or x (W_eff − L)ᵀ + b + x_drop Lᵀ; grads to x, x_drop, A, B.

    Saves only (x, x_drop, A, B); W_eff and L are recomputed in backward (memory ≈ LoRA's).
    """

    @staticmethod
    def forward(ctx, x, x_drop, A, B, base_weight, mask, s, qa, bias):  # type: ignore[override]
        dt = x.dtype
        L = masked_delta(A, B, s, mask() if mask is not None else None)
        W_eff = merged_weight(base_weight(), L, qa)
        bias = bias.to(dt) if bias is not None else None
        if x_drop is None:
            y = F.linear(x, W_eff.to(dt), bias)  # exactly the merged layer's forward
        else:
            W_fix = _fixed_part(base_weight, W_eff, L, qa)
            y = F.linear(x, W_fix.to(dt), bias) + F.linear(x_drop, L.to(dt))
        ctx.save_for_backward(x, x_drop, A, B)
        ctx.base_weight, ctx.mask, ctx.s, ctx.qa = base_weight, mask, s, qa
        return y

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, x_drop, A, B = ctx.saved_tensors
        M, s = (
            (ctx.mask() if ctx.mask is not None else None),
            ctx.s,
        )  # decoded again: no (out, in) copy is kept
        L = masked_delta(A, B, s, M)  # recomputed: (out, in)
        W_eff = merged_weight(ctx.base_weight(), L, ctx.qa)
        dt = g.dtype
        grad_x = grad_xd = None
        if x_drop is None:
            if ctx.needs_input_grad[0]:
                grad_x = g @ W_eff.to(dt)
            x_in = x
        else:
            if ctx.needs_input_grad[0]:
                grad_x = g @ _fixed_part(ctx.base_weight, W_eff, L, ctx.qa).to(dt)
            if ctx.needs_input_grad[1]:
                grad_xd = g @ L.to(dt)
            x_in = x_drop
        # ∂loss/∂L = gᵀ x_in (straight-through for QA: ∂Ŵ/∂W_m = I), masked, then chained into A and B.
        grad_L = (g.reshape(-1, g.shape[-1]).T @ x_in.reshape(-1, x_in.shape[-1]).to(dt)).float()  # (out, in)
        if M is not None:
            grad_L = grad_L * M
        grad_L = grad_L * s
        grad_A = (B.float().T @ grad_L).to(A.dtype)  # (r, in)
        grad_B = (grad_L @ A.float().T).to(B.dtype)  # (out, r)
        return grad_x, grad_xd, grad_A, grad_B, None, None, None, None, None


def adapted_linear(
    x: torch.Tensor,
    x_drop: torch.Tensor | None,
    A: torch.Tensor,
    B: torch.Tensor,
    base_weight: Callable[[], torch.Tensor],
    mask: Callable[[], torch.Tensor] | None,
    s: float,
    qa: QAParams | None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked (and optionally quantization-aware) adapted linear; `x_drop=None` when dropout is off.

    `base_weight()` and `mask()` give W and M (out, in) on demand, in forward and again in backward, so that
    neither an fp32 weight nor a byte-per-weight mask of every layer stays alive between the two.
    """
    dt = _compute_dtype(x)
    x = x.to(dt)
    x_drop = x_drop.to(dt) if x_drop is not None else None
    with torch.autocast(x.device.type, enabled=False):
        return _AdaptedLinear.apply(x, x_drop, A, B, base_weight, mask, s, qa, bias)


class _FrozenLinear(torch.autograd.Function):
    """y = x Wᵀ for a weight made on the fly (INT4 dequantized); backward recomputes W instead of storing it."""

    @staticmethod
    def forward(ctx, x, base_weight):  # type: ignore[override]
        ctx.base_weight = base_weight
        return F.linear(x, base_weight().to(x.dtype))

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g @ ctx.base_weight().to(g.dtype), None


def frozen_linear(x: torch.Tensor, base_weight: Callable[[], torch.Tensor]) -> torch.Tensor:
    dt = _compute_dtype(x)
    with torch.autocast(x.device.type, enabled=False):
        return _FrozenLinear.apply(x.to(dt), base_weight)
