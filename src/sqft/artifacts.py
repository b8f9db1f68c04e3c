"""Artifacts: every stage writes one output directory with weights, tokenizer and a manifest `sqft.json`.

Writes go to a temporary sibling directory that is renamed into place only when the stage succeeded, so an
interrupted or failed stage leaves no partial OUTPUT behind and never touches an existing one.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch

from sqft import __version__
from sqft.errors import OutputExistsError, SqftError
from sqft.files import read_json_file, safetensors_header

__all__ = [
    "MANIFEST",
    "check_output",
    "check_writable",
    "free_disk_bytes",
    "fingerprint",
    "atomic_output",
    "clean_stale_siblings",
    "write_manifest",
    "parent_reference",
    "read_manifest",
    "dir_size_bytes",
    "versions",
    "Stopwatch",
]

MANIFEST = "sqft.json"
log = logging.getLogger(__name__)

log = logging.getLogger(__name__)

DISK_MARGIN_BYTES = 64 * 2**20  # headroom beyond the estimated artifact (tokenizer, manifest, filesystem)


def check_output(
    output: str | os.PathLike, overwrite: bool = False, inputs: Iterable[str | os.PathLike | None] = ()
) -> Path:
    """Validate an output path before any work starts (fail fast, write nothing).

    `--overwrite` replaces only what sqft wrote: an existing OUTPUT must hold `sqft.json` and must be neither
    one of the stage's `inputs` nor a directory that contains one. Leftovers of a killed run beside OUTPUT are
    dealt with first (see `clean_stale_siblings`).
    """
    out = Path(output)
    parent = out.resolve().parent
    if not parent.exists():
        raise SqftError(f"the parent directory of output '{out}' does not exist: create '{parent}' first")
    clean_stale_siblings(out)
    if not out.exists():
        return out
    if not overwrite:
        raise OutputExistsError(f"output '{out}' already exists: choose another path or pass --overwrite")
    if not out.is_dir():
        raise SqftError(f"output '{out}' exists and is not a directory: remove it or choose another path")
    if not (out / MANIFEST).is_file():
        raise SqftError(
            f"output '{out}' has no {MANIFEST}, so sqft did not write it: --overwrite replaces only sqft "
            "artifacts; choose another path or remove it yourself"
        )
    for source in inputs:
        if source is not None and _contains(out, source):
            raise SqftError(
                f"output '{out}' is or contains the input '{source}': --overwrite would delete the input; "
                "choose another output path"
            )
    return out


def _contains(directory: Path, source: str | os.PathLike) -> bool:
    """Whether a local path `source` is `directory` or lies inside it (a hub id never does)."""
    src = Path(source)
    if not src.exists():
        return False
    d, s = directory.resolve(), src.resolve()
    return s == d or d in s.parents


def _sibling(out: Path, kind: str) -> str:
    """Name prefix of a temporary sibling of `out`: `.NAME.tmp-PID-` (new content), `.NAME.old-PID` (old)."""
    return f".{out.name}.{kind}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def clean_stale_siblings(out: Path) -> None:
    """Remove (or restore) the temporary siblings a killed run left beside `out`.

    `.NAME.tmp-PID-*` is an unfinished new output: removed once process PID is gone. `.NAME.old-PID` is a
    previous output moved aside in the instant before the new one was moved in: put back when OUTPUT is
    missing (the run died between the two renames), removed otherwise. Siblings of live processes (another
    run on the same output) are left alone; names without a PID (older sqft) are only named in a warning.
    """
    parent = out.resolve().parent
    if not parent.is_dir():
        return
    for path in sorted(parent.glob(f".{glob.escape(out.name)}.*-*")):
        kind, _, rest = path.name[len(out.name) + 2 :].partition("-")
        if kind not in ("tmp", "old"):
            continue
        pid = rest.split("-")[0]
        if not pid.isdigit():
            log.warning("a temporary directory of an earlier run lies beside the output: %s", path)
        elif _pid_alive(int(pid)):
            continue
        elif kind == "old" and not out.exists():
            log.warning("restoring %s from %s, left by a run killed while replacing it", out, path.name)
            os.replace(path, out)
        else:
            log.warning("removing %s, left by a killed run", path)
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_output(
    output: str | os.PathLike, overwrite: bool = False, inputs: Iterable[str | os.PathLike | None] = ()
) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `output`, on any error it is removed.

    The old output (with `overwrite`, see `check_output`) is moved aside and deleted only after the new one is
    in place; a run killed between the two renames is repaired by the next one (`clean_stale_siblings`).
    """
    out = check_output(output, overwrite, inputs)
    tmp = Path(tempfile.mkdtemp(prefix=_sibling(out, "tmp") + "-", dir=out.resolve().parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    check_output(out, overwrite, inputs)  # the path may have changed during the work
    old = None
    if out.exists():
        old = out.with_name(_sibling(out, "old"))
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def free_disk_bytes(directory: str | os.PathLike) -> int:
    """Bytes free for this user on the filesystem holding `directory`."""
    return shutil.disk_usage(directory).free


def check_writable(output: str | os.PathLike, need_bytes: int = 0) -> Path:
    """Refuse, before any work, an output whose directory cannot be written or lacks room for `need_bytes`.

    The check creates (and at once removes) an empty temporary sibling: permission bits alone say nothing for
    root, or on a read-only filesystem; named as `atomic_output`'s, a kill in between leaves nothing that the
    next run does not clean.
    """
    out = Path(output)
    parent = out.resolve().parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=_sibling(out, "tmp") + "-probe", dir=parent))
    except OSError as e:
        raise SqftError(
            f"cannot write output '{out}': its directory '{parent}' is not writable ({e.strerror or e}); "
            "choose another --output"
        ) from e
    free = free_disk_bytes(parent)
    if need_bytes and free < need_bytes + DISK_MARGIN_BYTES:
        raise SqftError(
            f"output '{out}' needs about {need_bytes / 2**30:.2f} GiB but '{parent}' has only "
            f"{free / 2**30:.2f} GiB free: free some space or choose another --output"
        )
    return out


_SAMPLES, _SAMPLE_BYTES = 32, 4096  # bytes of tensor data hashed per weights file, besides its header


def _file_identity(h: Any, f: Path) -> None:
    """Hash a weights file's name, size, safetensors header and evenly spaced samples of its data."""
    size = f.stat().st_size
    h.update(f"{f.name}\0{size}\0".encode())
    start = 0
    if f.suffix == ".safetensors":
        raw, _ = safetensors_header(f)
        h.update(raw)
        start = 8 + len(raw)
    with f.open("rb") as fh:
        for i in range(_SAMPLES):
            fh.seek(start + (size - start) * i // _SAMPLES)
            h.update(fh.read(_SAMPLE_BYTES))


def fingerprint(source: str | os.PathLike | None) -> str | None:
    """A cheap, stable identity of a model or adapter: sha256 over its weight files' names, sizes, safetensors
    headers and 32 evenly spaced 4 KiB samples of their tensor data (a pruned, quantized or re-trained copy
    differs in every sample; a copy elsewhere is the same). None for a hub id or a source without weights."""
    if source is None:
        return None
    p = Path(source)
    files = [p] if p.is_file() else sorted(p.glob("*.safetensors")) if p.is_dir() else []
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        _file_identity(h, f)
    return h.hexdigest()[:32]


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
    import transformers  # heavy: only when a manifest is written

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
    """Write `sqft.json`: stage, full config, parent artifact (see `parent_reference`) and its `fingerprint`,
    versions and measured figures."""
    d = Path(directory)
    manifest = {
        "stage": stage,
        "config": _jsonable(config),
        "parent": None if parent is None else parent_reference(parent),
        "parent_fingerprint": fingerprint(parent),
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
    manifest = read_json_file(p, "manifest")
    if not isinstance(manifest, dict):
        raise SqftError(f"manifest '{p}' is not a JSON object: the artifact is damaged, re-run its stage")
    return manifest


def dir_size_bytes(directory: str | os.PathLike) -> int:
    """Bytes of the weight files in a directory (what a user downloads to run the model)."""
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file() and p.name != MANIFEST)


class Stopwatch:
    """Wall time and peak memory of a stage (CUDA peak when on GPU, else process max RSS)."""

    def __init__(self, device: str | None = None) -> None:
        self.device = device or "cpu"

    def __enter__(self) -> Stopwatch:
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.peak_memory_bytes = peak_memory_bytes(self.device)


def peak_memory_bytes(device: str = "cpu") -> int:
    """Peak memory: CUDA allocator peak on a GPU, the process's max RSS on the CPU."""
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
