"""Load and save Hugging Face causal LMs: hub ids, local directories, GGUF files, sqft INT4 checkpoints.

Weights are read with safetensors only (no unpickling), `trust_remote_code` is off unless asked for.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import torch
from torch import nn

from sqft.errors import SqftError, require

__all__ = ["check_fits", "load_model", "load_tokenizer", "save_model", "parse_dtype", "resolve_source"]

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """'bf16' / 'float16' / torch.dtype → torch.dtype; 'auto' or None → None (the checkpoint's own dtype)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return None
    if dtype not in _DTYPES:
        raise SqftError(f"unknown dtype '{dtype}': use one of auto, {', '.join(sorted(set(_DTYPES)))}")
    return _DTYPES[dtype]


def resolve_source(source: str | os.PathLike, gguf_file: str | None = None) -> tuple[str, str | None]:
    """Split a model source into (directory or hub id, gguf file name) and check that it can exist.

    A path to a `.gguf` file is accepted as well as a directory plus `gguf_file`.
    """
    s = str(source)
    p = Path(s)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise SqftError(f"GGUF file '{s}' does not exist")
        return str(p.parent), p.name
    if p.exists():
        if not p.is_dir():
            raise SqftError(
                f"model '{s}' is a file but not a .gguf file: pass a model directory or a .gguf file"
            )
        if gguf_file is None and not (p / "config.json").is_file():
            raise SqftError(
                f"model directory '{s}' has no config.json: pass a Hugging Face model directory "
                "(config.json + *.safetensors), a .gguf file, or a hub id"
            )
        if gguf_file is not None and not (p / gguf_file).is_file():
            raise SqftError(f"GGUF file '{gguf_file}' not found in '{s}'")
        if gguf_file is None:
            _config_dict(s)  # a damaged config.json fails here, before any slow work
        return s, gguf_file
    if not _HUB_ID.fullmatch(s):
        raise SqftError(f"model path '{s}' does not exist (and it is not a hub id like 'org/name')")
    return s, gguf_file  # a hub id: resolved (and possibly refused offline) by transformers


def _config_dict(directory: str) -> dict | None:
    p = Path(directory) / "config.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SqftError(f"'{p}' is not valid JSON ({e}): the model directory is damaged") from e


def load_tokenizer(source: str | os.PathLike, gguf_file: str | None = None, trust_remote_code: bool = False):
    """The tokenizer saved with a model (a directory, hub id or GGUF file)."""
    from transformers import AutoTokenizer

    where, gguf = resolve_source(source, gguf_file)
    kw = {"gguf_file": gguf} if gguf else {}
    tok = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    source: str | os.PathLike,
    dtype: str | torch.dtype | None = "auto",
    device: str = "cpu",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
) -> nn.Module:
    """Load a causal LM from a hub id, a local HF directory, a GGUF file or an sqft INT4 (GPTQ) checkpoint.

    GGUF weights are dequantized to `dtype` and the model rebuilt as a plain transformers model, so it can
    be pruned, quantized and saved like any other.
    """
    from transformers import AutoModelForCausalLM

    where, gguf = resolve_source(source, gguf_file)
    torch_dtype = parse_dtype(dtype)
    cfg = None if gguf else _config_dict(where)
    check_fits(where, cfg, torch_dtype, device)
    if cfg is not None and (cfg.get("quantization_config") or {}).get("quant_method") == "gptq":
        from sqft.quantize.format import load_gptq_model

        return load_gptq_model(where, dtype=torch_dtype, device=device)
    try:
        if gguf:
            require("gguf", "gguf")
            model = AutoModelForCausalLM.from_pretrained(
                where, gguf_file=gguf, dtype=torch_dtype or torch.float32, trust_remote_code=trust_remote_code
            )
            model = _plain_copy(model)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                where,
                dtype=torch_dtype if torch_dtype is not None else "auto",
                trust_remote_code=trust_remote_code,
                use_safetensors=True,
            )
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, SqftError):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SqftError(f"could not load model '{source}': {first}") from e
    model.eval()
    return model.to(device)


def free_memory_bytes(device: str) -> int | None:
    """Memory that `device` has free now: CUDA's free memory, or the host's MemAvailable; None if unknown."""
    if str(device).startswith("cuda"):
        if not torch.cuda.is_available():
            raise SqftError(f"device '{device}' was asked for but CUDA is not available: use --device cpu")
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(where: str, cfg: dict | None, dtype: torch.dtype | None, device: str) -> None:
    """Refuse, before loading, a local model whose weights cannot fit in the device's free memory.

    The need is the size of the safetensors files, rescaled from the checkpoint's dtype to the requested one
    (INT4 checkpoints keep their packed size). Hub ids are not checked (their size is unknown before download).
    """
    files = list(Path(where).glob("*.safetensors")) if Path(where).is_dir() else []
    if not files:
        return
    need = sum(f.stat().st_size for f in files)
    stored = parse_dtype((cfg or {}).get("dtype") or (cfg or {}).get("torch_dtype") or "auto")
    if dtype is not None and stored is not None and not (cfg or {}).get("quantization_config"):
        need = need * torch.finfo(dtype).bits // torch.finfo(stored).bits
    free = free_memory_bytes(device)
    if free is not None and need > free:
        raise SqftError(
            f"model '{where}' needs about {need / 2**30:.1f} GiB on {device} but only {free / 2**30:.1f} GiB is free: "
            "load it in a smaller dtype (--dtype bfloat16), use a device with more memory, or free some"
        )


def _plain_copy(model: nn.Module) -> nn.Module:
    """Rebuild a GGUF-loaded model without its `quantization_config` (transformers refuses to save those)."""
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dtype = next(model.parameters()).dtype
    plain = type(model)(config).to(dtype)
    plain.load_state_dict(model.state_dict())
    return plain


def save_model(model: nn.Module, tokenizer, directory: str | os.PathLike) -> None:
    """Save weights as safetensors plus config and tokenizer (the caller makes `directory` atomic)."""
    model.save_pretrained(directory, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
