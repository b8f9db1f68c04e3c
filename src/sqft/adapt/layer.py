"""`AdapterLinear`: one adapter layer whose variants compose (elastic rank × sparse mask × quantization-aware).

It follows PEFT's small protocol — `delta_weight()`, `merge()`, `forward()` — on a target linear whose base is
a dense/sparse `nn.Linear` or an INT4 `QuantLinear`. The variants, as `adapt.reference` writes them:

    y = base(x) + s · dropout(x) A_rᵀ B_rᵀ                  LoRA / NLS (A_r = A[:r], B_r = B[:, :r], s = α / r_max)
    y = x Wᵀ + dropout(x) Lᵀ,  L = s (B_r A_r) ⊙ M          SparsePEFT (without dropout one GEMM: y = x (W + L)ᵀ)
    y = dropout(x) Ŵᵀ,  Ŵ = fake_quant(W + L; s_q, z), STE   QA-SparsePEFT
                 (on an INT4 base optionally dithered: W = s_q (q − z + u), u fixed per weight, see `dither_seed`)

`path` selects how they run, here and nowhere else: "recompute" (default; `adapt.recompute`, the weights
remade in backward instead of kept), "fused" (the same with compiled weight builds, training only) or
"reference" (plain autograd). Evaluation always runs the eager recompute path, which `merge` reproduces bit
for bit. The active rank `r` is state set from outside (`set_active_rank`, once per optimizer step by the NLS
sampler); `forward` never changes it, so a gradient-checkpointing recomputation sees the rank of its forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sqft.adapt import reference
from sqft.adapt.equations import (
    QAParams,
    dither_offsets,
    int4_pruned_t,
    int4_requantized,
    masked_delta,
    nls_slice,
    pack_mask,
    quant_codes,
    unpack_mask,
)
from sqft.adapt.recompute import FloatBase, Int4Base, WeightBase, adapted_linear
from sqft.errors import SqftError
from sqft.quantize.qlinear import QuantLinear

PATHS = ("recompute", "fused", "reference")

__all__ = ["PATHS", "AdapterLinear", "base_weight_fp32", "is_quant_linear"]


def is_quant_linear(module: nn.Module) -> bool:
    """An INT-b linear (sqft's `QuantLinear` or anything with the same `codes()`/`dequantize()` protocol)."""
    return not isinstance(module, nn.Linear) and hasattr(module, "codes") and hasattr(module, "dequantize")


def base_weight_fp32(base: nn.Module) -> torch.Tensor:
    """The base weight (out, in) in fp32: the dense weight, or the INT4 codes dequantized (no copy kept)."""
    if is_quant_linear(base):
        return base.dequantize(torch.float32)
    return base.weight.float()


class AdapterLinear(nn.Module):
    """A target linear wrapped with a (possibly elastic, masked, quantization-aware) low-rank adapter."""

    def __init__(
        self,
        base: nn.Module,
        r_max: int,
        alpha: float,
        dropout: float = 0.0,
        sparse: bool = False,
        qa: QAParams | None = None,
        generator: torch.Generator | None = None,
        scaling: float | None = None,
        dither_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.base_layer = base
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r_max, self.alpha = r_max, float(alpha)
        # s = α / r_max for every active rank (`scaling` given when this layer holds fewer rows than r_max)
        self.scaling = float(scaling) if scaling is not None else self.alpha / r_max
        self.active_rank = r_max
        self.path = "recompute"  # one of PATHS; set from outside (`fused` in training on CUDA)
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        device = base.qweight.device if is_quant_linear(base) else base.weight.device
        A = torch.empty(r_max, self.in_features, device=device)  # (r_max, in)
        nn.init.kaiming_uniform_(A, a=math.sqrt(5), generator=generator)  # PEFT's LoRA init
        self.lora_A = nn.Parameter(A)
        self.lora_B = nn.Parameter(
            torch.zeros(self.out_features, r_max, device=device)
        )  # (out, r_max): B = 0
        self.sparse = sparse
        self.qa = qa
        # QA on the INT-b base itself (qa_base = gptq): the integer form of eq. 3 on the codes, M = 1[q ≠ z]
        self.int4_qa = qa is not None and is_quant_linear(base)
        W = base_weight_fp32(base) if sparse and not self.int4_qa else None
        # M = 1[W ≠ 0], taken once here (never from the weights again), kept as one bit per weight (a bool
        # buffer would cost a byte per weight: 4.5 GB at 8B); not saved: it is a function of the base.
        self.register_buffer("mask_bits", pack_mask(W != 0) if W is not None else None, persistent=False)
        if qa is not None:
            self.register_buffer("qa_scale", qa.scale.float().to(device), persistent=False)  # (out, G)
            self.register_buffer("qa_zero", qa.zero.float().to(device), persistent=False)  # (out, G)
        # qa_base = gptq-dither: the seed of this layer's in-bin offsets u (regenerated per pass, never stored)
        self.dither_seed = dither_seed if self.int4_qa else None
        if self.int4_qa:
            _, scale_t, zero_t = self._codes_t()
            assert torch.equal(scale_t.T, self.qa_scale) and torch.equal(zero_t.T, self.qa_zero), (
                "QA on an INT4 base must use the base's own scales and zeros"
            )

    # -- state set from outside -------------------------------------------------------------------------------
    def set_active_rank(self, r: int) -> None:
        assert 0 < r <= self.r_max, f"rank {r} outside (0, {self.r_max}]"
        self.active_rank = int(r)

    @property
    def path(self) -> str:
        """How `forward` runs: one of PATHS (set from outside; `fused` is its training switch)."""
        return self._path

    @path.setter
    def path(self, value: str) -> None:
        assert value in PATHS, f"path {value!r} is not one of {PATHS}"
        self._path = value

    @property
    def fused(self) -> bool:
        """Compiled weight builds in training (`sqft.fused.set_fused` switches every layer that has them)."""
        return self.path == "fused"

    @fused.setter
    def fused(self, enabled: bool) -> None:
        self.path = "fused" if enabled else "recompute"

    def _qa(self) -> QAParams | None:
        if self.qa is None:
            return None
        return QAParams(self.qa_scale, self.qa_zero, self.qa.bits, self.qa.group_size, self.qa.sym)

    def _base_weight(self) -> torch.Tensor:
        return base_weight_fp32(self.base_layer)

    def _codes_t(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The INT-b base's q (in, out), s_q and z (G, out), in its stored layout."""
        base = self.base_layer
        if hasattr(base, "codes_t"):
            return base.codes_t()
        q, scale, zero = base.codes()
        return q.T, scale.T, zero.T

    @property
    def mask(self) -> torch.Tensor | None:
        """M (out, in) bool, decoded from the packed bits or the codes (a transient tensor); None when dense."""
        if self.int4_qa and self.sparse:
            q, _, zero = self._codes_t()
            return int4_pruned_t(q, zero).logical_not_().T
        return None if self.mask_bits is None else unpack_mask(self.mask_bits, self.in_features)

    def _dither_t(self) -> torch.Tensor | None:
        """u (in, out) of a dithered INT4 base (`equations.dither_offsets`), or None."""
        if self.dither_seed is None:
            return None
        device = self.qa_scale.device
        return dither_offsets((self.in_features, self.out_features), self.dither_seed, device)

    def _weight_base(self, fused: bool = False) -> WeightBase:
        """How this layer's variant builds its weights on the recompute path (`adapt.recompute`)."""
        if self.int4_qa:
            dither = self._dither_t if self.dither_seed is not None else None
            return Int4Base(self._codes_t, self.qa.bits, self.sparse, dither, fused)
        return FloatBase(self._base_weight, self.mask_bits, self._qa(), fused)

    def _eval_weight(self) -> torch.Tensor:
        """The eval-mode weight at the active rank, fp32 (out, in) (the eager recompute path, never the fused)."""
        A, B = nls_slice(self.lora_A, self.lora_B, self.active_rank)
        return self._weight_base(fused=False).merged(A, B, self.scaling, torch.float32)[0]

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.base_layer, "bias", None)

    # -- PEFT protocol ----------------------------------------------------------------------------------------
    def delta_weight(self) -> torch.Tensor:
        """L = s · (B_r A_r) ⊙ M in fp32 (out, in) at the active rank."""
        A, B = nls_slice(self.lora_A, self.lora_B, self.active_rank)
        return masked_delta(A, B, self.scaling, self.mask)

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """W + L (or its fake-quantized Ŵ for QA) in fp32 (out, in): what eval-mode `forward` multiplies by."""
        return self._eval_weight()

    @torch.no_grad()
    def merged_codes(self) -> torch.Tensor:
        """QA-SparsePEFT: Q = clamp(round((W + L) / s_q) + z, 0, 2^b − 1), int32 (out, in): the codes of Ŵ."""
        assert self.qa is not None, "merged_codes needs a quantization-aware adapter"
        if self.int4_qa:
            q, scale, zero = self._codes_t()
            A, B = nls_slice(self.lora_A, self.lora_B, self.active_rank)
            pruned = int4_pruned_t(q, zero) if self.sparse else None
            Q, _ = int4_requantized(
                q, scale, zero, A, B, self.scaling, self.qa.bits, pruned, self._dither_t()
            )
            return Q.view(self.in_features, self.out_features).T.to(torch.int32).contiguous()
        return quant_codes(self._base_weight() + self.delta_weight(), self._qa())

    @torch.no_grad()
    def merge(self) -> nn.Module:
        """The base layer with the adapter folded in (a new INT4 layer for QA); the adapter is left unchanged."""
        base = self.base_layer
        if self.qa is not None:
            bits, group_size, sym = self.qa.bits, self.qa.group_size, self.qa.sym
            bias = None if self.bias is None else self.bias.detach().clone()
            return QuantLinear.from_codes(
                self.merged_codes(), self.qa_scale, self.qa_zero, bits, group_size, sym, bias=bias
            )
        if not isinstance(base, nn.Linear):
            raise SqftError(
                "a dense adapter cannot be merged into an INT4 base (the sqft pipeline): keep base + adapter, "
                "or train with --quantization-aware to merge into INT4"
            )
        merged = nn.Linear(self.in_features, self.out_features, bias=base.bias is not None)
        merged = merged.to(device=base.weight.device, dtype=base.weight.dtype)
        merged.weight.copy_(self.merged_weight().to(base.weight.dtype))
        if base.bias is not None:
            merged.bias.copy_(base.bias)
        return merged

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        A, B = nls_slice(self.lora_A, self.lora_B, self.active_rank)  # (r, in), (out, r)
        dropout = self.lora_dropout if self.training and isinstance(self.lora_dropout, nn.Dropout) else None
        if self.path == "reference":
            return self._reference_forward(x, A, B, dropout)
        if self.qa is not None:  # y = dropout(x) Ŵᵀ: one GEMM on the layer's (dropped) input
            x_in = x if dropout is None else dropout(x)
            return adapted_linear(x_in, A, B, self.scaling, self._weight_base(self._fused_now()), self.bias)
        if self.sparse:  # y = x Wᵀ + dropout(x) Lᵀ, or one GEMM y = x (W + L)ᵀ without dropout
            x_drop = None if dropout is None else dropout(x)
            base = self._weight_base(self._fused_now())
            return adapted_linear(x, A, B, self.scaling, base, self.bias, x_drop)
        # an INT4 base recomputes its weight in backward (`frozen_linear`)
        return reference.lora(x, self.base_layer, A, B, self.scaling, dropout)

    def _fused_now(self) -> bool:
        return self.path == "fused" and self.training

    def _reference_forward(self, x: torch.Tensor, A, B, dropout) -> torch.Tensor:
        """`adapt.reference`: the variant as the paper writes it, in plain autograd."""
        if self.int4_qa:
            q_t, scale_t, zero_t = self._codes_t()
            u_t = self._dither_t()
            W, M = reference.int4_base(q_t.T, scale_t.T, zero_t.T, None if u_t is None else u_t.T)
            M = M if self.sparse else None
        else:
            W, M = self._base_weight(), self.mask
        if self.qa is not None:
            return reference.qa_sparse_peft(x, W, A, B, self.scaling, M, self._qa(), dropout, self.bias)
        if self.sparse:
            return reference.sparse_peft(x, W, A, B, self.scaling, M, dropout, self.bias)
        bias = self.bias

        def base(t: torch.Tensor) -> torch.Tensor:  # x Wᵀ + b, W kept for backward (plain autograd)
            return F.linear(t, W.to(t.dtype), None if bias is None else bias.to(t.dtype))

        return reference.lora(x, base, A, B, self.scaling, dropout)

    def extra_repr(self) -> str:
        kind = (
            "qa-sparse"
            if self.qa is not None and self.sparse
            else "qa"
            if self.qa is not None
            else ("sparse" if self.sparse else "lora")
        )
        dither = "" if self.dither_seed is None else ", dithered"
        return (
            f"r_max={self.r_max}, active_rank={self.active_rank}, s={self.scaling:g}, variant={kind}{dither}"
        )
