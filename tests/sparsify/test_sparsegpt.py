import math

import torch

from sqft.calibration import Hessian
from sqft.sparsify.masks import magnitude_score, unstructured_mask, wanda_score
from sqft.sparsify.sparsegpt import sparsegpt_prune


def _correlated_inputs(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5
    scale = torch.logspace(-1, 1, d)[torch.randperm(d, generator=g)]  # very different feature norms, shuffled
    return (torch.randn(n, d, generator=g) @ mix) * scale  # (n, d)


def test_sparsegpt_counts_and_reconstruction_beats_wanda():
    torch.manual_seed(0)
    out_f, in_f = 48, 160
    W = torch.randn(out_f, in_f)
    X = _correlated_inputs(2048, in_f, 1)
    acc = Hessian(in_f)
    acc.add_batch(X)
    W_sgpt, pruned = sparsegpt_prune(W, acc.H, 0.5, blocksize=64)
    assert ((W_sgpt == 0).sum(1) == math.floor(in_f * 0.5)).all()
    assert torch.equal(W_sgpt == 0, pruned)
    W_wanda = W.clone()
    W_wanda[unstructured_mask(wanda_score(W, (X * X).sum(0)), 0.5)] = 0
    W_mag = W.clone()
    W_mag[unstructured_mask(magnitude_score(W), 0.5)] = 0

    def err(Wq):
        return torch.linalg.norm(X @ W.T - X @ Wq.T).item()

    assert err(W_sgpt) < err(W_wanda) < err(W_mag)


def test_sparsegpt_nm_pattern():
    torch.manual_seed(0)
    W = torch.randn(16, 64)
    X = _correlated_inputs(512, 64, 2)
    acc = Hessian(64)
    acc.add_batch(X)
    W_new, pruned = sparsegpt_prune(W, acc.H, 0.5, nm=(2, 4), blocksize=32)
    assert ((W_new == 0).reshape(16, -1, 4).sum(-1) == 2).all()
