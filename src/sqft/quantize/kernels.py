"""INT4 inference on PyTorch's packed-INT4 kernels: the same codes, run without dequantizing the weight.

`QuantLinear` (the reference) remakes Ŵ = s·(q − z) at every call. `PackedInt4Linear` packs the codes once
into the layout of `aten._weight_int4pack_mm` ("tinygemm", CUDA) or `aten._weight_int4pack_mm_for_cpu`, which
compute y = x Ŵᵀ with Ŵ dequantized inside the kernel, tile by tile, as

    Ŵ = (q − 8) · scale + zero                                 (the kernels' convention)

so sqft's Ŵ = s·(q − z) maps to scale = s, zero = s·(8 − z) (`kernel_qparams`). Training, merge and export
never see this module: the codes stay what is stored, the kernel is only how they run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from sqft.quantize.qlinear import QuantLinear

__all__ = [
    "KERNEL_GROUP_SIZES",
    "PackedInt4Linear",
    "PackReport",
    "kernel_dtype",
    "kernel_qparams",
    "pack_int4_layers",
    "unsupported_reason",
]

log = logging.getLogger(__name__)

KERNEL_GROUP_SIZES = (32, 64, 128, 256)
INNER_K_TILES = 8  # the packing's k-tiling: K must be a multiple of 16·INNER_K_TILES = 128 on CUDA


def kernel_dtype(device: torch.device | str, dtype: torch.dtype = torch.bfloat16) -> torch.dtype:
    """The dtype the kernel computes in (activations, scales and zeros share it). CUDA's tinygemm takes only
    bf16. The CPU kernel also takes fp32 (bit-exact Ŵ) and fp16, but on this project's machine those paths
    ran 7–10× slower than bf16 at 4096×4096, so inference asks for bf16 (the default)."""
    if torch.device(device).type == "cuda":
        return torch.bfloat16
    return dtype if dtype in (torch.float32, torch.float16, torch.bfloat16) else torch.bfloat16


def kernel_qparams(scale: torch.Tensor, zero: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """scale (G, out), integer zero z (G, out) → the kernels' scale_and_zero (G, out, 2) in `dtype`.

    s·(q − z) = (q − 8)·s + s·(8 − z). In fp32 both halves are exact (s is fp16, 8 − z a small integer), so
    the kernel's Ŵ is sqft's bit for bit and a pruned weight (q = z) is exactly 0. In fp16 s stays exact and
    s·(8 − z) rounds once (|ΔŴ| ≤ 2⁻¹¹·|s·(8 − z)|); in bf16 both round (|Δs| ≤ 2⁻⁹·s, and the same for the
    zero): a pruned weight is then |ΔŴ| ≤ 2⁻⁸·|s·(8 − z)| instead of 0.
    """
    s = scale.float()
    return torch.stack([s, s * (8 - zero.float())], dim=-1).to(dtype).contiguous()  # (G, out, 2)


def unsupported_reason(layer: QuantLinear, device: torch.device | str) -> str | None:
    """Why `layer` cannot run on the packed kernel on `device` (None when it can)."""
    dev = torch.device(device).type
    if dev not in ("cpu", "cuda"):
        return f"no INT4 kernel for device '{dev}'"
    if layer.bits != 4:
        return f"{layer.bits}-bit codes"
    if layer.group_size not in KERNEL_GROUP_SIZES:
        return f"group size {layer.group_size} (the kernels take {', '.join(map(str, KERNEL_GROUP_SIZES))})"
    if dev == "cuda" and (layer.in_features % (16 * INNER_K_TILES) or layer.out_features % 8):
        return f"shape {layer.out_features}×{layer.in_features} (CUDA needs out % 8 = 0 and in % 128 = 0)"
    if dev == "cpu" and layer.in_features % 2:
        return f"odd in_features={layer.in_features}"
    return None


def _pack_codes(q: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Codes q int32 (out, in) in [0, 15] → the kernel's packed weight on `device`."""
    if device.type == "cuda":
        q_u8 = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8)  # (out, in/2): two codes a byte, even one high
        return torch.ops.aten._convert_weight_to_int4pack(q_u8.to(device), INNER_K_TILES)
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.contiguous(), INNER_K_TILES)


class PackedInt4Linear(nn.Module):
    """y = x Ŵᵀ + b on the packed-INT4 kernel; Ŵ is `QuantLinear`'s (see `kernel_qparams` for the rounding).

    Inference only (no gradient flows to the codes); inputs of another dtype are cast to the kernel's and the
    output cast back.
    """

    def __init__(self, layer: QuantLinear, device: torch.device | str, dtype: torch.dtype) -> None:
        super().__init__()
        device = torch.device(device)
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.bits, self.group_size = layer.bits, layer.group_size
        self.dtype = kernel_dtype(device, dtype)
        q, scale, zero = layer.codes()  # (out, in), (out, G), (out, G)
        self.register_buffer("weight_packed", _pack_codes(q.to(torch.int32).cpu(), device).to(device))
        self.register_buffer("scale_and_zero", kernel_qparams(scale.T, zero.T, self.dtype).to(device))
        bias = None if layer.bias is None else layer.bias.detach().to(device, self.dtype)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features).to(self.dtype)  # (tokens, in)
        if x2.device.type == "cuda":
            y = torch.ops.aten._weight_int4pack_mm(
                x2, self.weight_packed, self.group_size, self.scale_and_zero
            )
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(
                x2, self.weight_packed, self.group_size, self.scale_and_zero
            )
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)  # (..., out)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
            f"group_size={self.group_size}, dtype={self.dtype}"
        )


@dataclass
class PackReport:
    """Which INT4 layers run on the kernel and which stayed on the dequantizing path (name → reason)."""

    packed: list[str] = field(default_factory=list)
    fallback: dict[str, str] = field(default_factory=dict)


def pack_int4_layers(
    model: nn.Module, device: torch.device | str, dtype: torch.dtype = torch.bfloat16
) -> PackReport:
    """Replace, in place, every bare `QuantLinear` of `model` that the kernel supports by a `PackedInt4Linear`
    on `device` computing in `kernel_dtype(device, dtype)`. Layers wrapped by an adapter keep their codes (a
    QA adapter requantizes them). Logs one line for the layers that fell back."""
    report = PackReport()
    for name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if not isinstance(child, QuantLinear):
                continue
            full = f"{name}.{child_name}" if name else child_name
            reason = "wrapped by an adapter" if _is_adapter(parent) else unsupported_reason(child, device)
            if reason is not None:
                report.fallback[full] = reason
                continue
            setattr(parent, child_name, PackedInt4Linear(child, device, dtype))
            report.packed.append(full)
    if report.fallback:
        reasons = sorted(set(report.fallback.values()))
        log.info(
            "%d INT4 layers run on the dequantizing path (%s), %d on the packed kernel",
            len(report.fallback),
            "; ".join(reasons),
            len(report.packed),
        )
    return report


def _is_adapter(module: nn.Module) -> bool:
    # an sqft AdapterLinear holds its target as `base`; imported by name to keep quantize below adapt
    return type(module).__name__ == "AdapterLinear"
