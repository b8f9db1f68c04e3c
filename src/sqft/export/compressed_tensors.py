"""compressed-tensors for vLLM: `ExportInputs` + tokenizer in → a Hugging Face directory out.

INT-b models (asymmetric or symmetric, group-wise or per channel) are written in the `pack-quantized` format, the
one llm-compressor writes and vLLM reads: per quantized linear

    weight_packed      int32 (out, in·b/32)   codes packed along `in`, element i at bits [i·b, i·b + b)
    weight_scale       fp16  (out, G)
    weight_zero_point  int32 (out·b/32, G)    asymmetric only, packed along `out`
    weight_shape       int64 (2,)             [out, in]

compressed-tensors stores signed codes offset by 2^(b−1) and packs `code + 2^(b−1)`, which is sqft's unsigned code
itself (and likewise for the zero point), so both packings are sqft's GPTQ buffers transposed, bit for bit, and
`(q − z)·s` decompresses to sqft's ŵ. A symmetric sqft layer (z = 2^(b−1) everywhere) has no zero point.

A floating-point (dense or pruned) model is written as plain dense safetensors whose `quantization_config` only
states the sparsity (`sparsity_config`, format `dense`): compressed-tensors' sparse storage formats were removed
in 0.15, and vLLM no longer has 2:4 kernels, so sqft does not depend on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from sqft.errors import SqftError, require
from sqft.export.inputs import ExportInputs, QuantizedWeight

__all__ = [
    "FORMAT",
    "check_compressed_tensors",
    "packed_tensors",
    "is_2_4",
    "quantization_config",
    "write_compressed_tensors",
]

FORMAT = "pack-quantized"
_MIN_SPARSITY = 0.01  # below this fraction of zeros a model is not called sparse


def packed_tensors(name: str, qw: QuantizedWeight) -> dict[str, torch.Tensor]:
    """The pack-quantized tensors of one INT-b linear (see the module docstring), from sqft's buffers."""
    out = {
        f"{name}.weight_packed": qw.qweight.T.contiguous(),  # (in·b/32, out) → (out, in·b/32)
        f"{name}.weight_scale": qw.scales.T.contiguous(),  # (G, out) → (out, G)
        f"{name}.weight_shape": torch.tensor([qw.out_features, qw.in_features], dtype=torch.int64),
    }
    if not qw.sym:
        out[f"{name}.weight_zero_point"] = qw.qzeros.T.contiguous()  # (G, out·b/32) → (out·b/32, G)
    if qw.bias is not None:
        out[f"{name}.bias"] = qw.bias
    return out


def _check_symmetric(name: str, qw: QuantizedWeight) -> None:
    if qw.sym:
        _, _, zero = qw.codes()
        if not bool((zero == 2 ** (qw.bits - 1)).all()):
            raise SqftError(f"'{name}' is marked symmetric but its zero points are not {2 ** (qw.bits - 1)}")


def is_2_4(w: torch.Tensor) -> bool:
    """Do every 4 consecutive inputs of every row (out, in) hold at least 2 zeros?"""
    return w.shape[-1] % 4 == 0 and bool(((w.reshape(w.shape[0], -1, 4) == 0).sum(-1) >= 2).all())


def _target_weights(inputs: ExportInputs) -> Iterator[tuple[str, torch.Tensor]]:
    """The weight (dequantized for INT-b) of every linear inside the decoder blocks, one at a time."""
    for name, qw in inputs.quantized.items():
        yield name, qw.dequantize()
    for k, t in inputs.tensors.items():
        module = k.removesuffix(".weight")
        if k.endswith(".weight") and module in inputs.linears and ".layers." in module:
            yield module, t


def _sparsity_config(inputs: ExportInputs) -> dict[str, Any]:
    zeros = total = 0
    two_four = True
    names = []
    for name, w in _target_weights(inputs):
        names.append(name)
        zeros += int((w == 0).sum())
        total += w.numel()
        two_four = two_four and is_2_4(w)
    if total == 0 or zeros / total < _MIN_SPARSITY:
        return {}
    return {
        "format": "dense",
        "global_sparsity": zeros / total,
        "sparsity_structure": "2:4" if two_four else "unstructured",
        "targets": ["Linear"],
        "ignore": sorted(set(inputs.linears) - set(names)),
    }


def _weight_args(ct: Any, inputs: ExportInputs) -> Any:
    """One scheme for every INT layer: group-wise with their one group size, or per channel (one group per row)."""
    layers = inputs.quantized.values()
    kinds = {(qw.bits, qw.sym) for qw in layers}
    sizes = {qw.group_size for qw in layers}
    channel = len(sizes) > 1 and all(qw.groups == 1 for qw in layers)
    if len(kinds) > 1 or (len(sizes) > 1 and not channel):
        raise SqftError(f"the INT layers mix bits / symmetry {sorted(kinds)} or group sizes {sorted(sizes)}")
    (bits, sym) = kinds.pop()
    return ct.quantization.QuantizationArgs(
        num_bits=bits,
        type="int",
        symmetric=sym,
        strategy="channel" if channel else "group",
        group_size=None if channel else sizes.pop(),
    )


def quantization_config(inputs: ExportInputs) -> dict[str, Any]:
    """The `quantization_config` of config.json that transformers' and vLLM's compressed-tensors readers take."""
    ct = require("compressed_tensors", "export")
    head = {"quant_method": "compressed-tensors", "version": ct.__version__}
    sparsity = _sparsity_config(inputs)
    if not inputs.quantized:
        return {**head, "format": "dense", "sparsity_config": sparsity, "config_groups": {}, "ignore": []}
    q = ct.quantization
    scheme = q.QuantizationScheme(targets=["Linear"], weights=_weight_args(ct, inputs))
    qc = q.QuantizationConfig(
        config_groups={"group_0": scheme},
        format=FORMAT,
        quantization_status=q.QuantizationStatus.COMPRESSED,
        ignore=sorted(set(inputs.linears) - set(inputs.quantized)),
    )
    return {
        **head,
        "sparsity_config": sparsity,
        "transform_config": {},
        **qc.model_dump(exclude={"quant_method"}),
    }


def check_compressed_tensors(inputs: ExportInputs) -> None:
    """Refuse what pack-quantized cannot hold exactly: mixed schemes, a 'symmetric' layer with other zeros."""
    ct = require("compressed_tensors", "export")
    for name, qw in inputs.quantized.items():
        _check_symmetric(name, qw)
    if inputs.quantized:
        _weight_args(ct, inputs)


def write_compressed_tensors(inputs: ExportInputs, tokenizer: Any, directory: str | Path) -> dict[str, Any]:
    """Write config.json, model.safetensors and the tokenizer into `directory`; returns figures."""
    check_compressed_tensors(inputs)
    qcfg = quantization_config(inputs)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in inputs.tensors.items()}
    for name, qw in inputs.quantized.items():
        tensors.update(packed_tensors(name, qw))
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    config = {**inputs.config, "quantization_config": qcfg}
    (d / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(d)
    sparsity = qcfg.get("sparsity_config") or {}
    return {
        "format": qcfg.get("format"),
        "quantized_layers": len(inputs.quantized),
        "sparsity": sparsity.get("global_sparsity", 0.0),
        "sparsity_structure": sparsity.get("sparsity_structure"),
        "file_bytes": (d / "model.safetensors").stat().st_size,
    }
