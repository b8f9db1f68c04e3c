"""Accumulators of calibration statistics, fed one batch of layer inputs at a time (fp32)."""

from __future__ import annotations

import torch

__all__ = ["InputSqNorm", "Hessian"]


class InputSqNorm:
    """Wanda's input statistic: ‖X_j‖₂² = Σ_tokens x_j² for each input feature j."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu") -> None:
        self.sq_norm = torch.zeros(in_features, dtype=torch.float32, device=device)  # (in,)
        self.n_tokens = 0

    def add_batch(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()  # (tokens, in)
        self.sq_norm += (x * x).sum(dim=0)
        self.n_tokens += x.shape[0]


class Hessian:
    """GPTQ/SparseGPT's layer Hessian H = 2/n Σ x xᵀ, as a running mean over all calibration tokens."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu") -> None:
        self.H = torch.zeros(in_features, in_features, dtype=torch.float32, device=device)  # (in, in)
        self.n_tokens = 0

    def add_batch(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()  # (t, in)
        t = x.shape[0]
        self.H *= self.n_tokens / (self.n_tokens + t)
        self.n_tokens += t
        x = x * (2.0 / self.n_tokens) ** 0.5
        self.H += x.T @ x
