"""GPTQ checkpoints: write what transformers/optimum/GPTQModel read, and read them back to identical codes.

Layout: `config.json` with `quantization_config` {quant_method: "gptq", bits, group_size, sym, desc_act: false,
checkpoint_format}, a `quantize_config.json` copy for older readers, safetensors weights with per quantized
linear `qweight`, `qzeros`, `scales`, `g_idx` (see `QuantLinear`).

Zero points: `checkpoint_format="gptq"` (v1, the default, read by every GPTQ reader) stores z − 1, so it cannot
hold z = 0; sqft then quantizes with z ≥ 1 (asymmetric groups whose kept weights are all ≥ 0 use the grid
s·[−1, 2^b − 2]). `"gptq_v2"` stores z itself (no restriction; read by GPTQModel).

Standard readers also need `in` and `out` to fill whole int32 words (multiples of 32/b; 32 for 3 bits); sqft
pads the packed tensors otherwise and can read them back, but other readers will refuse such a checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sqft.errors import SqftError
from sqft.files import load_safetensors, read_json_file
from sqft.modeling.structure import layers_path
from sqft.quantize.packing import pack_zeros, unpack_zeros
from sqft.quantize.qlinear import QuantLinear

__all__ = ["FORMATS", "quantization_config", "save_gptq_model", "load_gptq_model", "replace_module"]

log = logging.getLogger(__name__)

FORMATS = ("gptq", "gptq_v2")
_WEIGHTS_INDEX = "model.safetensors.index.json"


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` in place of the submodule called `name` (full dotted name)."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def _quant_layers(model: nn.Module) -> dict[str, QuantLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantLinear)}


def quantization_config(
    model: nn.Module, checkpoint_format: str = "gptq", group_size: int | None = None
) -> dict:
    """The `quantization_config` entry describing the model's QuantLinear layers (they must agree)."""
    layers = _quant_layers(model)
    if not layers:
        raise SqftError("the model has no quantized layers: run `sqft quantize` first")
    kinds = {(m.bits, m.sym) for m in layers.values()}
    if len(kinds) > 1:
        raise SqftError(f"layers mix bit widths / symmetry {sorted(kinds)}: a GPTQ checkpoint holds one kind")
    (bits, sym) = kinds.pop()
    if group_size is None:  # the one shared size, or -1 when every layer has one group per row
        sizes = {m.group_size for m in layers.values()}
        if len(sizes) > 1 and not all(m.group_size == m.in_features for m in layers.values()):
            raise SqftError(f"layers mix group sizes {sorted(sizes)}: a GPTQ checkpoint holds one group size")
        group_size = sizes.pop() if len(sizes) == 1 else -1
    prefix = layers_path(model) + ".0."
    in_block = [n[len(prefix) :] for n in layers if n.startswith(prefix)]
    return {
        "quant_method": "gptq",
        "bits": bits,
        "group_size": group_size,
        "sym": sym,
        "desc_act": False,
        "checkpoint_format": checkpoint_format,
        "format": checkpoint_format,
        "true_sequential": True,
        "static_groups": False,
        "modules_in_block_to_quantize": [in_block],
        "meta": {"quantizer": ["sqft"]},
    }


def _state_dict_for_file(model: nn.Module, checkpoint_format: str) -> dict[str, torch.Tensor]:
    """The model's state dict with v1 zero points (z − 1) and without a tied lm_head copy."""
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for name, layer in _quant_layers(model).items():
        if checkpoint_format == "gptq":
            zero = unpack_zeros(layer.qzeros, layer.bits, layer.out_features)  # (out, G)
            if int(zero.min()) < 1:
                raise SqftError(
                    f"{name} has zero point 0, which the GPTQ v1 format cannot store: quantize with "
                    "checkpoint_format='gptq' (keeps z ≥ 1) or save as 'gptq_v2'"
                )
            sd[f"{name}.qzeros"] = pack_zeros(zero - 1, layer.bits).cpu()
    if getattr(model.config, "tie_word_embeddings", False):
        out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
        if out_emb is not None and out_emb.weight is in_emb.weight:
            sd = {k: v for k, v in sd.items() if not k.startswith("lm_head.")}
    return sd


def _warn_nonstandard(model: nn.Module) -> None:
    for name, m in _quant_layers(model).items():
        per_word = 32 // m.bits if 32 % m.bits == 0 else 32
        if m.in_features % per_word or m.out_features % per_word:
            msg = (
                "%s (%d→%d) does not fill whole int32 words at %d bits: sqft pads it, but other readers need"
            )
            log.warning(
                msg + " in/out features divisible by %d",
                name,
                m.in_features,
                m.out_features,
                m.bits,
                per_word,
            )
            return


def save_gptq_model(
    model: nn.Module,
    tokenizer: Any,
    directory: str | os.PathLike,
    checkpoint_format: str = "gptq",
    group_size: int | None = None,
) -> None:
    """Write a GPTQ checkpoint (config, quantize_config.json, safetensors, tokenizer) into `directory`."""
    from huggingface_hub import save_torch_state_dict

    if checkpoint_format not in FORMATS:
        raise SqftError(f"unknown checkpoint format '{checkpoint_format}': use one of {', '.join(FORMATS)}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    qc = quantization_config(model, checkpoint_format, group_size)
    _warn_nonstandard(model)
    save_torch_state_dict(_state_dict_for_file(model, checkpoint_format), d)
    cfg = model.config.to_dict()
    cfg["quantization_config"] = qc
    (d / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (d / "quantize_config.json").write_text(json.dumps(qc, indent=2) + "\n")
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(d)
    if tokenizer is not None:
        tokenizer.save_pretrained(d)


def _read_safetensors(d: Path) -> dict[str, torch.Tensor]:
    index = d / _WEIGHTS_INDEX
    weight_map = (
        (read_json_file(index, "weights index") or {}).get("weight_map", {}) if index.is_file() else {}
    )
    files = sorted(set(weight_map.values())) or [p.name for p in sorted(d.glob("*.safetensors"))]
    if not files:
        raise SqftError(f"'{d}' holds no .safetensors weights")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        if not (d / f).is_file():
            raise SqftError(f"'{d}': weights file '{f}' named by {_WEIGHTS_INDEX} is missing")
        sd.update(load_safetensors(d / f))
    return sd


def _check_shapes(d: Path, model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """Refuse tensors whose shape is not the model's (load_state_dict would raise a long RuntimeError)."""
    own = model.state_dict()
    wrong = sorted(k for k, v in sd.items() if k in own and tuple(own[k].shape) != tuple(v.shape))
    if wrong:
        k = wrong[0]
        raise SqftError(
            f"'{d}' does not match its config: {len(wrong)} tensor(s) of the wrong shape, e.g. {k} is "
            f"{tuple(sd[k].shape)} where the config needs {tuple(own[k].shape)}"
        )


def _build_skeleton(config: Any, dtype: torch.dtype) -> nn.Module:
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is overwritten by the checkpoint
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


def load_gptq_model(
    directory: str | os.PathLike, dtype: torch.dtype | None = None, device: str = "cpu"
) -> nn.Module:
    """Load a GPTQ checkpoint into a transformers model whose quantized linears are `QuantLinear`s."""
    from transformers import AutoConfig

    d = Path(directory)
    config = AutoConfig.from_pretrained(d)
    qc = dict(getattr(config, "quantization_config", None) or {})
    if qc.get("quant_method") != "gptq":
        raise SqftError(f"'{d}' is not a GPTQ checkpoint (quantization_config.quant_method != 'gptq')")
    if qc.get("desc_act"):
        raise SqftError(f"'{d}' uses act-order (desc_act=true), which sqft does not read")
    fmt = qc.get("checkpoint_format", qc.get("format", "gptq"))
    if fmt not in FORMATS:
        raise SqftError(f"'{d}' has checkpoint_format '{fmt}': sqft reads {', '.join(FORMATS)}")
    del config.quantization_config
    if not isinstance(qc.get("bits"), int):
        raise SqftError(f"'{d}': quantization_config.bits is {qc.get('bits')!r}, not an integer")
    bits, group_size, sym = int(qc["bits"]), int(qc.get("group_size", -1)), bool(qc.get("sym", True))
    dtype = dtype or getattr(config, "dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    model = _build_skeleton(config, dtype)
    sd = _read_safetensors(d)
    modules = dict(model.named_modules())
    for name in sorted(k[: -len(".qweight")] for k in sd if k.endswith(".qweight")):
        lin = modules.get(name)
        if not isinstance(lin, nn.Linear) or f"{name}.qzeros" not in sd:
            raise SqftError(
                f"'{d}' does not match its config: INT4 layer '{name}' has no linear in the model its config "
                "describes (or no qzeros): the checkpoint is damaged or its config was edited"
            )
        layer = QuantLinear(
            lin.in_features, lin.out_features, bits, group_size, sym, bias=f"{name}.bias" in sd
        )
        if fmt == "gptq":  # v1 stores z − 1
            zero = unpack_zeros(sd[f"{name}.qzeros"], bits, lin.out_features) + 1
            sd[f"{name}.qzeros"] = pack_zeros(zero, bits)
        replace_module(model, name, layer)
    _check_shapes(d, model, sd)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    tied = getattr(config, "tie_word_embeddings", False)
    missing = [k for k in missing if not (tied and k.startswith("lm_head."))]
    if missing or unexpected:
        raise SqftError(
            f"'{d}' does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if tied:
        model.tie_weights()
    return model.eval().to(device)
