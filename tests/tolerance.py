"""Tolerances for numerics tests, derived from the dtype that does the rounding."""

import torch

__all__ = ["unit_roundoff"]


def unit_roundoff(dtype: torch.dtype) -> float:
    """u = 2^-p for a p-bit significand: |fl(x) − x| ≤ u·|x| for one rounding to nearest (fp32 2⁻²⁴, fp16
    2⁻¹¹, bf16 2⁻⁸)."""
    return torch.finfo(dtype).eps / 2
