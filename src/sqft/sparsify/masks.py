"""Pruning masks from importance scores (pure tensor math).

A mask is a bool tensor `(out, in)` that is True where a weight is *pruned*. Comparison groups are output
rows (Wanda): unstructured sparsity p prunes exactly floor(in·p) lowest scores in every row; N:M prunes the N
lowest scores in every M consecutive inputs of every row. Ties go to the lower column index (stable sort),
so masks are deterministic.
"""

from __future__ import annotations

import math

import torch

__all__ = ["wanda_score", "magnitude_score", "unstructured_mask", "nm_mask", "prune_mask", "parse_pattern"]


def wanda_score(W: torch.Tensor, input_sq_norm: torch.Tensor) -> torch.Tensor:
    """Wanda: S_ij = |W_ij| · ‖X_j‖₂, with ‖X_j‖₂² = Σ_tokens x_j² (fp32). W (out, in), norm² (in,)."""
    return W.float().abs() * input_sq_norm.float().sqrt().unsqueeze(0)  # (out, in)


def magnitude_score(W: torch.Tensor) -> torch.Tensor:
    """Magnitude pruning: S_ij = |W_ij|."""
    return W.float().abs()


def unstructured_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune the floor(in·p) lowest-scoring weights of every row. score (out, in) → pruned (out, in) bool."""
    out_f, in_f = score.shape
    k = math.floor(in_f * sparsity)
    pruned = torch.zeros_like(score, dtype=torch.bool)
    if k > 0:
        idx = torch.sort(score, dim=1, stable=True).indices[:, :k]  # (out, k)
        pruned.scatter_(1, idx, True)
    return pruned


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Prune the n lowest scores in every m consecutive inputs of every row (2:4 → 50%)."""
    out_f, in_f = score.shape
    assert in_f % m == 0, f"in_features {in_f} not divisible by m={m}"
    groups = score.reshape(out_f, in_f // m, m)  # (out, in/m, m)
    idx = torch.sort(groups, dim=2, stable=True).indices[:, :, :n]  # (out, in/m, n)
    pruned = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, idx, True)
    return pruned.reshape(out_f, in_f)


def parse_pattern(pattern: str | None) -> tuple[int, int] | None:
    """'2:4' → (2, 4); None/'unstructured' → None. Raises ValueError for anything that is not N:M with N<M."""
    if pattern is None or pattern in ("", "unstructured"):
        return None
    parts = pattern.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"pattern '{pattern}' is not N:M (e.g. 2:4) or 'unstructured'")
    n, m = int(parts[0]), int(parts[1])
    if not 0 < n < m:
        raise ValueError(f"pattern '{pattern}' needs 0 < N < M (e.g. 2:4, 4:8)")
    return n, m


def prune_mask(score: torch.Tensor, sparsity: float, nm: tuple[int, int] | None) -> torch.Tensor:
    """Dispatch: N:M when `nm` is given, else unstructured at `sparsity`."""
    return nm_mask(score, *nm) if nm is not None else unstructured_mask(score, sparsity)
