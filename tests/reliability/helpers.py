"""Helpers of the reliability suite: snapshots of files, one-line errors, subprocess runs of the CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def snapshot(*paths: Path) -> dict[str, str | None]:
    """sha256 of every file under each path (None for a path that does not exist)."""
    out: dict[str, str | None] = {}
    for p in paths:
        p = Path(p)
        if not p.exists():
            out[str(p)] = None
            continue
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def siblings(output: Path) -> list[str]:
    """Temporary or half-written siblings a stage could have left beside OUTPUT."""
    parent = output.parent
    return sorted(p.name for p in parent.glob(f".{output.name}*")) if parent.is_dir() else []


def env_with_src() -> dict[str, str]:
    """The environment for a subprocess of the CLI: this checkout's src/ and the repository first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m sqft.cli ARGV` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "sqft.cli", *argv],
        capture_output=True,
        text=True,
        env=env_with_src(),
        timeout=timeout,
    )
