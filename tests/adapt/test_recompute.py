"""Adapter weight builds of the recompute path (`sqft.adapt.recompute`): what they allocate.

A weight build runs twice per target layer and step (forward, and again in backward). Each weight-sized
temporary costs a pass over memory (and on a CPU a fresh zeroed allocation), so the builds work in place on the
tensors they make; these counts guard that.
"""

import torch
from torch.overrides import TorchFunctionMode

from sqft.adapt.equations import QAParams, pack_mask
from sqft.adapt.recompute import FloatBase, Int4Base
from sqft.quantize.qlinear import QuantLinear
from sqft.quantize.rtn import rtn_quantize

OUT, IN, R = 48, 256, 4


class _Allocations(TorchFunctionMode):
    """Records the torch functions that return a tensor in new storage of ≥ `numel` elements of ≥ 2 bytes each."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.ops = numel, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in _tensors(args)}
        for t in _tensors(out):
            new = t.untyped_storage().data_ptr() not in inputs
            if new and t.numel() >= self.numel and t.element_size() >= 2:
                self.ops.append(getattr(func, "__name__", str(func)))
        return out


def _tensors(x) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    return [t for a in x for t in _tensors(a)] if isinstance(x, (list, tuple)) else []


def _allocations(fn) -> list[str]:
    with _Allocations(OUT * IN) as mode:
        fn()
    return mode.ops


def _adapter(g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(R, IN, generator=g), torch.randn(OUT, R, generator=g)  # A (r, in), B (out, r)


def test_sparsepeft_weight_build_allocates_only_the_low_rank_product():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(OUT, IN, generator=g)
    W[W.abs() < 0.7] = 0
    A, B = _adapter(g)
    base = FloatBase(lambda: W, pack_mask(W != 0), None)
    for build in (base.merged, base.split):
        ops = _allocations(lambda build=build: build(A, B, 0.5, torch.float32))
        # B A only: M ⊙, s · and + W in place (split: W itself is the base branch)
        assert ops == ["matmul"], (build, ops)


def _int4(g: torch.Generator) -> QuantLinear:
    W = torch.randn(OUT, IN, generator=g)
    W[W.abs() < 0.7] = 0
    q, scale, zero = rtn_quantize(W, 4, 64)
    return QuantLinear.from_codes(q, scale.half().float(), zero, 4, 64, False)


def test_qa_on_a_dense_copy_allocates_the_product_and_the_quotient():
    """qa_base = fp16: Ŵ = s_q (clamp(round((W + L) / s_q) + z) − z) with + W, rounding, clamp, − z, · s_q in
    place (dropout is on the layer's input: the build is the same with and without it)."""
    g = torch.Generator().manual_seed(0)
    layer = _int4(g)
    _, scale, zero = layer.codes()
    W = layer.dequantize()
    A, B = _adapter(g)
    base = FloatBase(lambda: W, pack_mask(W != 0), QAParams(scale, zero, 4, 64))
    ops = _allocations(lambda: base.merged(A, B, 0.5, torch.float32))
    assert sorted(ops) == ["div", "matmul"], ops


def test_int4_qa_weight_build_allocates_codes_product_and_quotient():
    g = torch.Generator().manual_seed(0)
    layer = _int4(g)
    A, B = _adapter(g)
    base = Int4Base(layer.codes_t, 4, masked=True)
    ops = _allocations(lambda: base.merged(A, B, 0.5, torch.float32))
    # the codes unpacked from their words, (B A)ᵀ, and L / s_q; rounding, + q, clamp, − z and · s_q in place
    assert sorted(ops) == ["__rshift__", "div", "matmul"], ops
