"""Compute devices: one check, used by every stage config, before any model is loaded."""

from __future__ import annotations

from pathlib import Path

import torch

from sqft.errors import SqftError

__all__ = ["DEVICE_TYPES", "check_device", "has_fast_bf16", "compute_dtype"]

DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def _available(kind: str) -> tuple[bool, int]:
    """(available, device count) of a device type in this torch build."""
    if kind == "cpu":
        return True, 1
    if kind == "cuda":
        return torch.cuda.is_available(), torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "mps":
        ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
        return ok, int(ok)
    xpu = getattr(torch, "xpu", None)
    ok = bool(xpu is not None and xpu.is_available())
    return ok, xpu.device_count() if ok else 0


def check_device(device: object, available: bool = True) -> str:
    """`device` as given when this machine has it; SqftError for an unknown, absent or out-of-range device.

    `available=False` checks the name only (a recipe for a GPU machine can be read anywhere)."""
    if not isinstance(device, str) or not device:
        raise SqftError(f"device {device!r} is not a device name: use cpu, cuda or cuda:N")
    kind, _, index = device.partition(":")
    if kind not in DEVICE_TYPES or (index and not index.isdigit()):
        raise SqftError(f"unknown device '{device}': use cpu, cuda, cuda:N, mps or xpu")
    if not available:
        return device
    ok, count = _available(kind)
    if not ok:
        raise SqftError(
            f"device '{device}' was asked for but this torch build has no {kind.upper()} support "
            f"(torch.{kind}.is_available() is False): use --device cpu or install a {kind} build of torch"
        )
    if index and int(index) >= count:
        raise SqftError(f"device '{device}' does not exist: this machine has {count} {kind} device(s)")
    return device


def has_fast_bf16(device: str, cpuinfo: str | None = None) -> bool:
    """Whether bf16 matrix products run natively here: any CUDA device, or a CPU with AMX or AVX512-BF16
    (on such a CPU a bf16 GEMM is several times faster than an fp32 one; without, bf16 is emulated and slower).
    `cpuinfo`: the text of /proc/cpuinfo (read when None; a system without it counts as no)."""
    if device.startswith("cuda"):
        return True
    if device != "cpu":
        return False
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    flags = next(
        (line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []
    )
    return "amx_bf16" in flags or "avx512_bf16" in flags


def compute_dtype(device: str, dtype: str = "auto") -> str:
    """`dtype` as given, or for "auto" the faster of bf16 and fp32 on `device` (`has_fast_bf16`)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if has_fast_bf16(device) else "float32"
