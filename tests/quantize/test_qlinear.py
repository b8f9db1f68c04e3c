import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from sqft.errors import SqftError
from sqft.quantize.qlinear import QuantLinear, dequantize_t
from sqft.quantize.rtn import rtn_quantize


def _layer(bits=4, group_size=32, sym=False, bias=True, out=24, inp=64):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(out, inp, generator=g)
    q, scale, zero = rtn_quantize(W, bits, group_size, sym)
    b = torch.randn(out, generator=g) if bias else None
    return QuantLinear.from_codes(q, scale, zero, bits, group_size, sym, b), (q, scale, zero, b)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [32, -1])
def test_codes_round_trip_exactly(bits, group_size):
    layer, (q, scale, zero, _) = _layer(bits, group_size, out=32)
    got_q, got_s, got_z = layer.codes()
    assert torch.equal(got_q, q) and torch.equal(got_s, scale) and torch.equal(got_z, zero)
    assert layer.group_size == (64 if group_size == -1 else 32) and layer.scales.dtype == torch.float16


def test_forward_is_linear_with_dequantized_weight():
    layer, (q, scale, zero, b) = _layer()
    x = torch.randn(3, 5, 64)
    W_hat = scale.repeat_interleave(32, 1) * (q.float() - zero.repeat_interleave(32, 1))  # (out, in)
    assert torch.equal(layer.dequantize(), W_hat)
    assert torch.equal(layer(x), F.linear(x, W_hat, b))


def test_training_through_it_saves_no_weight_and_gives_the_exact_input_gradient():
    layer, (q, scale, zero, b) = _layer()
    x = torch.randn(3, 5, 64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        y = layer(x)
    assert (24, 64) not in saved and (64, 24) not in saved  # Ŵ is remade in backward, not kept
    g = torch.randn(y.shape)
    y.backward(g)
    W = layer.dequantize()
    assert torch.equal(y, F.linear(x, W, b)) and torch.equal(x.grad, g @ W)


def test_dtype_casts_keep_fp16_scales_and_state_dict_survives_safetensors(tmp_path):
    layer, _ = _layer()
    before = layer.codes()
    layer = layer.to(torch.bfloat16)
    assert layer.scales.dtype == torch.float16 and layer.qweight.dtype == torch.int32
    assert layer(torch.randn(2, 64, dtype=torch.bfloat16)).dtype == torch.bfloat16
    save_file(layer.state_dict(), tmp_path / "l.safetensors")
    fresh = QuantLinear(64, 24, 4, 32, False, bias=True)
    fresh.load_state_dict(load_file(tmp_path / "l.safetensors"))
    assert all(torch.equal(a, b) for a, b in zip(fresh.codes(), before, strict=True))


def test_bad_codes_are_refused():
    layer, (q, scale, zero, _) = _layer(bias=False)
    with pytest.raises(SqftError, match="fp16-representable"):
        QuantLinear.from_codes(q, scale * (1 + 1e-6), zero, 4, 32, False)
    with pytest.raises(SqftError, match=r"\[0, 15\]"):
        QuantLinear.from_codes(q + 16, scale, zero, 4, 32, False)
    with pytest.raises(SqftError, match="bits=5"):
        QuantLinear(64, 24, 5, 32)
    with pytest.raises(SqftError, match="does not divide in_features=64"):
        QuantLinear(64, 24, 4, 48)


def test_dequantized_weights_cache_is_exact_and_temporary():
    from sqft.quantize.primitives import storable_scale
    from sqft.quantize.qlinear import dequantized_weights

    torch.manual_seed(0)
    q = torch.randint(0, 16, (24, 64), dtype=torch.int32)
    scale = storable_scale(torch.rand(24, 2) + 0.01)
    zero = torch.randint(1, 15, (24, 2)).float()
    layer = QuantLinear.from_codes(q, scale, zero, 4, 32, False)
    model = torch.nn.Sequential(layer)
    x = torch.randn(3, 64)
    want = model(x)
    with dequantized_weights(model, torch.float32):
        assert layer._dequantized is not None
        assert torch.equal(model(x), want)
    assert layer._dequantized is None and torch.equal(model(x), want)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("g++") is None, reason="needs a C++ compiler")
def test_fused_dequantize_is_exact_and_one_kernel_serves_every_shape():
    for k in range(1, 11):  # 10 layer shapes: more than dynamo's recompile limit of 8
        layer, _ = _layer(out=8 * k, inp=32 * k, bias=False)
        assert torch.equal(
            layer._dequantize_t(torch.bfloat16, fused=True), layer.dequantize(torch.bfloat16).T
        )
    assert not dequantize_t.failed
