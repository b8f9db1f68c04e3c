"""Shared Hessian preparation for GPTQ and SparseGPT (one copy of this code, not two)."""

from __future__ import annotations

import torch

__all__ = ["prepare_hessian", "inverse_hessian_cholesky"]


def prepare_hessian(H: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """Fix dead inputs and add damping λ = percdamp · mean(diag H); returns a new (in, in) fp32 matrix.

    A dead input (H_jj = 0: the feature was zero on every calibration token) gets H_jj = 1, which keeps H
    positive definite. Unlike the reference GPTQ we do not zero its weights: that would add zeros that the
    sparsity report must not see (sparsity in = sparsity out).
    """
    H = H.clone().float()  # (in, in)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    damp = percdamp * torch.mean(torch.diag(H))
    H.diagonal().add_(damp)
    return H


def inverse_hessian_cholesky(H: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of H⁻¹ (the `Hinv` of GPTQ/SparseGPT's column loop)."""
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    return torch.linalg.cholesky(Hinv, upper=True)
