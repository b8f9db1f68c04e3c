"""The one tolerance helper of the tests: bounds derived from the dtype that does the rounding.

For k roundings to nearest in a dtype with unit roundoff u, the relative error is at most
γ_k = k·u / (1 − k·u) (Higham, Accuracy and Stability of Numerical Algorithms, §3.1). `assert_close` applies
it norm-wise: max |got − want| ≤ γ_k · max |want|, i.e. every value may be off by k roundings of the largest
value it was computed alongside. `k` is what the test says is computed differently: a GEMM's reduction length
when the two sides sum in a different order, or the few roundings of a chain of elementwise operations.
"""

import torch

__all__ = ["unit_roundoff", "gamma", "assert_close"]


def unit_roundoff(dtype: torch.dtype) -> float:
    """u = 2^-p for a p-bit significand: |fl(x) − x| ≤ u·|x| for one rounding to nearest (fp32 2⁻²⁴, fp16
    2⁻¹¹, bf16 2⁻⁸, fp64 2⁻⁵³)."""
    return torch.finfo(dtype).eps / 2


def gamma(k: int, dtype: torch.dtype) -> float:
    """γ_k = k·u / (1 − k·u): the relative error bound of k roundings in `dtype`."""
    ku = k * unit_roundoff(dtype)
    assert ku < 1, f"{k} roundings in {dtype} bound nothing"
    return ku / (1 - ku)


def assert_close(got, want, dtype: torch.dtype, k: int = 1, msg: str = "") -> None:
    """max |got − want| ≤ γ_k(dtype) · max |want| (exact equality when `want` is all zeros); tensors or floats."""
    got, want = torch.as_tensor(got), torch.as_tensor(want)
    assert got.shape == want.shape, f"{msg} shape {tuple(got.shape)} != {tuple(want.shape)}"
    err = (got.double() - want.double()).abs().max().item() if got.numel() else 0.0
    bound = gamma(k, dtype) * (want.double().abs().max().item() if want.numel() else 0.0)
    assert err <= bound, f"{msg} max error {err:.3g} > γ_{k}({dtype}) · max|want| = {bound:.3g}"
