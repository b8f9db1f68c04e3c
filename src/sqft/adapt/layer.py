"""`AdapterLinear`: one adapter layer whose variants compose (elastic rank × sparse mask × quantization-aware).

It follows PEFT's small protocol — `delta_weight()`, `merge()`, `forward()` — on a target linear whose base is
a dense/sparse `nn.Linear` or an INT4 `QuantLinear`:

    y = base(x) + s · dropout(x) A_rᵀ B_rᵀ                  LoRA / NLS (A_r = A[:r], B_r = B[:, :r], s = α / r_max)
    y = x W_mᵀ,  W_m = W + s (B_r A_r) ⊙ M                  SparsePEFT (dropout feeds only the L part)
    y = x Ŵᵀ,    Ŵ = fake_quant(W_m; s_q, z) with STE       QA-SparsePEFT
                 (on an INT4 base optionally dithered: W = s_q (q − z + u), u fixed per weight, see `dither_seed`)

The active rank `r` is state set from outside (`set_active_rank`, once per optimizer step by the NLS sampler);
`forward` never changes it, so a gradient-checkpointing recomputation sees the rank of its forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sqft.adapt.variants import (
    AdapterWeights,
    QAParams,
    WeightsFn,
    adapted_linear,
    dense_base_weights,
    dither_offsets,
    int4_base_weights,
    int4_pruned_t,
    int4_requantized,
    masked_delta,
    pack_mask,
    quant_codes,
    unpack_mask,
)

__all__ = ["AdapterLinear", "base_weight_fp32", "is_quant_linear"]


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
        # training builds its weights with compiled kernels (`sqft.fused`); set from outside
        self.fused = False
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
        """u (in, out) of a dithered INT4 base (`variants.dither_offsets`), or None."""
        if self.dither_seed is None:
            return None
        device = self.qa_scale.device
        return dither_offsets((self.in_features, self.out_features), self.dither_seed, device)

    def _weights_fn(self, fused: bool = False) -> WeightsFn:
        """`weights(...)` of this layer's variant (see `variants.adapted_linear`)."""
        if self.int4_qa:
            dither = self._dither_t if self.dither_seed is not None else None
            return int4_base_weights(self._codes_t, self.qa.bits, self.sparse, fused, dither)
        return dense_base_weights(self._base_weight, self.mask_bits, self._qa(), fused)

    def _eval_weights(self) -> AdapterWeights:
        """The eval-mode weights at the active rank, fp32 (the eager reference path, never the fused one)."""
        r = self.active_rank
        weights = self._weights_fn(fused=False)
        return weights(self.lora_A[:r], self.lora_B[:, :r], self.scaling, torch.float32, False, False)

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.base_layer, "bias", None)

    # -- PEFT protocol ----------------------------------------------------------------------------------------
    def delta_weight(self) -> torch.Tensor:
        """L = s · (B_r A_r) ⊙ M in fp32 (out, in) at the active rank."""
        r = self.active_rank
        return masked_delta(self.lora_A[:r], self.lora_B[:, :r], self.scaling, self.mask)

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        """W + L (or its fake-quantized Ŵ for QA) in fp32 (out, in): what eval-mode `forward` multiplies by."""
        return self._eval_weights().eff

    @torch.no_grad()
    def merged_codes(self) -> torch.Tensor:
        """QA-SparsePEFT: Q = clamp(round((W + L) / s_q) + z, 0, 2^b − 1), int32 (out, in): the codes of Ŵ."""
        assert self.qa is not None, "merged_codes needs a quantization-aware adapter"
        r = self.active_rank
        if self.int4_qa:
            q, scale, zero = self._codes_t()
            A, B = self.lora_A[:r], self.lora_B[:, :r]
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
            from sqft.quantize.qlinear import QuantLinear

            bits, group_size, sym = self.qa.bits, self.qa.group_size, self.qa.sym
            bias = None if self.bias is None else self.bias.detach().clone()
            return QuantLinear.from_codes(
                self.merged_codes(), self.qa_scale, self.qa_zero, bits, group_size, sym, bias=bias
            )
        assert isinstance(base, nn.Linear), "a dense adapter cannot be merged into an INT4 base"
        merged = nn.Linear(self.in_features, self.out_features, bias=base.bias is not None)
        merged = merged.to(device=base.weight.device, dtype=base.weight.dtype)
        merged.weight.copy_(self.merged_weight().to(base.weight.dtype))
        if base.bias is not None:
            merged.bias.copy_(base.bias)
        return merged

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.active_rank
        A, B = self.lora_A[:r], self.lora_B[:, :r]  # (r, in), (out, r)
        dropout_on = self.training and isinstance(self.lora_dropout, nn.Dropout)
        x_drop = self.lora_dropout(x) if dropout_on else None
        if self.sparse or self.qa is not None:
            weights = self._weights_fn(fused=self.fused and self.training)
            return adapted_linear(x, x_drop, A, B, self.scaling, weights, self.bias)
        y = self.base_layer(x)  # an INT4 base recomputes its weight in backward (`frozen_linear`)
        xa = x if x_drop is None else x_drop
        dt = y.dtype
        return y + F.linear(F.linear(xa.to(dt), A.to(dt)), B.to(dt)) * self.scaling

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
