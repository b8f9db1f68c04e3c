"""SparseGPT (Frantar & Alistarh 2023): OBS pruning with weight reconstruction, column blocks of 128.

Pseudocode (per layer, W (out, in), U = upper Cholesky factor of H⁻¹):
    for each block of columns [i1, i2):
        choose the mask of this block from  w² / U_jj²  (ours: per row, so each row ends with floor(in·p) zeros;
                                                           N:M: per M consecutive columns)
        for each column j in the block:
            q_j = w_j with pruned entries set to 0;   err_j = (w_j − q_j) / U_jj
            W[:, j:i2] −= err_j · U[j, j:i2]          (error feedback inside the block)
        W[:, i2:] −= Err_block · U[i1:i2, i2:]        (lazy update of the remaining columns)
"""

from __future__ import annotations

import math

import torch

from sqft.calibration.hessian import inverse_hessian_cholesky, prepare_hessian
from sqft.sparsify.masks import nm_mask

__all__ = ["sparsegpt_prune"]


def _row_counts(i1: int, i2: int, in_f: int, sparsity: float) -> int:
    """Zeros to place in columns [i1, i2) so that the running total is floor(i2·p) (sums to floor(in·p))."""
    return math.floor(i2 * sparsity) - math.floor(i1 * sparsity)


@torch.no_grad()
def sparsegpt_prune(
    W: torch.Tensor,
    H: torch.Tensor,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune and reconstruct. W (out, in), H (in, in) → (new W in W's dtype, pruned mask (out, in) bool)."""
    W1 = W.float().clone()  # (out, in)
    out_f, in_f = W1.shape
    if nm is not None:
        assert blocksize % nm[1] == 0
    U = inverse_hessian_cholesky(prepare_hessian(H, percdamp))  # (in, in) upper
    pruned = torch.zeros_like(W1, dtype=torch.bool)
    for i1 in range(0, in_f, blocksize):
        i2 = min(i1 + blocksize, in_f)
        Wb = W1[:, i1:i2].clone()  # (out, b)
        Ub = U[i1:i2, i1:i2]  # (b, b)
        Errb = torch.zeros_like(Wb)
        if nm is None:
            saliency = Wb**2 / torch.diag(Ub).reshape(1, -1) ** 2  # (out, b)
            k = _row_counts(i1, i2, in_f, sparsity)
            idx = torch.sort(saliency, dim=1, stable=True).indices[:, :k]
            mask_b = torch.zeros_like(Wb, dtype=torch.bool).scatter_(1, idx, True)
        else:
            mask_b = torch.zeros_like(Wb, dtype=torch.bool)
        for j in range(i2 - i1):
            if nm is not None and j % nm[1] == 0:  # N:M masks use the weights updated so far
                cols = slice(j, j + nm[1])
                sal = Wb[:, cols] ** 2 / torch.diag(Ub)[cols].reshape(1, -1) ** 2
                mask_b[:, cols] = nm_mask(sal, *nm)
            w = Wb[:, j]
            d = Ub[j, j]
            q = torch.where(mask_b[:, j], torch.zeros_like(w), w)
            err = (w - q) / d
            Wb[:, j:] -= err.unsqueeze(1) @ Ub[j, j:].unsqueeze(0)
            Wb[:, j] = q
            Errb[:, j] = err
        W1[:, i1:i2] = Wb
        pruned[:, i1:i2] = mask_b
        W1[:, i2:] -= Errb @ U[i1:i2, i2:]
    W1[pruned] = 0
    return W1.to(W.dtype), pruned
