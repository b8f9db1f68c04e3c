"""The GGUF tensor math: Q4_1 / Q8_0 blocks against gguf's own (de)quantizers, and llama.cpp's q/k row order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sqft.errors import SqftError
from sqft.export.blocks import (
    fp16_ulp,
    permute_qk,
    q4_1_blocks,
    q4_1_params,
    q4_1_unpack,
    q8_0_blocks,
    unpermute_qk,
)

gguf = pytest.importorskip("gguf")


def _codes(out=16, n_in=128, group=64, seed=0, sparsity=0.5, sym=False):
    """sqft-style INT4 codes with fp16 scales, integer zeros, and pruned positions holding q = z."""
    g = torch.Generator().manual_seed(seed)
    G = n_in // group
    scale = (torch.rand(out, G, generator=g) * 0.05 + 1e-3).to(torch.float16)
    zero = torch.full((out, G), 8) if sym else torch.randint(0, 16, (out, G), generator=g)
    q = torch.randint(0, 16, (out, n_in), generator=g)
    pruned = torch.rand(out, n_in, generator=g) < sparsity
    q = torch.where(pruned, zero.repeat_interleave(group, 1), q)
    return q.to(torch.uint8), scale, zero.to(torch.uint8), pruned


def _sqft_w(q, scale, zero):
    group = q.shape[1] // scale.shape[1]
    return scale.float().repeat_interleave(group, 1) * (q.float() - zero.float().repeat_interleave(group, 1))


def test_q4_1_round_trips_codes_exactly_including_pruned():
    q, scale, zero, pruned = _codes()
    d, m = q4_1_params(scale, zero)
    blocks = q4_1_blocks(q, d, m)
    assert blocks.shape == (16, 128 // 32 * 20) and blocks.dtype == torch.uint8
    q2, d2, m2 = q4_1_unpack(blocks)
    assert torch.equal(q2, q)  # every code, pruned ones (= z) included
    assert torch.equal(q2[pruned], zero.repeat_interleave(64, 1)[pruned])
    # a group of 64 is two blocks of 32 that share its d and m
    assert torch.equal(d2, d.repeat_interleave(2, 1)) and torch.equal(m2, m.repeat_interleave(2, 1))


def test_gguf_dequantizes_our_blocks_to_sqft_weights_within_half_ulp_of_m():
    q, scale, zero, pruned = _codes()
    d, m = q4_1_params(scale, zero)
    blocks = q4_1_blocks(q, d, m).numpy()
    w_gguf = torch.from_numpy(gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.Q4_1))
    w_sqft = _sqft_w(q, scale, zero)
    assert w_gguf.shape == w_sqft.shape
    # d = s exactly, so the only difference is m rounding once to fp16: |Δw| ≤ ulp_fp16(m)/2, per weight
    bound = (fp16_ulp(-scale.float() * zero.float()) / 2).repeat_interleave(64, 1)
    delta = (w_gguf - w_sqft).abs()
    assert bool((delta <= bound).all())
    assert float(delta.max()) > 0  # asymmetric zeros do round (else the test proves nothing)
    # a pruned weight (q = z) is d·z + fp16(−d·z): not exactly 0, but within the same bound
    assert bool((w_gguf[pruned].abs() <= bound[pruned]).all())


def test_symmetric_int4_is_exact_in_q4_1():
    q, scale, zero, pruned = _codes(sym=True)
    d, m = q4_1_params(scale, zero)
    w_gguf = gguf.quants.dequantize(q4_1_blocks(q, d, m).numpy(), gguf.GGMLQuantizationType.Q4_1)
    assert torch.equal(torch.from_numpy(w_gguf), _sqft_w(q, scale, zero))  # m = −8·s is exact in fp16
    assert bool((torch.from_numpy(w_gguf)[pruned] == 0).all())  # pruned weights exactly zero


def test_q4_1_refuses_groups_that_are_not_whole_blocks():
    q, scale, zero, _ = _codes(n_in=96, group=48)
    d, m = q4_1_params(scale, zero)
    with pytest.raises(SqftError, match="multiple of 32"):
        q4_1_blocks(q, d, m)


def test_q4_1_params_refuse_scales_that_are_not_fp16():
    with pytest.raises(SqftError, match="fp16"):
        q4_1_params(torch.tensor([[0.1]], dtype=torch.float32), torch.tensor([[3]]))


def test_q8_0_matches_ggml_reference_quantizer_bit_for_bit():
    w = torch.randn(8, 96, generator=torch.Generator().manual_seed(1)) * 0.1
    w[0, :32] = 0  # an all-zero block: d = 0
    ours = q8_0_blocks(w).numpy()
    ref = gguf.quants.quantize(w.numpy(), gguf.GGMLQuantizationType.Q8_0)
    assert np.array_equal(ours, ref)


def test_permute_qk_inverse_and_matches_transformers_reader():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    n_head, head_dim, n_in = 4, 8, 12
    w = torch.arange(n_head * head_dim * n_in, dtype=torch.float32).view(n_head * head_dim, n_in)
    p = permute_qk(w, n_head)
    assert not torch.equal(p, w)
    assert torch.equal(unpermute_qk(p, n_head), w)
    # row h·head_dim + j·2 + i of the GGUF holds HF row h·head_dim + i·head_dim/2 + j (interleaved halves)
    assert torch.equal(p[1], w[head_dim // 2]) and torch.equal(p[2], w[1])
    # transformers' GGUF loader (a reader sqft did not write) undoes it
    back = LlamaTensorProcessor()._reverse_permute_weights(p.numpy(), n_head, n_head)
    assert np.array_equal(back, w.numpy())
    # codes, scales and biases follow the same rows
    assert torch.equal(unpermute_qk(permute_qk(torch.arange(32), n_head), n_head), torch.arange(32))


def test_fp16_ulp_is_the_spacing_of_fp16_numbers():
    x = torch.tensor([1.0, 0.3, -2.5, 1e-3, 6e-5, 1e-7]).to(torch.float16)
    nxt = torch.nextafter(x.abs(), torch.tensor(torch.inf, dtype=torch.float16))
    assert torch.equal(fp16_ulp(x), (nxt.float() - x.abs().float()))
