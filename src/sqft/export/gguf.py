"""GGUF for llama.cpp / Ollama / LM Studio: `ExportInputs` + tokenizer in → one `.gguf` file out.

INT4 layers become Q4_1 blocks of sqft's own codes (`d = s`, `m = −s·z`, see `blocks`), never requantized; the other
2-D tensors F16 (F32 or Q8_0 on request), 1-D tensors (norms, biases) F32 as llama.cpp expects. Names, the q/k row
order and the metadata follow llama.cpp's converter (`mapping`, `tokenizer`). Everything that cannot be written
exactly is refused by `plan_gguf` before the file is opened. The file is written one tensor at a time (tensor
infos first, then each tensor's bytes as it is made), so memory stays at one tensor beyond the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sqft.errors import SqftError, require
from sqft.export.blocks import QK, permute_qk, q4_1_blocks, q4_1_params, q8_0_blocks
from sqft.export.inputs import ExportInputs, QuantizedWeight
from sqft.export.mapping import (
    ArchSpec,
    arch_metadata,
    check_architecture,
    gguf_tensor_name,
    head_counts,
    llama3_rope_factors,
    rope_parameters,
)
from sqft.export.tokenizer import GGUFVocab, gguf_vocab

__all__ = ["FLOAT_TYPES", "TensorPlan", "GGUFPlan", "plan_gguf", "write_gguf"]

FLOAT_TYPES = ("f16", "f32", "q8_0")  # what floating-point 2-D tensors become
_FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0", "q4_1": "MOSTLY_Q4_1"}
_ELEMENT_BYTES = {"F32": (4, 1), "F16": (2, 1), "Q8_0": (34, 32), "Q4_1": (20, 32)}  # bytes per elements


@dataclass
class TensorPlan:
    name: str  # llama.cpp's
    shape: tuple[int, ...]  # (rows, cols) as torch sees it; GGUF lists it reversed (ne0 = cols)
    ggml_type: str  # F32, F16, Q8_0, Q4_1
    make: Callable[[], torch.Tensor]  # the bytes (uint8) or values (fp16 / fp32) to write

    @property
    def nbytes(self) -> int:
        per, n = _ELEMENT_BYTES[self.ggml_type]
        return int(np.prod(self.shape)) // n * per

    @property
    def stored_shape(self) -> tuple[int, ...]:
        """The shape of the array written: blocks are bytes, (rows, cols/32 · bytes per block)."""
        per, n = _ELEMENT_BYTES[self.ggml_type]
        return self.shape if n == 1 else (*self.shape[:-1], self.shape[-1] // n * per)


@dataclass
class GGUFPlan:
    arch: ArchSpec
    metadata: list[tuple[str, Any, str]]
    vocab: GGUFVocab
    tensors: list[TensorPlan]
    file_type: str
    # max |fp16(m) − (−s·z)| of each Q4_1 tensor made so far: the max |Δw| against sqft's ŵ (filled while writing)
    rounding: list[float] = field(default_factory=list)


def _qk_heads(hf_name: str, config: dict[str, Any], spec: ArchSpec) -> int | None:
    """How many heads to permute the rows of this tensor by (None: no permutation)."""
    if not spec.permute_qk:
        return None
    n_head, n_kv, _ = head_counts(config)
    if ".self_attn.q_proj." in hf_name:
        return n_head
    if ".self_attn.k_proj." in hf_name:
        return n_kv
    return None


def _float_plan(name: str, t: torch.Tensor, heads: int | None, float_type: str) -> TensorPlan:
    kind = "F32" if t.dim() == 1 or float_type == "f32" else "F16"
    if float_type == "q8_0" and t.dim() == 2 and t.shape[1] % QK == 0:
        kind = "Q8_0"

    def make() -> torch.Tensor:
        x = t if heads is None else permute_qk(t, heads)
        if kind == "Q8_0":
            return q8_0_blocks(x)
        return x.to(torch.float32 if kind == "F32" else torch.float16)

    return TensorPlan(gguf_tensor_name(name), tuple(t.shape), kind, make)


def _check_int4(name: str, qw: QuantizedWeight) -> None:
    if qw.bits != 4:
        raise SqftError(
            f"'{name}' is {qw.bits}-bit: GGUF export writes 4-bit layers as Q4_1 exactly and does not requantize"
        )
    if qw.group_size % QK:
        raise SqftError(
            f"'{name}' has group size {qw.group_size}: Q4_1 blocks hold {QK} weights, so the group size must be "
            f"a multiple of {QK} (quantize with --group-size 32, 64, 128 ...)"
        )


def _q4_1_plan(name: str, qw: QuantizedWeight, heads: int | None, rounding: list[float]) -> list[TensorPlan]:
    _check_int4(name, qw)

    def make() -> torch.Tensor:
        q, scale, zero = qw.codes()  # (out, in), (out, G), (out, G)
        d, m = q4_1_params(scale, zero)
        rounding.append(float((m.float() + scale.float() * zero.float()).abs().max()))
        if heads is not None:
            q, d, m = permute_qk(q, heads), permute_qk(d, heads), permute_qk(m, heads)
        return q4_1_blocks(q, d, m)

    plans = [TensorPlan(gguf_tensor_name(f"{name}.weight"), (qw.out_features, qw.in_features), "Q4_1", make)]
    if qw.bias is not None:
        plans.append(_float_plan(f"{name}.bias", qw.bias, heads, "f32"))
    return plans


def _order(hf_name: str) -> tuple:
    """llama.cpp's converter order: embeddings, blocks in order, final norm, output head."""
    parts = hf_name.split(".")
    if parts[:2] == ["model", "layers"]:
        return (1, int(parts[2]), hf_name)
    return ({"model.embed_tokens": 0, "model.norm": 2}.get(".".join(parts[:2]), 3), 0, hf_name)


def plan_gguf(inputs: ExportInputs, tokenizer: Any, float_type: str = "f16") -> GGUFPlan:
    """Everything the file will hold, checked: any refusal (architecture, tokenizer, bit width, group size,
    an unmapped tensor) happens here, before a byte is written."""
    if float_type not in FLOAT_TYPES:
        raise SqftError(f"unknown GGUF float type '{float_type}': use one of {', '.join(FLOAT_TYPES)}")
    cfg = inputs.config
    spec = check_architecture(cfg)
    vocab = gguf_vocab(tokenizer, cfg["vocab_size"])
    plan = GGUFPlan(spec, arch_metadata(cfg, spec), vocab, [], "q4_1" if inputs.quantized else float_type)
    items: list[tuple[str, list[TensorPlan]]] = []
    for name, t in inputs.tensors.items():
        items.append((name, [_float_plan(name, t, _qk_heads(name, cfg, spec), float_type)]))
    for name, qw in inputs.quantized.items():
        items.append(
            (f"{name}.weight", _q4_1_plan(name, qw, _qk_heads(f"{name}.weight", cfg, spec), plan.rounding))
        )
    plan.tensors = [p for _, plans in sorted(items, key=lambda it: _order(it[0])) for p in plans]
    rope = rope_parameters(cfg)
    if rope["rope_type"] == "llama3":
        factors = llama3_rope_factors(rope, head_counts(cfg)[2])
        plan.tensors.insert(0, TensorPlan("rope_freqs.weight", tuple(factors.shape), "F32", lambda: factors))
    return plan


def _add_metadata(w: Any, gguf: Any, plan: GGUFPlan, name: str) -> None:
    w.add_type("model")
    w.add_name(name)
    adders = {"u32": w.add_uint32, "f32": w.add_float32, "str": w.add_string}
    for key, value, kind in plan.metadata:
        adders[kind](key, value)
    w.add_file_type(int(getattr(gguf.LlamaFileType, _FILE_TYPES[plan.file_type])))
    v = plan.vocab
    w.add_add_space_prefix(v.add_space_prefix)
    w.add_add_bos_token(v.add_bos)
    if v.add_eos:
        w.add_add_eos_token(True)
    w.add_tokenizer_model(v.model)
    w.add_tokenizer_pre(v.pre)
    w.add_token_list(v.tokens)
    w.add_token_types(v.token_types)
    w.add_token_merges(v.merges)
    special = {"bos": w.add_bos_token_id, "eos": w.add_eos_token_id}
    special |= {"unknown": w.add_unk_token_id, "padding": w.add_pad_token_id}
    for key, token_id in v.special_ids.items():
        special[key](token_id)
    if v.chat_template:
        w.add_chat_template(v.chat_template)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)


def write_gguf(
    inputs: ExportInputs, tokenizer: Any, path: str | Path, float_type: str = "f16"
) -> dict[str, Any]:
    """Write `path` (a .gguf file); returns figures: tensor count per type, bytes, max |Δw| of the Q4_1 layers."""
    gguf = require("gguf", "gguf")
    plan = plan_gguf(inputs, tokenizer, float_type)
    w = gguf.GGUFWriter(str(path), plan.arch.gguf_arch)
    _add_metadata(w, gguf, plan, inputs.name)
    for t in plan.tensors:
        qtype = getattr(gguf.GGMLQuantizationType, t.ggml_type)
        np_dtype = {"F32": np.float32, "F16": np.float16}.get(t.ggml_type, np.uint8)
        w.add_tensor_info(t.name, t.stored_shape, np.dtype(np_dtype), t.nbytes, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in plan.tensors:
        data = t.make().contiguous().cpu().numpy()
        assert data.nbytes == t.nbytes, (t.name, data.nbytes, t.nbytes)
        w.write_tensor_data(data)
    w.close()
    counts: dict[str, int] = {}
    for t in plan.tensors:
        counts[t.ggml_type] = counts.get(t.ggml_type, 0) + 1
    return {
        "file": Path(path).name,
        "file_bytes": Path(path).stat().st_size,
        "tensors": len(plan.tensors),
        "tensor_types": counts,
        "file_type": plan.file_type,
        "tokenizer_pre": plan.vocab.pre,
        "max_abs_weight_delta_q4_1": max(plan.rounding, default=0.0),
    }
