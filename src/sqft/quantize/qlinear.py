"""`QuantLinear`: a linear layer holding packed INT-b codes in the GPTQ layout, dequantized on the fly.

Buffers (the checkpoint's tensors, same names and shapes):
    qweight int32 (ceil(in·b/32), out)   codes packed along `in`
    qzeros  int32 (G, ceil(out·b/32))    zero points packed along `out` (in memory: z itself, as GPTQ v2;
                                         the v1 file format's z − 1 is applied by sqft.quantize.format)
    scales  fp16  (G, out)
    g_idx   int32 (in,)                  group of each input column: arange(in) // group_size (act-order
                                         checkpoints, whose g_idx is a permutation, are refused on load)
    bias    (out,) optional
ŵ = s · (q − z). Dtype casts of the module (`.half()`, `.to(torch.bfloat16)`) never touch the fp16 scales.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from sqft.errors import SqftError
from sqft.fused import Fusable
from sqft.quantize.packing import (
    SUPPORTED_BITS,
    pack_rows,
    pack_zeros,
    packed_rows,
    unpack_rows,
    unpack_zeros,
)
from sqft.quantize.primitives import dequantize, qmax

__all__ = ["QuantLinear", "dequantized_weights", "frozen_linear", "compute_dtype"]


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matmul on x runs in: the autocast dtype inside autocast, x's own otherwise."""
    dev = x.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype


class _FrozenLinear(torch.autograd.Function):
    """y = x Wᵀ for a weight made on the fly (INT4 dequantized); backward recomputes W instead of storing it."""

    @staticmethod
    def forward(ctx, x, weight_fn):  # type: ignore[override]
        ctx.weight_fn = weight_fn
        return F.linear(x, weight_fn(x.dtype))

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g @ ctx.weight_fn(g.dtype), None


def frozen_linear(x: torch.Tensor, weight_fn: Callable[[torch.dtype], torch.Tensor]) -> torch.Tensor:
    """y = x Wᵀ with W = weight_fn(dtype) (out, in) made in forward and again in backward, never saved: plain
    `F.linear` would keep a dequantized copy of every INT4 layer alive until the backward reaches it."""
    dt = compute_dtype(x)
    with torch.autocast(x.device.type, enabled=False):
        return _FrozenLinear.apply(x.to(dt), weight_fn)


def _dequantize_t(
    qweight: torch.Tensor, scales: torch.Tensor, zero: torch.Tensor, bits: int, n_in: int, dtype: torch.dtype
) -> torch.Tensor:
    """Ŵᵀ = s · (q − z) (in, out) in `dtype` from the packed codes, scales (G, out) and zero points (G, out)."""
    G, out = scales.shape
    q = unpack_rows(qweight, bits, n_in).view(G, n_in // G, out)  # (G, gs, out)
    W_t = dequantize(q, scales.float().unsqueeze(1), zero.unsqueeze(1))  # scale, zero (G, 1, out)
    return W_t.view(n_in, out).to(dtype)


dequantize_t = Fusable(_dequantize_t)


class QuantLinear(nn.Module):
    """y = x Ŵᵀ + b with Ŵ dequantized from packed codes at every call."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bits: int,
        group_size: int,
        sym: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if bits not in SUPPORTED_BITS:
            raise SqftError(f"bits={bits} is not supported: use one of {', '.join(map(str, SUPPORTED_BITS))}")
        g = in_features if group_size == -1 else group_size
        if g <= 0 or in_features % g:
            raise SqftError(f"group size {group_size} does not divide in_features={in_features}")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.sym = bits, g, sym
        G = in_features // g
        self.register_buffer(
            "qweight", torch.zeros(packed_rows(in_features, bits), out_features, dtype=torch.int32)
        )
        self.register_buffer("qzeros", torch.zeros(G, packed_rows(out_features, bits), dtype=torch.int32))
        self.register_buffer("scales", torch.ones(G, out_features, dtype=torch.float16))
        self.register_buffer("g_idx", torch.arange(in_features, dtype=torch.int32) // g)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.fused = False  # training remakes Ŵ with a compiled kernel (`sqft.fused`); set from outside

    @classmethod
    def from_codes(
        cls,
        q: torch.Tensor,
        scale: torch.Tensor,
        zero: torch.Tensor,
        bits: int,
        group_size: int,
        sym: bool,
        bias: torch.Tensor | None = None,
    ) -> QuantLinear:
        """Pack codes q (out, in), scale (out, G) and integer zero (out, G) into a new layer.

        `scale` must be fp16-representable (see `primitives.storable_scale`), otherwise the stored layer would
        not reproduce the caller's ŵ.
        """
        out_f, in_f = q.shape
        layer = cls(in_f, out_f, bits, group_size, sym, bias=bias is not None)
        G = in_f // layer.group_size
        if scale.shape != (out_f, G) or zero.shape != (out_f, G):
            raise SqftError(
                f"scale/zero must be ({out_f}, {G}), got {tuple(scale.shape)} and {tuple(zero.shape)}"
            )
        if q.min() < 0 or q.max() > qmax(bits) or zero.min() < 0 or zero.max() > qmax(bits):
            raise SqftError(
                f"codes and zero points must lie in [0, {qmax(bits)}] for {bits}-bit quantization"
            )
        if not torch.equal(zero, zero.round()):
            raise SqftError("zero points must be integers")
        scale16 = scale.to(torch.float16)
        if not torch.equal(scale16.float(), scale.float()):
            raise SqftError(
                "scales are not fp16-representable: round them with primitives.storable_scale first"
            )
        device = q.device
        layer.to(device)
        layer.qweight.copy_(pack_rows(q.T, bits))  # (in·b/32, out)
        layer.qzeros.copy_(pack_zeros(zero.to(device), bits))  # (G, out·b/32)
        layer.scales.copy_(scale16.T)  # (G, out)
        if bias is not None:
            layer.bias = bias.detach().clone()
        return layer

    def codes_t(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q int32 (in, out), scale fp32 (G, out), zero fp32 (G, out): the stored layout, no transposes."""
        q = unpack_rows(self.qweight, self.bits, self.in_features)  # (in, out)
        zero = unpack_zeros(self.qzeros, self.bits, self.out_features).T.float()  # (G, out), G·out is small
        return q, self.scales.float(), zero

    def codes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unpacked q int32 (out, in), scale fp32 (out, G), zero fp32 (out, G), exactly as stored."""
        q, scale, zero = self.codes_t()
        return q.T.contiguous(), scale.T.contiguous(), zero.T.contiguous()

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Ŵ = s · (q − z) as (out, in) in `dtype` (computed in fp32; cached inside `dequantized_weights`).

        Computed in the stored (in, out) layout and returned as its transposed view: `F.linear` takes it as is.
        """
        cached = getattr(self, "_dequantized", None)
        if cached is not None:
            return cached.to(dtype)
        return self._dequantize_t(dtype, fused=False).T

    def _dequantize_t(self, dtype: torch.dtype, fused: bool) -> torch.Tensor:
        zero = unpack_zeros(self.qzeros, self.bits, self.out_features).T.float()  # (G, out)
        chain = dequantize_t.fused if fused else dequantize_t
        return chain(self.qweight, self.scales, zero, self.bits, self.in_features, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:  # training through a frozen INT4 layer
            fused = self.fused and self.training
            y = frozen_linear(x, lambda dtype: self._dequantize_t(dtype, fused).T)
            return y if self.bias is None else y + self.bias.to(y.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantize(x.dtype), bias)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[override]
        scales = self.scales
        super()._apply(fn, recurse)
        self.scales = scales.to(self.qweight.device)  # moves follow the module, dtype casts do not
        return self

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
            f"group_size={self.group_size}, sym={self.sym}, bias={self.bias is not None}"
        )


@contextlib.contextmanager
def dequantized_weights(model: nn.Module, dtype: torch.dtype | None = None) -> Iterator[None]:
    """Inside the block, every QuantLinear multiplies by a weight dequantized once instead of per call.

    For evaluation and generation (many forwards, no training): trades the INT4 memory saving for speed
    while the block runs; the cache is dropped on exit. `dtype` defaults to the model's floating dtype.
    """
    layers = [m for m in model.modules() if isinstance(m, QuantLinear)]
    if dtype is None:
        floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
        dtype = floats[0] if floats else torch.float32
    try:
        for m in layers:
            m._dequantized = None
            m._dequantized = m.dequantize(dtype)
        yield
    finally:
        for m in layers:
            m._dequantized = None
