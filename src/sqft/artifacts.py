"""Artifacts: every stage writes one output directory with weights, tokenizer and a manifest `sqft.json`.

Writes go to a temporary sibling directory that is renamed into place only when the stage succeeded, so an
interrupted or failed stage leaves no partial OUTPUT behind and never touches an existing one.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from sqft.errors import OutputExistsError, SqftError

__all__ = [
    "MANIFEST",
    "check_output",
    "atomic_output",
    "write_manifest",
    "parent_reference",
    "read_manifest",
    "dir_size_bytes",
    "versions",
    "Stopwatch",
]

MANIFEST = "sqft.json"


def check_output(output: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output path before any work starts (fail fast, write nothing)."""
    out = Path(output)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"output '{out}' already exists: choose another path or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise SqftError(f"output '{out}' exists and is not a directory: remove it or choose another path")
    parent = out.resolve().parent
    if not parent.exists():
        raise SqftError(f"the parent directory of output '{out}' does not exist: create '{parent}' first")
    return out


@contextlib.contextmanager
def atomic_output(output: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `output`, on any error it is removed.

    The old output (with `overwrite`) is moved aside and deleted only after the new one is in place.
    """
    out = check_output(output, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.resolve().parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def versions() -> dict[str, str]:
    """Versions of the software that produced an artifact."""
    import torch
    import transformers

    from sqft import __version__

    return {
        "sqft": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def parent_reference(source: str | os.PathLike) -> str:
    """How a manifest names its parent: a local path absolute, so that the lineage still resolves from another
    working directory; anything else (a hub id) as given."""
    return str(Path(source).resolve()) if Path(str(source)).exists() else str(source)


def write_manifest(
    directory: str | os.PathLike,
    stage: str,
    config: Any,
    parent: str | None,
    figures: dict[str, Any],
) -> dict[str, Any]:
    """Write `sqft.json`: stage, full config, parent artifact (see `parent_reference`), versions and measured
    figures."""
    d = Path(directory)
    manifest = {
        "stage": stage,
        "config": _jsonable(config),
        "parent": None if parent is None else parent_reference(parent),
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "figures": _jsonable(figures),
    }
    manifest["figures"]["size_on_disk_bytes"] = dir_size_bytes(d)
    (d / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of an artifact directory, or None when it has none (e.g. a plain HF checkpoint)."""
    p = Path(directory) / MANIFEST
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SqftError(
            f"manifest '{p}' is not valid JSON ({e}): the artifact is damaged, re-run its stage"
        ) from e


def dir_size_bytes(directory: str | os.PathLike) -> int:
    """Bytes of the weight files in a directory (what a user downloads to run the model)."""
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file() and p.name != MANIFEST)


class Stopwatch:
    """Wall time and peak memory of a stage (CUDA peak when on GPU, else process max RSS)."""

    def __init__(self, device: str | None = None) -> None:
        self.device = device or "cpu"

    def __enter__(self) -> Stopwatch:
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.peak_memory_bytes = peak_memory_bytes(self.device)


def peak_memory_bytes(device: str = "cpu") -> int:
    """Peak memory: CUDA allocator peak on a GPU, the process's max RSS on the CPU."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
