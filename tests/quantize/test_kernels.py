"""Packed-INT4 kernels run sqft's own codes: outputs equal the dequantized reference within the rounding of the
kernel's dtype; pruned weights (q = z) stay zero; unsupported layers fall back; a tiny Llama agrees."""

import pytest
import torch
import torch.nn.functional as F

from sqft.quantize.kernels import (
    PackedInt4Linear,
    kernel_qparams,
    pack_int4_layers,
    unsupported_reason,
)
from sqft.quantize.qlinear import QuantLinear
from sqft.quantize.rtn import rtn_quantize
from tests.adapt.helpers import sparse_int4_model
from tests.tolerance import assert_close, unit_roundoff


def _layer(out=48, inp=256, group_size=64, sym=False, bias=True, sparsity=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, inp, generator=g)
    if sparsity:
        W[torch.rand(out, inp, generator=g) < sparsity] = 0
    q, scale, zero = rtn_quantize(W, 4, group_size, sym)
    b = torch.randn(out, generator=g) if bias else None
    return QuantLinear.from_codes(q, scale, zero, 4, group_size, sym, b)


def _bound(layer: QuantLinear, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """|kernel − reference| per output: x, scale and zero each round once to `dtype` (3u on the magnitude
    Σ|x|·(|q − 8|·s + |s·(8 − z)|) of the kernel's two terms), the output once more (u·|y|), and the fp32
    accumulation is negligible beside them."""
    q, s, z = layer.codes()  # (out, in), (out, G), (out, G)
    gs = layer.group_size
    s, z = s.repeat_interleave(gs, 1), z.repeat_interleave(gs, 1)
    terms = (q - 8).abs() * s + (s * (8 - z)).abs()  # (out, in)
    y = F.linear(x, layer.dequantize(), layer.bias)
    u = unit_roundoff(dtype)
    return 4 * u * (x.abs() @ terms.T + y.abs()) + 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "shape,group_size", [((48, 256), 64), ((96, 128), 32), ((32, 512), 128), ((16, 256), 256)]
)
@pytest.mark.parametrize("sym", [False, True])
def test_kernel_output_equals_the_dequantized_reference_within_the_dtype_bound(dtype, shape, group_size, sym):
    layer = _layer(*shape, group_size=group_size, sym=sym)
    x = torch.randn(5, shape[1])
    packed = PackedInt4Linear(layer, "cpu", dtype)
    got = packed(x)
    want = layer(x)
    assert got.dtype == x.dtype and got.shape == want.shape
    err = (got - want).abs()
    assert (err <= _bound(layer, x, dtype)).all(), float((err / _bound(layer, x, dtype)).max())


def test_in_fp32_the_kernel_computes_sqfts_weight_bit_for_bit():
    """x = I reads the kernel's Ŵᵀ back: in fp32 scale = s and zero = s·(8 − z) are exact."""
    layer = _layer(bias=False, sparsity=0.5)
    W_kernel = PackedInt4Linear(layer, "cpu", torch.float32)(torch.eye(256)).T  # (out, in)
    assert torch.equal(W_kernel, layer.dequantize())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_pruned_weights_contribute_nothing_measurable(dtype):
    """A pruned weight has q = z. Its value in the kernel is (z − 8)·scale + zero: exactly 0 in fp32, and at
    most the one rounding of the zero, u·|s·(8 − z)|, in fp16/bf16 (which the kernel's output rounding of
    any real row dwarfs). Read back through x = I on a layer that is 50% pruned."""
    layer = _layer(bias=False, sparsity=0.5)
    q, s, z = layer.codes()
    pruned = layer.dequantize() == 0
    assert pruned.float().mean() > 0.4
    W_kernel = PackedInt4Linear(layer, "cpu", dtype)(torch.eye(256, dtype=dtype)).T.float()
    zero_term = (s * (8 - z)).abs().repeat_interleave(64, 1)  # (out, in)
    got = W_kernel[pruned].abs()
    assert (got <= 2 * unit_roundoff(dtype) * zero_term[pruned]).all()
    if dtype == torch.float32:
        assert (got == 0).all()


def test_kernel_qparams_map_the_zero_point_exactly_in_fp32():
    s = torch.tensor([[0.0123]]).half().float()
    z = torch.tensor([[3.0]])
    sz = kernel_qparams(s, z, torch.float32)  # (1, 1, 2)
    for q in range(16):
        assert (q - 8) * sz[0, 0, 0] + sz[0, 0, 1] == s[0, 0] * (q - z[0, 0])


def test_unsupported_layers_are_named_with_a_reason():
    assert unsupported_reason(_layer(), "cpu") is None
    assert "group size 16" in unsupported_reason(_layer(group_size=16), "cpu")
    g = torch.Generator().manual_seed(0)
    q, scale, zero = rtn_quantize(torch.randn(8, 64, generator=g), 8, 32, False)
    assert "8-bit" in unsupported_reason(QuantLinear.from_codes(q, scale, zero, 8, 32, False), "cpu")
    assert "CUDA needs" in unsupported_reason(_layer(out=48, inp=96, group_size=32), "cuda")


def test_a_model_with_supported_and_unsupported_layers_runs(caplog):
    model = torch.nn.Sequential(_layer(48, 256, 64), torch.nn.ReLU(), _layer(32, 48, 16, bias=False))
    x = torch.randn(3, 256)
    want = model(x)
    with caplog.at_level("INFO"):
        report = pack_int4_layers(model, "cpu", torch.float32)
    assert report.packed == ["0"] and list(report.fallback) == ["2"]
    assert isinstance(model[0], PackedInt4Linear) and isinstance(model[2], QuantLinear)
    assert "1 INT4 layers run on the dequantizing path (group size 16" in caplog.text
    assert_close(model(x), want, torch.float32, 256)  # the kernel sums the 256 inputs in its own order


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_tiny_llama_logits_agree_with_the_reference(dtype):
    """The whole model: every INT4 linear packed, logits within the bf16 bound of the reference's own bf16
    run (activations in bf16 everywhere), or within fp32 summation-order noise in fp32."""
    model = sparse_int4_model().to(dtype).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(ids).logits.float()
        report = pack_int4_layers(model, "cpu", dtype)
        got = model(ids).logits.float()
    assert report.packed and not report.fallback
    assert_close(got, want, dtype, 64 if dtype == torch.float32 else 8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_kernel_equals_the_reference_within_bf16():
    layer = _layer(64, 256, 128).cuda()
    x = torch.randn(4, 256, device="cuda")
    got = PackedInt4Linear(layer, "cuda", torch.bfloat16)(x)
    want = layer(x)
    assert (got - want).abs().cpu().le(_bound(layer.cpu(), x.cpu(), torch.bfloat16)).all()
