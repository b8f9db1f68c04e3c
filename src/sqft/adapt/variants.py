"""Adapter math, as in the paper (§2.3 SparsePEFT, §2.4 QA-SparsePEFT) — pure tensor functions.

    L   = s · (B A) ⊙ M                     SparsePEFT delta (M = 1 when the adapter is dense)
    W_m = W + L                             merged weight
    Ŵ   = s_q · (clamp(round(W_m / s_q) + z, 0, 2^b − 1) − z)     QA-SparsePEFT, STE gradient
    Q   = clamp(q + round(L / s_q), 0, 2^b − 1)                     the same on an INT-b base W = s_q (q − z)
    Q   = clamp(q + round(u + L / s_q), 0, 2^b − 1)                 ... with a dithered base W = s_q (q − z + u)

`adapted_linear` computes `y = x W_mᵀ` (or `x Ŵᵀ`) with one GEMM when dropout is off, and
`y = x Wᵀ + dropout(x) Lᵀ` (QA: `x (Ŵ − L)ᵀ + dropout(x) Lᵀ`) with two GEMMs when it is on (dropout feeds only
the adapter branch). Its backward *recomputes* the weights from (A, B) instead of storing them, so a layer keeps
only its inputs for backward, as plain LoRA does. All weight algebra is done in fp32 and cast to the compute
dtype once, so training's eval forward and the merged model use the very same weight (bit for bit). On an INT4
base (`int4_base_weights`) it runs on the stored codes, optionally as compiled kernels (`sqft.fused`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from sqft.fused import Fusable
from sqft.quantize.primitives import qmax
from sqft.quantize.qlinear import compute_dtype

__all__ = [
    "QAParams",
    "pack_mask",
    "unpack_mask",
    "masked_delta",
    "fake_quant_groups",
    "quant_codes",
    "requantized_codes",
    "dither_offsets",
    "AdapterWeights",
    "dense_base_weights",
    "low_rank_t",
    "int4_requantized",
    "int4_pruned_t",
    "int4_base_weights",
    "WeightsFn",
    "adapted_linear",
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
    bits = (P.unsqueeze(-1) >> shifts).bitwise_and_(1)  # (out, ⌈in/8⌉, 8), each 0 or 1
    return bits.view(P.shape[0], -1)[:, :n_in].view(torch.bool)  # 0/1 bytes are bools: no copy


def masked_delta(A: torch.Tensor, B: torch.Tensor, s: float, M: torch.Tensor | None) -> torch.Tensor:
    """L = s · (B A) ⊙ M in fp32. A (r, in), B (out, r), M (out, in) bool or None → (out, in)."""
    return _delta(A, B, s, None if M is None else M.logical_not())


def _delta(A: torch.Tensor, B: torch.Tensor, s: float, pruned: torch.Tensor | None) -> torch.Tensor:
    """`masked_delta` from the pruned positions 1 − M: zeroed in place (a product with M would first copy M to
    fp32, a weight-sized buffer)."""
    L = (B.float() @ A.float()).mul_(s)  # (out, in)
    return L.masked_fill_(pruned, 0.0) if pruned is not None else L


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
    Q = (Wg / sq).round_().add_(z).clamp_(0, qmax(qa.bits))  # (out, G, gs)
    return Q.flatten(1)[:, :n_in].to(torch.int32)


def fake_quant_groups(W_m: torch.Tensor, qa: QAParams) -> torch.Tensor:
    """Ŵ = s_q (Q − z) in fp32 (out, in) — the weight the merged INT4 layer dequantizes to."""
    n_in = W_m.shape[1]
    Wg, sq, z = _grouped(W_m.float(), qa)
    Q = (Wg / sq).round_().add_(z).clamp_(0, qmax(qa.bits))
    return Q.sub_(z).mul_(sq).flatten(1)[:, :n_in]


def requantized_codes(
    q: torch.Tensor, L: torch.Tensor, scale: torch.Tensor, bits: int, u: torch.Tensor | None = None
) -> torch.Tensor:
    """Q = clamp(q + round(L / s_q), 0, 2^b − 1): eq. 3 on an INT-b base, in integer form. fp32, shape of L.

    The base is W = s_q (q − z) exactly, so round(W_m / s_q) + z = q + round(L / s_q) with no fp round trip
    through W (an exact tie L / s_q = k + ½ rounds to even in L / s_q, not in the sum). q, L: (G, gs, out)
    in the stored (in, out) layout; scale (G, 1, out). Where L = 0 (pruned: M = 0) Q = q exactly.
    With dither offsets `u` ∈ [−½, ½) (`dither_offsets`) the base is W = s_q (q − z + u): Q = q + round(u + L / s_q),
    still q where L = 0, but a code moves as soon as L pushes its weight across the nearer bin edge.
    """
    Q = L / scale
    if u is not None:
        Q.add_(u)
    return Q.round_().add_(q).clamp_(0, qmax(bits))


def dither_offsets(shape: tuple[int, ...], seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """u ~ U[−½, ½) fp32 of `shape`, the same for a given seed on a given device (regenerated, never stored).

    The position of a dithered GPTQ weight inside its quantization bin, in units of s_q: `round(u) = 0`, so the
    starting codes are GPTQ's, while the trained weight sits anywhere in its bin — as an fp16 weight does — and
    E_u[round(u + L / s_q)] = L / s_q for |L| < s_q / 2: the codes follow L on average from the first step.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.rand(shape, generator=gen, device=device).sub_(0.5)


class AdapterWeights(NamedTuple):
    """What one adapted linear multiplies by, (out, in) in the compute dtype (transposed views when `stored_t`).

    Without dropout: `eff` = W + L (SparsePEFT) or Ŵ (QA), the merged layer's weight. With dropout: `fixed`, the
    part x sees (W, or Ŵ − L for QA), and `delta` = L, the part dropout(x) sees. `pruned` (1 − M, bool) only for
    the backward of a sparse adapter.
    """

    eff: torch.Tensor | None
    fixed: torch.Tensor | None
    delta: torch.Tensor | None
    pruned: torch.Tensor | None
    stored_t: bool = False  # computed in an (in, out) layout: ∂L is formed in that layout too


WeightsFn = Callable[[torch.Tensor, torch.Tensor, float, torch.dtype, bool, bool], AdapterWeights]
"""weights(A, B, s, dtype, dropout, backward)"""


def _dense_chain(
    W: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    pruned: torch.Tensor | None,
    s: float,
    scale: torch.Tensor | None,
    zero: torch.Tensor | None,
    bits: int,
    dtype: torch.dtype,
    dropout: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weights over a floating-point base W (out, in), one fusable chain: (W_eff, None) without dropout,
    (W_fix, L) with it, in `dtype`. Works in place on the tensors it makes (each is a weight-sized buffer)."""
    L = _delta(A, B, s, pruned)  # (out, in)
    if scale is None:  # SparsePEFT: W + L; with dropout W (exactly) and L
        return (L.add_(W).to(dtype), None) if not dropout else (W.to(dtype), L.to(dtype))
    qa = QAParams(scale, zero, bits, W.shape[1] // scale.shape[1])
    if not dropout:
        return fake_quant_groups(L.add_(W), qa).to(dtype), None  # Ŵ
    return fake_quant_groups(W.float() + L, qa).sub_(L).to(dtype), L.to(dtype)  # Ŵ − L, L


dense_chain = Fusable(_dense_chain)


def dense_base_weights(
    base_weight: Callable[[], torch.Tensor],
    mask_bits: torch.Tensor | None,
    qa: QAParams | None,
    fused: bool = False,
) -> WeightsFn:
    """`weights(...)` over a floating-point base W (out, in): SparsePEFT (M packed by `pack_mask`), or QA with
    given (s_q, z) (qa_base = fp16); `fused`: the compiled chain (training only)."""
    chain = dense_chain.fused if fused else dense_chain
    scale, zero, bits = (None, None, 0) if qa is None else (qa.scale, qa.zero, qa.bits)

    def weights(A, B, s: float, dtype: torch.dtype, dropout: bool, backward: bool) -> AdapterWeights:
        W = base_weight().detach()  # plain tensors: compiled, parameters would get one kernel per shape
        # 1 − M, decoded once per pass (in place: one byte per weight)
        pruned = unpack_mask(mask_bits, W.shape[1]).logical_not_() if mask_bits is not None else None
        a, b = chain(W, A.detach(), B.detach(), pruned, s, scale, zero, bits, dtype, dropout)
        pruned = pruned if backward else None
        return AdapterWeights(None, a, b, pruned) if dropout else AdapterWeights(a, None, None, pruned)

    return weights


def low_rank_t(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """(B A)ᵀ = Aᵀ Bᵀ (in, out) in fp32, in the INT4 base's stored layout."""
    return A.float().T @ B.float().T


def int4_requantized(
    q: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    s: float,
    bits: int,
    pruned: torch.Tensor | None,
    u: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """QA-SparsePEFT on an INT-b base, in its stored (in, out) layout: (Q, Lᵀ), each (G, gs, out).

    q (in, out) int codes, scale (G, out), A (r, in), B (out, r); `pruned` = `int4_pruned_t(q, z)` for
    QA-SparsePEFT (M = 1[q ≠ z] comes from the codes, as the base weight is exactly 0 where q = z, so no mask is
    stored), None for a dense adapter. L = s (B A) ⊙ M; Q by `requantized_codes` (dithered by `u` (in, out) when
    given). Training and merge both call this, so the merged codes come from the very same arithmetic.
    """
    n_in, out = q.shape
    G = scale.shape[0]
    L_t = low_rank_t(A, B).mul_(s)  # (in, out)
    if pruned is not None:
        L_t.masked_fill_(pruned, 0.0)
    q, L_t = q.view(G, n_in // G, out), L_t.view(G, -1, out)  # (G, gs, out)
    u = None if u is None else u.view(G, -1, out)
    return requantized_codes(q, L_t, scale.unsqueeze(1), bits, u), L_t


def int4_pruned_t(q: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """(1 − M)ᵀ = 1[q = z] (in, out) bool from codes q (in, out) and zero points (G, out) (integer-valued: the
    comparison runs in q's integer type)."""
    G, out = zero.shape
    return (q.view(G, -1, out) == zero.to(q.dtype).unsqueeze(1)).view(q.shape)


def _int4_eff_t(
    q, scale, zero, A, B, s: float, bits: int, pruned: torch.Tensor | None, dtype: torch.dtype, u=None
) -> torch.Tensor:
    """Ŵᵀ = s_q (Q − z) (in, out) in `dtype`, one fusable chain (in place on the tensors it makes)."""
    Q, _ = int4_requantized(q, scale, zero, A, B, s, bits, pruned, u)
    return Q.sub_(zero.unsqueeze(1)).mul_(scale.unsqueeze(1)).view(q.shape).to(dtype)


def _int4_fixed_delta_t(
    q, scale, zero, A, B, s: float, bits: int, pruned: torch.Tensor | None, dtype: torch.dtype, u=None
):
    """((Ŵ − L)ᵀ, Lᵀ) (in, out) in `dtype`, for the dropout form; one fusable chain."""
    Q, L_t = int4_requantized(q, scale, zero, A, B, s, bits, pruned, u)
    W_fix_t = Q.sub_(zero.unsqueeze(1)).mul_(scale.unsqueeze(1)).sub_(L_t)  # Ŵ − L
    return W_fix_t.view(q.shape).to(dtype), L_t.view(q.shape).to(dtype)


int4_eff_t = Fusable(_int4_eff_t)
int4_fixed_delta_t = Fusable(_int4_fixed_delta_t)


def int4_base_weights(
    codes_t: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    bits: int,
    masked: bool,
    fused: bool,
    dither_t: Callable[[], torch.Tensor] | None = None,
) -> WeightsFn:
    """`weights(...)` for QA-SparsePEFT on the INT-b base itself (qa_base = gptq, or gptq-dither with
    `dither_t()` giving u (in, out), regenerated per pass).

    `codes_t()` gives the base's q (in, out), s_q and z (G, out). Everything is computed in that stored layout
    (no transposed copies) and returned as (out, in) views; `fused`: the compiled chains (training only).
    """

    def weights(A, B, s: float, dtype: torch.dtype, dropout: bool, backward: bool) -> AdapterWeights:
        q, scale, zero = codes_t()
        pruned = int4_pruned_t(q, zero) if masked else None  # (in, out), once per pass
        u = None if dither_t is None else dither_t()
        args = (q, scale, zero, A.detach(), B.detach(), s, bits, pruned, dtype, u)
        pruned = pruned.T if backward and pruned is not None else None
        if not dropout:
            eff_t = int4_eff_t.fused(*args) if fused else int4_eff_t(*args)
            return AdapterWeights(eff_t.T, None, None, pruned, True)
        fixed_t, L_t = int4_fixed_delta_t.fused(*args) if fused else int4_fixed_delta_t(*args)
        return AdapterWeights(None, fixed_t.T, L_t.T, pruned, True)

    return weights


def _outer(g: torch.Tensor, x: torch.Tensor, stored_t: bool) -> torch.Tensor:
    """gᵀ x (out, in) over all tokens, in fp32; computed as (xᵀ g)ᵀ when the weights are stored (in, out)."""
    g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1]).to(g.dtype)
    return ((x2.T @ g2).T if stored_t else g2.T @ x2).float()


class _AdaptedLinear(torch.autograd.Function):
    """y = x W_effᵀ + b (x_drop None) or x W_fixᵀ + b + x_drop Lᵀ; grads to x, x_drop, A, B.

    Saves only (x, x_drop, A, B); the weights are recomputed in backward (memory ≈ LoRA's).
    """

    @staticmethod
    def forward(ctx, x, x_drop, A, B, s, weights, bias):  # type: ignore[override]
        dt = x.dtype
        w = weights(A, B, s, dt, x_drop is not None, False)
        bias = bias.to(dt) if bias is not None else None
        if x_drop is None:
            y = F.linear(x, w.eff, bias)  # exactly the merged layer's forward
        else:
            y = F.linear(x, w.fixed, bias) + F.linear(x_drop, w.delta)
        ctx.save_for_backward(x, x_drop, A, B)
        ctx.weights, ctx.s = weights, s
        return y

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, x_drop, A, B = ctx.saved_tensors
        w = ctx.weights(A, B, ctx.s, g.dtype, x_drop is not None, True)  # remade: nothing kept from forward
        grad_x = grad_xd = None
        if x_drop is None:
            if ctx.needs_input_grad[0]:
                grad_x = g @ w.eff
            x_in = x
        else:
            if ctx.needs_input_grad[0]:
                grad_x = g @ w.fixed
            if ctx.needs_input_grad[1]:
                grad_xd = g @ w.delta
            x_in = x_drop
        # ∂loss/∂(s B A) = (gᵀ x_in) ⊙ M (straight-through for QA: ∂Ŵ/∂W_m = I), chained into A and B.
        grad_L = _outer(g, x_in, w.stored_t)  # (out, in)
        if w.pruned is not None:
            grad_L.masked_fill_(w.pruned, 0.0)
        grad_L.mul_(ctx.s)
        grad_A = (B.float().T @ grad_L).to(A.dtype)  # (r, in)
        grad_B = (grad_L @ A.float().T).to(B.dtype)  # (out, r)
        return grad_x, grad_xd, grad_A, grad_B, None, None, None


def adapted_linear(
    x: torch.Tensor,
    x_drop: torch.Tensor | None,
    A: torch.Tensor,
    B: torch.Tensor,
    s: float,
    weights: WeightsFn,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked (and optionally quantization-aware) adapted linear; `x_drop=None` when dropout is off.

    `weights` (`dense_base_weights` / `int4_base_weights`) builds what each pass needs on demand, in forward and
    again in backward, so no (out, in) tensor of any layer stays alive between the two.
    """
    dt = compute_dtype(x)
    x = x.to(dt)
    x_drop = x_drop.to(dt) if x_drop is not None else None
    with torch.autocast(x.device.type, enabled=False):
        return _AdaptedLinear.apply(x, x_drop, A, B, s, weights, bias)
