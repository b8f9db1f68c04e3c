"""Adapter weight builds (`sqft.adapt.variants`): what they allocate.

A weight build runs twice per target layer and step (forward, and again in backward). Each weight-sized
temporary costs a pass over memory (and on a CPU a fresh zeroed allocation), so the builds work in place on the
tensors they make; these counts guard that.
"""

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sqft.adapt.variants import QAParams, dense_base_weights, int4_base_weights, pack_mask
from sqft.quantize.qlinear import QuantLinear
from sqft.quantize.rtn import rtn_quantize

OUT, IN, R = 48, 256, 4


class _Allocations(TorchDispatchMode):
    """Records the ops that return a tensor in new storage of ≥ `numel` elements of ≥ 2 bytes each."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel, self.ops = numel, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in _tensors(args)}
        for t in _tensors(out):
            new = t.untyped_storage().data_ptr() not in inputs
            if new and t.numel() >= self.numel and t.element_size() >= 2:
                self.ops.append(func.overloadpacket.__name__)
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
    weights = dense_base_weights(lambda: W, pack_mask(W != 0), None)
    for dropout, backward in [(False, False), (False, True), (True, False), (True, True)]:
        ops = _allocations(lambda d=dropout, b=backward: weights(A, B, 0.5, torch.float32, d, b))
        # B A only: M ⊙, s · and + W in place (with dropout, W itself is the fixed part)
        assert ops == ["mm"], (dropout, backward, ops)


def _int4(g: torch.Generator) -> QuantLinear:
    W = torch.randn(OUT, IN, generator=g)
    W[W.abs() < 0.7] = 0
    q, scale, zero = rtn_quantize(W, 4, 64)
    return QuantLinear.from_codes(q, scale.half().float(), zero, 4, 64, False)


def test_qa_on_a_dense_copy_allocates_the_product_and_the_quotient():
    """qa_base = fp16: Ŵ = s_q (clamp(round((W + L) / s_q) + z) − z) with + W, rounding, clamp, − z, · s_q in
    place; with dropout W + L needs its own buffer (L is kept)."""
    g = torch.Generator().manual_seed(0)
    layer = _int4(g)
    _, scale, zero = layer.codes()
    W = layer.dequantize()
    A, B = _adapter(g)
    weights = dense_base_weights(lambda: W, pack_mask(W != 0), QAParams(scale, zero, 4, 64))
    assert sorted(_allocations(lambda: weights(A, B, 0.5, torch.float32, False, True))) == ["div", "mm"]
    assert sorted(_allocations(lambda: weights(A, B, 0.5, torch.float32, True, True))) == ["add", "div", "mm"]


def test_int4_qa_weight_build_allocates_codes_product_and_quotient():
    g = torch.Generator().manual_seed(0)
    layer = _int4(g)
    A, B = _adapter(g)
    weights = int4_base_weights(layer.codes_t, 4, True, False)
    ops = _allocations(lambda: weights(A, B, 0.5, torch.float32, False, True))
    # the codes unpacked from their words, (B A)ᵀ, and L / s_q; rounding, + q, clamp, − z and · s_q in place
    assert sorted(ops) == ["__rshift__", "div", "mm"], ops
    ops = _allocations(lambda: weights(A, B, 0.5, torch.float32, True, False))
    assert sorted(ops) == ["__rshift__", "div", "mm"], ops  # with dropout, Ŵ − L is formed in Q's buffer too
