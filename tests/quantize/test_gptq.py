import pytest
import torch

from sqft.quantize.gptq import gptq_quantize, reconstruction_error
from sqft.quantize.primitives import dequantize, expand_groups
from sqft.quantize.rtn import rtn_quantize


def _dequant(q, scale, zero):
    g = q.shape[1] // scale.shape[1]
    return dequantize(q, expand_groups(scale, g, q.shape[1]), expand_groups(zero, g, q.shape[1]))


def _problem(out=32, inp=256, n=1024, seed=0):
    """A random layer and correlated inputs (low-rank signal plus noise), as real activations are."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 16, generator=g) @ torch.randn(16, inp, generator=g) + 0.3 * torch.randn(
        n, inp, generator=g
    )
    W = torch.randn(out, inp, generator=g)
    return W, 2 / n * X.T @ X  # (out, in), (in, in)


def _prune(W, pattern):
    W = W.clone()
    if pattern == "unstructured":
        W[torch.rand(W.shape, generator=torch.Generator().manual_seed(1)) < 0.5] = 0
    else:  # 2:4: zero the 2 smallest |w| of every 4 consecutive inputs
        groups = W.reshape(W.shape[0], -1, 4)
        idx = groups.abs().argsort(dim=-1)[..., :2]
        W = groups.scatter(-1, idx, 0.0).reshape(W.shape)
    return W


@pytest.mark.parametrize("sparsity", [None, "unstructured"])
@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_beats_rtn_on_output_error(bits, sparsity):
    W, H = _problem()
    if sparsity:
        W = _prune(W, sparsity)
    gptq = reconstruction_error(W, _dequant(*gptq_quantize(W, H, bits, 128)), H)
    rtn = reconstruction_error(W, _dequant(*rtn_quantize(W, bits, 128)), H)
    assert gptq < 0.5 * rtn  # measured: ~0.05 dense, ~0.35 at 50% sparsity


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
@pytest.mark.parametrize(
    "bits,group_size,sym", [(4, 128, False), (4, 64, True), (3, -1, False), (2, 32, False)]
)
def test_every_zero_stays_zero(pattern, bits, group_size, sym):
    W, H = _problem()
    W = _prune(W, pattern)
    for q, scale, zero in (
        gptq_quantize(W, H, bits, group_size, sym),
        rtn_quantize(W, bits, group_size, sym),
    ):
        W_hat = _dequant(q, scale, zero)
        assert torch.equal(W_hat[W == 0], torch.zeros(int((W == 0).sum())))  # bit for bit


def test_codes_and_parameters_are_storable():
    W, H = _problem()
    for min_zero in (0, 1):
        q, scale, zero = gptq_quantize(
            W.abs(), H, 4, 64, min_zero=min_zero
        )  # all-positive rows: z would be 0
        assert q.dtype == torch.int32 and q.min() >= 0 and q.max() <= 15
        assert torch.equal(scale.half().float(), scale) and (scale > 0).all()
        assert torch.equal(zero, zero.round()) and zero.min() == min_zero and zero.max() <= 15


def test_uncorrelated_inputs_make_gptq_equal_rtn():
    """With H ∝ I the error feedback Hinv[j, j+1:] is 0, so GPTQ reduces to round-to-nearest exactly."""
    W, _ = _problem()
    q_g, s_g, z_g = gptq_quantize(W, torch.eye(W.shape[1]), 4, 64)
    q_r, s_r, z_r = rtn_quantize(W, 4, 64)
    assert torch.equal(q_g, q_r) and torch.equal(s_g, s_r) and torch.equal(z_g, z_r)


def test_dead_inputs_and_groups_across_blocks_are_handled():
    W, H = _problem(inp=192)
    H[5, :] = 0
    H[:, 5] = 0  # input 5 never fired
    q, scale, zero = gptq_quantize(W, H, 4, 96, blocksize=64)  # group 96 starts inside the second block
    W_hat = _dequant(q, scale, zero)
    assert torch.isfinite(W_hat).all()
    assert reconstruction_error(W, W_hat, H) < reconstruction_error(W, _dequant(*rtn_quantize(W, 4, 96)), H)


def test_reconstruction_error_is_mean_output_error():
    g = torch.Generator().manual_seed(0)
    X, W, W_hat = (
        torch.randn(50, 8, generator=g),
        torch.randn(4, 8, generator=g),
        torch.randn(4, 8, generator=g),
    )
    H = 2 / 50 * X.T @ X
    want = ((X @ (W - W_hat).T) ** 2).sum(1).mean()
    assert reconstruction_error(W, W_hat, H) == pytest.approx(float(want), rel=1e-5)
