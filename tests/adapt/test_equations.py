"""`adapt.equations.snapped_to_bins`: the fp16 weight moved into the bin of its GPTQ code (qa_base gptq-residual)."""

import torch

from sqft.adapt.equations import QAParams, in_bin_residual, quant_codes, snapped_to_bins
from sqft.quantize.rtn import rtn_quantize
from tests.tolerance import unit_roundoff


def _weights_and_codes(seed: int = 0, group_size: int = 16):
    """A half-pruned W (32, 64), its RTN codes, and 'GPTQ' codes: a third of the kept ones one step off."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(32, 64, generator=g)
    W[torch.rand(W.shape, generator=g) < 0.5] = 0.0
    q_rtn, scale, zero = rtn_quantize(W, 4, group_size, min_zero=1)
    qa = QAParams(scale, zero, 4, group_size)
    z = zero.repeat_interleave(group_size, 1).to(q_rtn.dtype)
    move = (torch.rand(W.shape, generator=g) < 1 / 3) & (W != 0)
    step = torch.randint(0, 2, W.shape, generator=g) * 2 - 1
    q = torch.where(move, (q_rtn + step).clamp(0, 15), q_rtn)
    return W, q_rtn, q, qa, z


def test_snapped_weights_quantize_to_the_gptq_codes_exactly():
    W, _, q, qa, _ = _weights_and_codes()
    assert torch.equal(quant_codes(snapped_to_bins(W, q, qa), qa), q.to(torch.int32))


def test_snapped_weights_are_the_fp16_weights_where_gptq_rounds_to_nearest():
    W, q_rtn, q, qa, z = _weights_and_codes()
    W_g = snapped_to_bins(W, q, qa)
    s = qa.scale.repeat_interleave(qa.group_size, 1)
    inside = (
        W / s - (q - z)
    ).abs() < 0.5 - 2.0**-6  # W lies in its GPTQ code's bin, not within 1/64 of an edge
    same = inside & (q == q_rtn)
    assert same.sum() > 0.9 * (q == q_rtn).sum()
    # (W / s − k) + k then × s in fp32: a few roundings of a value ≤ 2^b steps, i.e. of s · 16
    assert ((W_g - W).abs()[same] <= 4 * unit_roundoff(torch.float32) * 16 * s[same]).all()
    assert torch.equal(W_g[W == 0], W[W == 0])  # pruned weights stay exactly zero
    assert (W_g[W != 0] != 0).all()  # and no kept weight becomes zero: the mask M = 1[W ≠ 0] is the same


def test_where_gptq_departs_the_weight_sits_at_the_bin_edge_nearest_to_it():
    W, q_rtn, q, qa, z = _weights_and_codes()
    u = in_bin_residual(W, q, qa)
    moved = q != q_rtn
    assert moved.sum() > 100
    assert torch.equal(u.abs()[moved], torch.full_like(u[moved], 0.5 - 2.0**-6))
    # the edge toward W: u has the sign of W / s − (q − z), the direction of the code round-to-nearest chose
    assert torch.equal(torch.sign(u[moved]), torch.sign((q_rtn - q).float()[moved]))
    assert (u.abs()[~moved] <= 0.5).all()
