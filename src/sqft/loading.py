"""Load any model artifact sqft writes or reads: a dense Hugging Face model, a GGUF file, or an sqft INT4
(GPTQ) checkpoint. It sits just above `sqft.quantize`, so that `sqft.modeling` (dense) never imports the INT4
format and every layer above loads through one function.
"""

from __future__ import annotations

import os

from torch import nn

from sqft.modeling import io
from sqft.modeling.io import config_dict, is_gptq_config, load_tokenizer, parse_dtype, resolve_source
from sqft.quantize.format import load_gptq_model

__all__ = ["load_model", "load_tokenizer"]


def load_model(
    source: str | os.PathLike,
    dtype: str | None = "auto",
    device: str = "cpu",
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
) -> nn.Module:
    """Load a causal LM from a hub id, a local HF directory, a GGUF file or an sqft INT4 (GPTQ) checkpoint
    (whose quantized linears are `QuantLinear`s)."""
    where, gguf = resolve_source(source, gguf_file)
    cfg = None if gguf else config_dict(where)
    if is_gptq_config(cfg):
        torch_dtype = parse_dtype(dtype)
        io.check_fits(where, cfg, torch_dtype, device)
        return load_gptq_model(where, dtype=torch_dtype, device=device)
    return io.load_model(source, dtype, device, gguf_file, trust_remote_code)
