"""Hugging Face → llama.cpp: which architectures map, their tensor names and their metadata keys.

Only what llama.cpp runs exactly as transformers does is mapped: Llama (and Mistral without a sliding window:
llama.cpp runs it as `llama`) and Qwen2 (without a sliding window). Anything else — another architecture, a RoPE
scaling llama.cpp would compute differently, a sliding window — is refused by `check_architecture` before a file is
written.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from sqft.errors import SqftError

__all__ = [
    "ArchSpec",
    "ARCHS",
    "check_architecture",
    "arch_spec",
    "gguf_tensor_name",
    "head_counts",
    "rope_parameters",
    "arch_metadata",
    "llama3_rope_factors",
]


@dataclass(frozen=True)
class ArchSpec:
    gguf_arch: str  # llama.cpp's architecture name (the metadata key prefix)
    permute_qk: bool  # llama.cpp's Llama kernels rotate adjacent pairs: q/k rows are reordered


ARCHS: dict[str, ArchSpec] = {
    "llama": ArchSpec("llama", permute_qk=True),
    "mistral": ArchSpec("llama", permute_qk=True),
    "qwen2": ArchSpec("qwen2", permute_qk=False),
}

_BLOCK = re.compile(r"model\.layers\.(\d+)\.(.+)")
_BLOCK_NAMES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_TOP_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}


def rope_parameters(config: dict[str, Any]) -> dict[str, Any]:
    """RoPE settings of a config, from transformers 5's `rope_parameters` or the older top-level keys."""
    rp = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    rp.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    rp.setdefault("rope_type", rp.pop("type", "default"))
    return rp


def arch_spec(config: dict[str, Any]) -> ArchSpec:
    model_type = config.get("model_type")
    if model_type not in ARCHS:
        raise SqftError(
            f"sqft does not export the architecture '{model_type}' to GGUF: it maps {', '.join(ARCHS)}"
        )
    return ARCHS[model_type]


def check_architecture(config: dict[str, Any]) -> ArchSpec:
    """The mapping of a config's architecture; SqftError for anything llama.cpp would not run the same way."""
    spec = arch_spec(config)
    rope = rope_parameters(config)
    if rope["rope_type"] not in ("default", "linear", "llama3"):
        raise SqftError(
            f"RoPE scaling '{rope['rope_type']}' is not exported to GGUF (sqft maps none, linear and llama3)"
        )
    window = config.get("sliding_window")
    uses_window = config.get("use_sliding_window", config.get("model_type") == "mistral")
    if window is not None and uses_window and window < config.get("max_position_embeddings", 0):
        raise SqftError(
            f"the model attends through a sliding window of {window} tokens, which llama.cpp's "
            f"'{spec.gguf_arch}' does not: the export would compute something else beyond {window} tokens"
        )
    if config.get("mlp_bias"):
        raise SqftError("MLP biases (mlp_bias=true) are not part of llama.cpp's Llama architecture")
    return spec


def gguf_tensor_name(hf_name: str) -> str:
    """`model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight` (SqftError for an unmapped tensor)."""
    module, _, kind = hf_name.rpartition(".")
    m = _BLOCK.fullmatch(module)
    if m and m.group(2) in _BLOCK_NAMES:
        return f"blk.{m.group(1)}.{_BLOCK_NAMES[m.group(2)]}.{kind}"
    if module in _TOP_NAMES:
        return f"{_TOP_NAMES[module]}.{kind}"
    raise SqftError(f"tensor '{hf_name}' has no llama.cpp name: the model is not a plain Llama-family model")


def head_counts(config: dict[str, Any]) -> tuple[int, int, int]:
    """(heads, kv heads, head_dim) of a config."""
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    return n_head, n_kv, head_dim


def llama3_rope_factors(rope: dict[str, Any], head_dim: int) -> torch.Tensor:
    """llama.cpp's `rope_freqs` (head_dim/2,) fp32 for Llama 3.1-style RoPE: HF's inv_freq = base's / factor."""
    base = rope.get("rope_theta", 10000.0)
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_ctx = rope.get("original_max_position_embeddings", 8192)
    wavelen = 2 * math.pi / freqs
    smooth = (old_ctx / wavelen - low) / (high - low)
    mid = 1 / ((1 - smooth) / factor + smooth)
    out = torch.where(wavelen < old_ctx / high, torch.ones_like(freqs), mid)
    return torch.where(wavelen > old_ctx / low, torch.full_like(freqs, factor), out)


def arch_metadata(config: dict[str, Any], spec: ArchSpec) -> list[tuple[str, Any, str]]:
    """The architecture keys llama.cpp reads, as (key, value, type) with type u32 / f32, in its converter's order."""
    a = spec.gguf_arch
    n_head, n_kv, head_dim = head_counts(config)
    rope = rope_parameters(config)
    kv: list[tuple[str, Any, str]] = [
        (f"{a}.block_count", config["num_hidden_layers"], "u32"),
        (f"{a}.context_length", config["max_position_embeddings"], "u32"),
        (f"{a}.embedding_length", config["hidden_size"], "u32"),
        (f"{a}.feed_forward_length", config["intermediate_size"], "u32"),
        (f"{a}.attention.head_count", n_head, "u32"),
        (f"{a}.attention.head_count_kv", n_kv, "u32"),
        (f"{a}.rope.freq_base", float(rope["rope_theta"]), "f32"),
        (f"{a}.attention.layer_norm_rms_epsilon", float(config["rms_norm_eps"]), "f32"),
    ]
    if rope["rope_type"] == "linear":
        kv += [
            (f"{a}.rope.scaling.type", "linear", "str"),
            (f"{a}.rope.scaling.factor", rope["factor"], "f32"),
        ]
    if head_dim != config["hidden_size"] // n_head:
        kv += [
            (f"{a}.attention.key_length", head_dim, "u32"),
            (f"{a}.attention.value_length", head_dim, "u32"),
        ]
    if a == "llama":
        kv += [
            (f"{a}.vocab_size", config["vocab_size"], "u32"),
            (f"{a}.rope.dimension_count", head_dim, "u32"),
        ]
    return kv
