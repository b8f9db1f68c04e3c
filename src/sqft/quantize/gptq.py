"""GPTQ (Frantar et al. 2022) with pinned pruned weights (SPEC §2, ours: sparsity survives quantization).

Pseudocode, for one linear with weight W (out, in) and Hessian H = 2/n Σ x xᵀ (in, in):
    H ← H + λI, λ = percdamp · mean(diag H) (dead inputs fixed);  Hinv ← upper Cholesky of H⁻¹
    for each block of `blocksize` columns [i1, i2):
        for each column j in the block, left to right:
            at a group start: (s, z) ← group parameters over the group's kept weights (current values)
            q_j ← clamp(round(w_j / s) + z, 0, 2^b − 1), with q = z where W was 0 (pinned)
            err_j ← (w_j − ŵ_j) / Hinv[j, j]             (0 at pinned positions)
            W[:, j:i2] −= err_j · Hinv[j, j:i2]           (kept positions only)
        W[:, i2:] −= Err · Hinv[i1:i2, i2:]               (lazy batch update, kept positions only)
Pinned positions are never targets of the error feedback, so they stay exactly 0 and contribute no error.
"""

from __future__ import annotations

import torch

from sqft.calibration.hessian import inverse_hessian_cholesky, prepare_hessian
from sqft.quantize.primitives import dequantize, quantize
from sqft.quantize.rtn import group_qparams, pin_pruned

__all__ = ["gptq_quantize", "reconstruction_error"]


def _group_now(
    W: torch.Tensor, W1: torch.Tensor, Err1: torch.Tensor, Hinv: torch.Tensor, i1: int, i: int, g: int
) -> torch.Tensor:
    """Current values of the group starting at column i1 + i: W1 inside the block; beyond it, W minus the
    lazy updates still pending from the block's first i columns."""
    i2 = i1 + W1.shape[1]
    c, end = i1 + i, min(i1 + i + g, W.shape[1])
    inside = W1[:, i : min(end, i2) - i1]  # (out, ≤g)
    if end <= i2:
        return inside
    pending = Err1[:, :i] @ Hinv[i1:c, i2:end]  # (out, end − i2)
    return torch.cat([inside, W[:, i2:end] - pending], dim=1)


@torch.no_grad()
def gptq_quantize(
    W: torch.Tensor,
    H: torch.Tensor,
    bits: int,
    group_size: int,
    sym: bool = False,
    percdamp: float = 0.01,
    blocksize: int = 128,
    min_zero: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize W (out, in) with GPTQ. Returns q int32 (out, in), scale (out, G), zero (out, G) (fp32).

    `group_size = -1` is one group per row. `min_zero = 1` keeps z ≥ 1 (GPTQ v1 checkpoints store z − 1).
    """
    W = W.detach().clone().float()  # (out, in)
    out_f, in_f = W.shape
    g = in_f if group_size == -1 else group_size
    assert in_f % g == 0, "group size must divide in_features (checked by QuantizeConfig)"
    keep = W != 0  # (out, in): pruned positions are pinned to 0
    Hinv = inverse_hessian_cholesky(prepare_hessian(H.to(W.device), percdamp))  # (in, in) upper
    Q = torch.zeros(out_f, in_f, dtype=torch.int32, device=W.device)
    scales = torch.zeros(out_f, in_f // g, device=W.device)
    zeros = torch.zeros_like(scales)
    for i1 in range(0, in_f, blocksize):
        i2 = min(i1 + blocksize, in_f)
        W1, K1 = W[:, i1:i2].clone(), keep[:, i1:i2]  # (out, B)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]  # (B, B)
        for i in range(i2 - i1):
            j = i1 + i
            if j % g == 0:
                group = _group_now(W, W1, Err1, Hinv, i1, i, g)
                s, z = group_qparams(group, bits, sym, keep[:, j : j + g], min_zero)  # (out,)
                scales[:, j // g], zeros[:, j // g] = s, z
            w, d = W1[:, i], Hinv1[i, i]
            q = pin_pruned(quantize(w, s, z, bits), z, K1[:, i])
            Q[:, j] = q
            err = (w - dequantize(q, s, z)) / d * K1[:, i]  # (out,), zero where pinned
            W1[:, i:] -= (err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)) * K1[:, i:]
            Err1[:, i] = err
        W[:, i2:] -= (Err1 @ Hinv[i1:i2, i2:]) * keep[:, i2:]
    return Q, scales, zeros


def reconstruction_error(W: torch.Tensor, W_hat: torch.Tensor, H: torch.Tensor) -> float:
    """Mean over calibration tokens of ‖(W − Ŵ) x‖², i.e. tr(ΔW H ΔWᵀ) / 2 with H = 2/n Σ x xᵀ."""
    dW = (W.float() - W_hat.float()).to(H.device)  # (out, in)
    return float(((dW @ H) * dW).sum() / 2)
