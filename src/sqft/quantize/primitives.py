"""Quantization primitives, as in SPEC §2: unsigned codes q ∈ [0, 2^b − 1] with an integer zero point z.

    q = clamp(round(w / s) + z, 0, 2^b − 1)        ŵ = s · (q − z)

Group-wise: the `in` dimension is split into groups of `group_size` consecutive columns; every (row, group)
has its own (s, z). Shapes: W (out, in); scales, zeros (out, G) with G = in / group_size.
"""

from __future__ import annotations

import torch

__all__ = [
    "qmax",
    "round_to_grid_",
    "qparams",
    "expand_groups",
    "quantize",
    "dequantize",
    "fake_quantize",
    "fake_quantize_ste",
    "storable_scale",
]


def qmax(bits: int) -> int:
    return 2**bits - 1


def round_to_grid_(t: torch.Tensor, offset: torch.Tensor | float, bits: int) -> torch.Tensor:
    """clamp(round(t) + offset, 0, 2^b − 1): SPEC eq. 3's rounding, the one place sqft rounds to a code.

    `t` is a fresh quotient in units of the quantization step (w / s), rounded in place (half to even) and
    returned. `offset` is the zero point z (`q = clamp(round(w / s) + z, …)`), or a base code q when the weight
    already lies on the grid (QA-SparsePEFT on an INT-b base: `Q = clamp(q + round(L / s), …)`).
    """
    return t.round_().add_(offset).clamp_(0, qmax(bits))


def qparams(
    w: torch.Tensor, bits: int, sym: bool = False, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and integer zero point per row of `w` (rows, cols), from min/max over the kept entries.

    `keep` (bool, same shape) excludes pruned weights so that group parameters are chosen over the kept ones
    (SPEC §2, ours). The range always includes 0, so a zero weight is exactly representable (q = z).
    Returns scale (rows,) fp32 > 0 and zero (rows,) fp32 holding integers.
    """
    w = w.float()
    if keep is not None:
        big = torch.finfo(torch.float32).max
        wmin = torch.where(keep, w, big).amin(dim=1)
        wmax = torch.where(keep, w, -big).amax(dim=1)
        empty = ~keep.any(dim=1)
        wmin = torch.where(empty, torch.zeros_like(wmin), wmin)
        wmax = torch.where(empty, torch.zeros_like(wmax), wmax)
    else:
        wmin, wmax = w.amin(dim=1), w.amax(dim=1)
    wmin = wmin.clamp(max=0)
    wmax = wmax.clamp(min=0)
    Q = qmax(bits)
    if sym:
        amax = torch.maximum(wmin.abs(), wmax)
        scale = 2 * amax / Q
        zero = torch.full_like(scale, (Q + 1) / 2)
    else:
        scale = (wmax - wmin) / Q
        zero = None
    degenerate = scale == 0  # an all-zero row/group: any positive scale represents it exactly
    scale = torch.where(degenerate, torch.ones_like(scale), scale)
    if zero is None:
        zero = torch.round(-wmin / scale).clamp(0, Q)
    return scale, zero


def storable_scale(scale: torch.Tensor) -> torch.Tensor:
    """The fp32 value of `scale` rounded to fp16, the dtype checkpoints store it in (GPTQ `scales`).

    Codes computed against this scale reproduce the stored model exactly. A scale that would round to 0 (or
    overflow) is clamped to the smallest (largest) positive fp16 value, so it stays usable as a divisor.
    """
    fp16 = torch.finfo(torch.float16)
    return scale.float().clamp(2.0**-24, fp16.max).to(torch.float16).float()


def expand_groups(p: torch.Tensor, group_size: int, in_features: int) -> torch.Tensor:
    """(out, G) per-group parameters → (out, in) per-weight parameters."""
    return p.repeat_interleave(group_size, dim=1)[:, :in_features]


def quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes q = clamp(round(w / s) + z, 0, 2^b − 1), returned as int32 (same shape as w)."""
    return round_to_grid_(w.float() / scale, zero, bits).to(torch.int32)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """ŵ = s · (q − z) in fp32. A code equal to the zero point gives exactly 0."""
    return scale * (q - zero.float())  # int − float promotes in the same pass


def fake_quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """dequantize(quantize(w)) in w's dtype (scale/zero broadcast against w)."""
    return dequantize(quantize(w, scale, zero, bits), scale, zero).to(w.dtype)


class _FakeQuantSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, scale, zero, bits):  # type: ignore[override]
        return fake_quantize(w, scale, zero, bits)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad, None, None, None  # straight-through: ∂Ŵ/∂W_m = I


def fake_quantize_ste(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Fake quantization with a straight-through estimator: value Ŵ, gradient identity to w (QA-SparsePEFT)."""
    return _FakeQuantSTE.apply(w, scale, zero, bits)
