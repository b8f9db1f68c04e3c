"""Load and save Hugging Face causal LMs: hub ids, local directories, GGUF files.

sqft INT4 (GPTQ) checkpoints are recognised here (`is_gptq_config`) but loaded by `sqft.loading.load_model`,
which sits above `sqft.quantize`: modeling never imports a higher layer.

Weights are read with safetensors only (no unpickling), `trust_remote_code` is off unless asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from sqft.errors import SqftError, require
from sqft.files import check_gguf, check_safetensors, read_json_file

__all__ = [
    "check_fits",
    "check_loading_info",
    "config_dict",
    "is_gptq_config",
    "load_model",
    "load_tokenizer",
    "save_model",
    "parse_dtype",
    "resolve_source",
    "weights_bytes",
]

# JSON files of a model directory that transformers parses; checked first so that a damaged one is one line
_JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")

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
        check_gguf(p)
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
        if gguf_file is not None:
            check_gguf(p / gguf_file)
        else:  # a damaged config.json, tokenizer file or weights header fails here, before any slow work
            config_dict(s)
            for name in _JSON_FILES:
                if (p / name).is_file():
                    read_json_file(p / name, "model file")
            check_safetensors(p)
        return s, gguf_file
    if not _HUB_ID.fullmatch(s):
        raise SqftError(f"model path '{s}' does not exist (and it is not a hub id like 'org/name')")
    return s, gguf_file  # a hub id: resolved (and possibly refused offline) by transformers


def config_dict(directory: str) -> dict | None:
    """A local model directory's config.json as a dict (None when there is none: a hub id, a GGUF file)."""
    p = Path(directory) / "config.json"
    if not p.is_file():
        return None
    cfg = read_json_file(p, "model config")
    if not isinstance(cfg, dict):
        raise SqftError(f"model config '{p}' is not a JSON object: the model directory is damaged")
    return cfg


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def load_tokenizer(source: str | os.PathLike, gguf_file: str | None = None, trust_remote_code: bool = False):
    """The tokenizer saved with a model (a directory, hub id or GGUF file)."""
    from transformers import AutoTokenizer

    where, gguf = resolve_source(source, gguf_file)
    kw = {"gguf_file": gguf} if gguf else {}
    try:
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code, **kw)
    except Exception as e:  # tokenizers / sentencepiece raise plain Exceptions on damaged files
        if isinstance(e, SqftError):
            raise
        raise SqftError(f"could not load the tokenizer of '{source}': {_first_line(e)}") from e
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
    """Load a dense causal LM from a hub id, a local HF directory or a GGUF file (an sqft INT4 checkpoint:
    `sqft.loading.load_model`).

    GGUF weights are dequantized to `dtype` and the model rebuilt as a plain transformers model, so it can
    be pruned, quantized and saved like any other.
    """
    from transformers import AutoModelForCausalLM  # heavy: loaded when a model is, not with sqft.modeling

    where, gguf = resolve_source(source, gguf_file)
    torch_dtype = parse_dtype(dtype)
    cfg = None if gguf else config_dict(where)
    if is_gptq_config(cfg):
        raise SqftError(f"'{source}' is an INT4 (GPTQ) checkpoint: load it with sqft.loading.load_model")
    check_fits(where, cfg, torch_dtype, device)
    if gguf:
        require("gguf", "gguf")
    kw = {"gguf_file": gguf} if gguf else {"use_safetensors": True}
    dt = (torch_dtype or torch.float32) if gguf else (torch_dtype if torch_dtype is not None else "auto")
    try:
        with _quiet_transformers():  # the load report is replaced by check_loading_info's one line
            model, info = AutoModelForCausalLM.from_pretrained(
                where,
                dtype=dt,
                trust_remote_code=trust_remote_code,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
                **kw,
            )
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        if isinstance(e, SqftError):
            raise
        raise SqftError(f"could not load model '{source}': {_first_line(e)}") from e
    check_loading_info(source, info)
    if gguf:
        model = _plain_copy(model)
    model.eval()
    return model.to(device)


def is_gptq_config(cfg: dict | None) -> bool:
    """Whether a model's config.json (as a dict) describes a GPTQ INT4 checkpoint."""
    return cfg is not None and (cfg.get("quantization_config") or {}).get("quant_method") == "gptq"


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def check_loading_info(source: str | os.PathLike, info: dict) -> None:
    """Refuse a model whose weights do not cover its config: tensors the config needs but the checkpoint lacks
    (transformers would initialise them randomly), tensors the config has no place for, or wrong shapes."""
    problems = []
    for key, what in (
        ("missing_keys", "missing"),
        ("unexpected_keys", "unexpected"),
        ("mismatched_keys", "wrong shape"),
    ):
        names = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get(key) or ())
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            problems.append(f"{len(names)} {what} ({shown})")
    if problems:
        raise SqftError(
            f"model '{source}': its weights do not match its config.json: {'; '.join(problems)}; the checkpoint "
            "is incomplete or its config was edited: re-download or re-create it"
        )


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
    need = weights_bytes(where, cfg, dtype)
    if not need:
        return
    free = free_memory_bytes(device)
    if free is not None and need > free:
        raise SqftError(
            f"model '{where}' needs about {need / 2**30:.1f} GiB on {device} but only {free / 2**30:.1f} GiB is free: "
            "load it in a smaller dtype (--dtype bfloat16), use a device with more memory, or free some"
        )


def weights_bytes(where: str, cfg: dict | None, dtype: torch.dtype | None) -> int:
    """Bytes of a local model's safetensors weights, rescaled from the checkpoint's dtype to `dtype` (INT4
    checkpoints keep their packed size); 0 when unknown (a hub id)."""
    files = list(Path(where).glob("*.safetensors")) if Path(where).is_dir() else []
    need = sum(f.stat().st_size for f in files)
    stored = _stored_dtype(cfg)
    if need and dtype is not None and stored is not None and not (cfg or {}).get("quantization_config"):
        need = need * torch.finfo(dtype).bits // torch.finfo(stored).bits
    return need


def _stored_dtype(cfg: dict | None) -> torch.dtype | None:
    name = (cfg or {}).get("dtype") or (cfg or {}).get("torch_dtype") or "auto"
    try:
        return parse_dtype(name)
    except SqftError:
        return None


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
