"""Round-to-nearest (RTN) group quantization, and the group parameters GPTQ shares with it.

Both keep sparsity (SPEC §2, ours): pruned weights (W == 0) get q = z, so ŵ = 0 exactly, and each group's
(s, z) is chosen over its kept weights only. Scales are rounded to fp16 before the codes are computed, so the
checkpoint's fp16 `scales` reproduce the computed ŵ bit for bit.
"""

from __future__ import annotations

import torch

from sqft.quantize.primitives import expand_groups, qmax, qparams, quantize, storable_scale

__all__ = ["group_qparams", "pin_pruned", "rtn_quantize"]


def group_qparams(
    w: torch.Tensor, bits: int, sym: bool, keep: torch.Tensor, min_zero: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (fp16-representable) and integer zero per row of one group `w` (out, g), over kept weights.

    `min_zero = 1` serves GPTQ v1 checkpoints, which store z − 1 and so cannot hold z = 0: rows whose zero
    would fall below it take z = min_zero and a scale wide enough that both ends of the range still fit.
    """
    scale, zero = qparams(w, bits, sym, keep)  # (out,), (out,)
    if min_zero > 0:
        low = zero < min_zero
        big = torch.finfo(torch.float32).max
        wmax = torch.where(keep, w.float(), -big).amax(dim=1).clamp(min=0)
        wmin = torch.where(keep, w.float(), big).amin(dim=1).clamp(max=0)
        widened = torch.maximum(wmax / (qmax(bits) - min_zero), -wmin / min_zero)
        widened = torch.where(widened > 0, widened, torch.ones_like(widened))
        scale = torch.where(low, widened, scale)
        zero = torch.where(low, torch.full_like(zero, float(min_zero)), zero)
    return storable_scale(scale), zero


def pin_pruned(q: torch.Tensor, zero: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Codes with every pruned position set to its zero point (so it dequantizes to exactly 0)."""
    return torch.where(keep, q, zero.to(q.dtype).expand_as(q))


def rtn_quantize(
    W: torch.Tensor, bits: int, group_size: int, sym: bool = False, min_zero: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round every weight to its group's grid. Returns q int32 (out, in), scale (out, G), zero (out, G)."""
    W = W.float()  # (out, in)
    out_f, in_f = W.shape
    g = in_f if group_size == -1 else group_size
    assert in_f % g == 0, "group size must divide in_features (checked by QuantizeConfig)"
    keep = W != 0  # (out, in)
    Wg, Kg = W.reshape(out_f * (in_f // g), g), keep.reshape(out_f * (in_f // g), g)  # (out·G, g)
    scale, zero = group_qparams(Wg, bits, sym, Kg, min_zero)  # (out·G,)
    scale, zero = scale.reshape(out_f, -1), zero.reshape(out_f, -1)  # (out, G)
    s, z = expand_groups(scale, g, in_f), expand_groups(zero, g, in_f)  # (out, in)
    q = pin_pruned(quantize(W, s, z, bits), z, keep)
    return q, scale, zero
