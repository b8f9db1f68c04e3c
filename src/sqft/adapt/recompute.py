"""The memory-saving path of the masked adapters: `adapt.reference`, with the weights remade in backward.

A plain-autograd SparsePEFT / QA-SparsePEFT layer keeps its weight-sized `W + L` (or `Ŵ`) alive from forward to
backward: at 8B that is a second copy of the model. Here the backward *recomputes* the weights from (A, B) and
the frozen base, so a layer keeps only its inputs, as LoRA does; the gradient is the reference's:

    ∂loss/∂(s B A) = (gᵀ x_in) ⊙ M     (straight-through for QA: ∂Ŵ/∂W_m = I)

Two forms (the reference's): folded, y = x_in W_effᵀ with W_eff = W + L or Ŵ (x_in = dropout(x) for QA, x for
SparsePEFT without dropout), one GEMM; split, y = x Wᵀ + dropout(x) Lᵀ (SparsePEFT with dropout), two GEMMs.
A base supplies the weights (`FloatBase`: a floating-point W; `Int4Base`: QA on the stored INT-b codes), each
as eager or compiled chains (`sqft.fused`); evaluation and merge use the eager ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sqft.adapt.equations import (
    QAParams,
    fake_quant_groups,
    int4_pruned_t,
    int4_requantized,
    masked_delta_,
    unpack_mask,
)
from sqft.fused import Fusable
from sqft.quantize.qlinear import compute_dtype

__all__ = ["FloatBase", "Int4Base", "adapted_linear", "float_merged", "float_split", "int4_merged_t"]


def _float_merged(W, A, B, pruned, s: float, scale, zero, bits: int, dtype: torch.dtype) -> torch.Tensor:
    """W + L (SparsePEFT, `scale` None) or Ŵ = fake_quant(W + L) (QA), (out, in) in `dtype`; in place on L."""
    W_m = masked_delta_(A, B, s, pruned).add_(W)  # (out, in)
    if scale is None:
        return W_m.to(dtype)
    return fake_quant_groups(W_m, QAParams(scale, zero, bits, W.shape[1] // scale.shape[1])).to(dtype)


def _float_split(W, A, B, pruned, s: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, L) in `dtype` for the split form, SparsePEFT with dropout on the adapter branch."""
    return W.to(dtype), masked_delta_(A, B, s, pruned).to(dtype)


def _int4_merged_t(q, scale, zero, A, B, s: float, bits: int, pruned, dtype: torch.dtype, u) -> torch.Tensor:
    """Ŵᵀ = s_q (Q − z) (in, out) in `dtype`, computed in the stored layout (in place on the tensors it makes)."""
    Q, _ = int4_requantized(q, scale, zero, A, B, s, bits, pruned, u)
    return Q.sub_(zero.unsqueeze(1)).mul_(scale.unsqueeze(1)).view(q.shape).to(dtype)


float_merged, float_split, int4_merged_t = (
    Fusable(_float_merged),
    Fusable(_float_split),
    Fusable(_int4_merged_t),
)


class FloatBase:
    """Weights over a floating-point base W (out, in): SparsePEFT (M packed by `pack_mask`), or QA with given
    (s_q, z) (qa_base = fp16). `fused`: the compiled chains (training only)."""

    stored_t = False  # weights are built (out, in)

    def __init__(
        self,
        weight: Callable[[], torch.Tensor],
        mask_bits: torch.Tensor | None,
        qa: QAParams | None = None,
        fused: bool = False,
    ) -> None:
        self.weight, self.mask_bits, self.qa, self.fused = weight, mask_bits, qa, fused

    def pruned(self, n_in: int) -> torch.Tensor | None:
        """1 − M (out, in) bool, decoded once per pass (in place: one byte per weight)."""
        return None if self.mask_bits is None else unpack_mask(self.mask_bits, n_in).logical_not_()

    def merged(self, A, B, s: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(W_eff, 1 − M) (out, in): W_eff = W + L, or Ŵ for QA."""
        chain = float_merged.fused if self.fused else float_merged
        W = self.weight().detach()  # plain tensors: compiled, parameters would get one kernel per shape
        pruned = self.pruned(W.shape[1])
        qa = self.qa
        scale, zero, bits = (None, None, 0) if qa is None else (qa.scale, qa.zero, qa.bits)
        return chain(W, A.detach(), B.detach(), pruned, s, scale, zero, bits, dtype), pruned

    def split(
        self, A, B, s: float, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(W, L, 1 − M) (out, in) for y = x Wᵀ + dropout(x) Lᵀ."""
        assert self.qa is None, "QA-SparsePEFT applies dropout to its input: it is never split"
        chain = float_split.fused if self.fused else float_split
        W = self.weight().detach()
        pruned = self.pruned(W.shape[1])
        return *chain(W, A.detach(), B.detach(), pruned, s, dtype), pruned


class Int4Base:
    """QA-SparsePEFT on the INT-b base itself (qa_base = gptq, or gptq-dither with `dither_t()` giving u
    (in, out), regenerated per pass). `codes_t()` gives q (in, out), s_q and z (G, out): the weights are made in
    that stored layout (no transposed copies) and returned as (out, in) views."""

    stored_t = True

    def __init__(
        self,
        codes_t: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        bits: int,
        masked: bool,
        dither_t: Callable[[], torch.Tensor] | None = None,
        fused: bool = False,
    ) -> None:
        self.codes_t, self.bits, self.masked, self.dither_t, self.fused = (
            codes_t,
            bits,
            masked,
            dither_t,
            fused,
        )

    def merged(self, A, B, s: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(Ŵ, 1 − M) (out, in), transposed views of the (in, out) builds; 1 − M = 1[q = z] (None when dense)."""
        q, scale, zero = self.codes_t()  # unpacked once per pass
        pruned_t = int4_pruned_t(q, zero) if self.masked else None
        u = None if self.dither_t is None else self.dither_t()
        chain = int4_merged_t.fused if self.fused else int4_merged_t
        W_t = chain(q, scale, zero, A.detach(), B.detach(), s, self.bits, pruned_t, dtype, u)
        return W_t.T, None if pruned_t is None else pruned_t.T

    def split(self, A, B, s, dtype):
        raise AssertionError("QA-SparsePEFT applies dropout to its input: it is never split")


WeightBase = FloatBase | Int4Base


def _outer(g: torch.Tensor, x: torch.Tensor, stored_t: bool) -> torch.Tensor:
    """gᵀ x (out, in) over all tokens, in fp32; computed as (xᵀ g)ᵀ when the weights are stored (in, out)."""
    g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1]).to(g.dtype)
    return ((x2.T @ g2).T if stored_t else g2.T @ x2).float()


class _AdaptedLinear(torch.autograd.Function):
    """Folded: y = x W_effᵀ + b (x_drop None); split: y = x Wᵀ + b + x_drop Lᵀ. Grads to x, x_drop, A, B.

    Saves only (x, x_drop, A, B); the weights are recomputed in backward (memory ≈ LoRA's).
    """

    @staticmethod
    def forward(ctx, x, x_drop, A, B, s, base: WeightBase, bias):  # type: ignore[override]
        dt = x.dtype
        bias = bias.to(dt) if bias is not None else None
        if x_drop is None:
            W_eff, _ = base.merged(A, B, s, dt)
            y = F.linear(x, W_eff, bias)  # exactly the merged layer's forward
        else:
            W, L, _ = base.split(A, B, s, dt)
            y = F.linear(x, W, bias) + F.linear(x_drop, L)
        ctx.save_for_backward(x, x_drop, A, B)
        ctx.base, ctx.s = base, s
        return y

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, x_drop, A, B = ctx.saved_tensors
        base, s = ctx.base, ctx.s
        grad_x = grad_xd = None  # the weights are remade: nothing weight-sized is kept from forward
        if x_drop is None:
            W_eff, pruned = base.merged(A, B, s, g.dtype)
            grad_x = g @ W_eff if ctx.needs_input_grad[0] else None
            x_in = x
        else:
            W, L, pruned = base.split(A, B, s, g.dtype)
            grad_x = g @ W if ctx.needs_input_grad[0] else None
            grad_xd = g @ L if ctx.needs_input_grad[1] else None
            x_in = x_drop
        grad_L = _outer(g, x_in, base.stored_t)  # (out, in)
        if pruned is not None:
            grad_L.masked_fill_(pruned, 0.0)
        grad_L.mul_(s)
        grad_A = (B.float().T @ grad_L).to(A.dtype)  # (r, in)
        grad_B = (grad_L @ A.float().T).to(B.dtype)  # (out, r)
        return grad_x, grad_xd, grad_A, grad_B, None, None, None


def adapted_linear(
    x: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    s: float,
    base: WeightBase,
    bias: torch.Tensor | None = None,
    x_drop: torch.Tensor | None = None,
) -> torch.Tensor:
    """The masked (optionally quantization-aware) adapted linear: folded, or split when `x_drop` is given.

    `base` builds what each pass needs on demand, in forward and again in backward, so no (out, in) tensor of
    any layer stays alive between the two.
    """
    dt = compute_dtype(x)
    x = x.to(dt)
    x_drop = x_drop.to(dt) if x_drop is not None else None
    with torch.autocast(x.device.type, enabled=False):
        return _AdaptedLinear.apply(x, x_drop, A, B, s, base, bias)
