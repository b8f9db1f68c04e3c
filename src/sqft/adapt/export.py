"""Adapter files (SPEC §3): PEFT layout plus sqft's elastic description; load, extract sub-adapters.

A directory holds
    adapter_config.json          PEFT's LoraConfig (r, lora_alpha, target_modules, rank_pattern, alpha_pattern)
    adapter_model.safetensors    base_model.model.<module>.lora_A.weight (r, in) / lora_B.weight (out, r)
    elastic_adapter_config.json  sqft: the AdaptConfig, rank of each module, NLS groups {name: {modules, space}},
                                 the base's fingerprint and (SparsePEFT) the mask's (`sqft.adapt.provenance`)
    nls_stats.json               NLS statistics (super-adapters trained with NLS)
    qa_params.safetensors        frozen INT4 scales/zeros (QA on the fp16 base only: qa_base fp16, gptq-residual)
Plain LoRA/NLS adapters load in vanilla PEFT (`PeftModel.from_pretrained`); per-module ranks use
`rank_pattern`, with `alpha_pattern` = α·r/r_max so that PEFT's scaling α_m/r_m equals α/r_max.
SparsePEFT / QA adapters get peft_type `SQFT_SPARSE_LORA` / `SQFT_QA_LORA`, which vanilla PEFT refuses
instead of silently applying them as dense LoRA.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from sqft.adapt.config import AdaptConfig
from sqft.adapt.equations import QAParams
from sqft.adapt.inject import adapter_config_of, adapter_layers, groups_of, inject_adapters
from sqft.adapt.layer import is_quant_linear
from sqft.adapt.provenance import check_mask, mask_fingerprint
from sqft.artifacts import fingerprint
from sqft.errors import SqftError
from sqft.files import load_safetensors, read_json_file, safetensors_header
from sqft.modeling.structure import find_target_linears

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "ELASTIC_CONFIG",
    "save_adapter",
    "load_adapter",
    "read_elastic_config",
    "read_adapt_config",
    "weight_dtype",
    "elastic_space",
    "extract_subadapter",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ELASTIC_CONFIG = "elastic_adapter_config.json"
QA_PARAMS = "qa_params.safetensors"
PEFT_TYPES = {
    "lora": "LORA",
    "sparsepeft": "SQFT_SPARSE_LORA",
    "qa-sparsepeft": "SQFT_QA_LORA",
    "qa-lora": "SQFT_QA_LORA",
}


def _key(name: str, which: str) -> str:
    return f"base_model.model.{name}.lora_{which}.weight"


def _peft_config(cfg: AdaptConfig, ranks: Mapping[str, int], base: str | None) -> dict[str, Any]:
    rank_pattern = {n: r for n, r in ranks.items() if r != cfg.r_max}
    return {
        "peft_type": PEFT_TYPES[cfg.variant],
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": cfg.r_max,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": sorted(ranks),
        "rank_pattern": rank_pattern,
        "alpha_pattern": {n: cfg.alpha * r / cfg.r_max for n, r in rank_pattern.items()},
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
    }


def _write(
    directory: Path,
    cfg: AdaptConfig,
    tensors: dict[str, torch.Tensor],
    ranks: Mapping[str, int],
    groups: Mapping[str, list[str]],
    qa_tensors: dict[str, torch.Tensor] | None,
    base: str | None,
    provenance: Mapping[str, Any],
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(directory / ADAPTER_WEIGHTS)
    )
    (directory / ADAPTER_CONFIG).write_text(json.dumps(_peft_config(cfg, ranks, base), indent=2) + "\n")
    elastic = {
        "format": "sqft-adapter/1",
        "adapt_config": dataclasses.asdict(cfg),
        "module_ranks": dict(ranks),
        "groups": {g: {"modules": list(ms), "space": list(cfg.ranks)} for g, ms in groups.items()},
        "qa_params_file": QA_PARAMS if qa_tensors else None,
        "base_model": base,
        "base_fingerprint": provenance.get("base_fingerprint"),
        "mask_fingerprint": provenance.get("mask_fingerprint"),
        "qa_int4_fingerprint": provenance.get("qa_int4_fingerprint"),
        "base_dtype": provenance.get("base_dtype"),
    }
    (directory / ELASTIC_CONFIG).write_text(json.dumps(elastic, indent=2) + "\n")
    if qa_tensors:
        save_file({k: v.contiguous().cpu() for k, v in qa_tensors.items()}, str(directory / QA_PARAMS))


def _qa_tensors(model: nn.Module, cfg: AdaptConfig) -> dict[str, torch.Tensor] | None:
    if not cfg.on_fp16_base:
        return None  # gptq: the INT4 base holds its own scales and zeros
    out = {}
    for name, layer in adapter_layers(model).items():
        out[f"{name}.scale"], out[f"{name}.zero"] = layer.qa_scale, layer.qa_zero
        out[f"{name}.meta"] = torch.tensor([layer.qa.bits, layer.qa.group_size, int(layer.qa.sym)])
    return out


def weight_dtype(linear: nn.Module) -> str | None:
    """The dtype of a linear's weight ('bfloat16', 'float32', ...); None for an INT4 layer."""
    return None if is_quant_linear(linear) else str(linear.weight.dtype).removeprefix("torch.")


def save_adapter(
    model: nn.Module,
    directory: str | os.PathLike,
    base: str | None = None,
    stats=None,
    qa_int4: str | os.PathLike | None = None,
) -> None:
    """Save the full (super-)adapter of `model` (every module at its allocated rank); `base` and, for a QA adapter
    on the fp16 base, `qa_int4` (the INT4 model it trained with) are recorded by fingerprint."""
    cfg = adapter_config_of(model)
    layers = adapter_layers(model)
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        tensors[_key(name, "A")], tensors[_key(name, "B")] = layer.lora_A, layer.lora_B
    ranks = {n: layer.r_max for n, layer in layers.items()}
    provenance = {"base_fingerprint": fingerprint(base), "mask_fingerprint": mask_fingerprint(model)}
    provenance["qa_int4_fingerprint"] = fingerprint(qa_int4) if cfg.on_fp16_base else None
    provenance["base_dtype"] = weight_dtype(next(iter(layers.values())).base_layer) if layers else None
    _write(Path(directory), cfg, tensors, ranks, groups_of(model), _qa_tensors(model, cfg), base, provenance)
    if stats is not None:
        stats.save(directory)


def read_elastic_config(adapter_dir: str | os.PathLike) -> dict[str, Any]:
    """The sqft description of an adapter directory; a plain PEFT LoRA directory is described on the fly."""
    d = Path(adapter_dir)
    if not d.is_dir():
        raise SqftError(f"adapter '{d}' is not a directory")
    if not (d / ADAPTER_WEIGHTS).is_file():
        raise SqftError(f"'{d}' is not an adapter directory: it needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    safetensors_header(d / ADAPTER_WEIGHTS)  # a damaged weights file fails here, before any model is loaded
    if (d / ELASTIC_CONFIG).is_file():
        return _checked_meta(d, read_json_file(d / ELASTIC_CONFIG, "adapter description"))
    if not (d / ADAPTER_CONFIG).is_file():
        raise SqftError(f"'{d}' is not an adapter directory: it needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    peft = read_json_file(d / ADAPTER_CONFIG, "adapter config")
    if not isinstance(peft, dict) or not isinstance(peft.get("r"), int) or "lora_alpha" not in peft:
        raise SqftError(
            f"adapter config '{d / ADAPTER_CONFIG}' is not a PEFT LoRA config (no r / lora_alpha)"
        )
    if peft.get("peft_type") != "LORA":
        raise SqftError(
            f"adapter '{d}' has peft_type {peft.get('peft_type')!r}: only LoRA adapters are supported"
        )
    shapes = {k: v.shape for k, v in load_safetensors(d / ADAPTER_WEIGHTS).items()}
    ranks = {
        k[len("base_model.model.") : -len(".lora_A.weight")]: s[0]
        for k, s in shapes.items()
        if k.endswith(".lora_A.weight")
    }
    if not ranks:
        raise SqftError(f"'{d / ADAPTER_WEIGHTS}' holds no LoRA tensors (*.lora_A.weight)")
    r_max = max(ranks.values())
    alpha = peft["lora_alpha"] * r_max / peft["r"]  # keep PEFT's scaling of the widest module
    suffixes = tuple(sorted({n.rsplit(".", 1)[-1] for n in ranks}))
    cfg = AdaptConfig(
        adapter="lora", r_max=r_max, alpha=alpha, dropout=peft.get("lora_dropout", 0.0), targets=suffixes
    )
    return {
        "adapt_config": dataclasses.asdict(cfg),
        "module_ranks": ranks,
        "groups": {},
        "qa_params_file": None,
    }


def _checked_meta(d: Path, meta: Any) -> dict[str, Any]:
    """An elastic description with the keys and types every reader relies on, or one SqftError."""
    ok = (
        isinstance(meta, dict)
        and isinstance(meta.get("adapt_config"), dict)
        and isinstance(meta.get("module_ranks"), dict)
        and isinstance(meta.get("groups"), dict)
        and all(isinstance(g, dict) and "modules" in g and "space" in g for g in meta["groups"].values())
    )
    if not ok:
        raise SqftError(
            f"adapter description '{d / ELASTIC_CONFIG}' lacks adapt_config / module_ranks / groups: the adapter "
            "is damaged or was not written by sqft; re-run sqft finetune"
        )
    return meta


def _tensor(tensors: Mapping[str, torch.Tensor], key: str, d: Path) -> torch.Tensor:
    if key not in tensors:
        raise SqftError(f"adapter '{d}': {ADAPTER_WEIGHTS} has no tensor '{key}': the adapter is damaged")
    return tensors[key]


def _adapt_config(meta: Mapping[str, Any]) -> AdaptConfig:
    c = dict(meta["adapt_config"])
    c["ranks"], c["targets"] = tuple(c.get("ranks") or ()), tuple(c.get("targets") or ())
    try:
        return AdaptConfig(**c)
    except (TypeError, SqftError) as e:
        raise SqftError(f"the adapter's adapt_config is not valid ({e}): the adapter is damaged") from e


def read_adapt_config(adapter_dir: str | os.PathLike) -> AdaptConfig:
    """The `AdaptConfig` an adapter was trained with (checked like `load_adapter` checks it)."""
    return _adapt_config(read_elastic_config(adapter_dir))


def _load_qa(d: Path, meta: Mapping[str, Any]) -> dict[str, QAParams] | None:
    if not meta.get("qa_params_file"):
        return None
    t = load_safetensors(d / meta["qa_params_file"])
    names = {k.rsplit(".", 1)[0] for k in t}
    return {
        n: QAParams(
            t[f"{n}.scale"], t[f"{n}.zero"], *[int(v) for v in t[f"{n}.meta"][:2]], bool(t[f"{n}.meta"][2])
        )
        for n in names
    }


def load_adapter(base_model: nn.Module, adapter_dir: str | os.PathLike, force: bool = False) -> nn.Module:
    """Inject the adapter of `adapter_dir` into `base_model` (in place) and load its weights; returns the model.

    A SparsePEFT adapter's recorded mask must equal the base's zeros (`provenance.check_mask`), unless `force`.
    """
    d = Path(adapter_dir)
    meta = read_elastic_config(d)
    cfg = _adapt_config(meta)
    ranks = {n: int(r) for n, r in meta["module_ranks"].items()}
    have = set(find_target_linears(base_model, cfg.targets))
    if have != set(ranks):
        extra, missing = sorted(set(ranks) - have), sorted(have - set(ranks))
        raise SqftError(
            f"adapter '{d}' does not match this base model: modules not in the model {extra[:3]}, model targets "
            f"without adapter weights {missing[:3]} — use the base model the adapter was trained on"
        )
    inject_adapters(base_model, cfg, _load_qa(d, meta), module_ranks=ranks)
    check_mask(meta, d, base_model, force)
    tensors = load_safetensors(d / ADAPTER_WEIGHTS)
    with torch.no_grad():
        for name, layer in adapter_layers(base_model).items():
            A, B = _tensor(tensors, _key(name, "A"), d), _tensor(tensors, _key(name, "B"), d)
            if A.shape != layer.lora_A.shape or B.shape != layer.lora_B.shape:
                raise SqftError(
                    f"adapter '{d}': '{name}' has shapes {tuple(A.shape)}/{tuple(B.shape)}, "
                    f"the model needs {tuple(layer.lora_A.shape)}/{tuple(layer.lora_B.shape)}"
                )
            layer.lora_A.copy_(A)
            layer.lora_B.copy_(B)
    return base_model.eval()


def elastic_space(source: str | os.PathLike | nn.Module) -> dict[str, list[int]]:
    """Group name → rank space (descending, as saved) of an adapter directory or an adapted model."""
    if isinstance(source, nn.Module):
        ranks = list(adapter_config_of(source).ranks)
        return {g: ranks for g in groups_of(source)}
    meta = read_elastic_config(source)
    return {g: list(v["space"]) for g, v in meta["groups"].items()}


def extract_subadapter(
    adapter_dir: str | os.PathLike, config: Mapping[str, int], output_dir: str | os.PathLike
) -> dict[str, int]:
    """Write the sub-adapter of `config` (group → rank): A[:r], B[:, :r] per module; returns module → rank."""
    d = Path(adapter_dir)
    meta = read_elastic_config(d)
    cfg = _adapt_config(meta)
    ranks = {n: int(r) for n, r in meta["module_ranks"].items()}
    groups = {g: v["modules"] for g, v in meta["groups"].items()}
    unknown, missing = sorted(set(config) - set(groups)), sorted(set(groups) - set(config))
    if unknown or missing:
        raise SqftError(
            f"configuration does not match adapter '{d}': unknown groups {unknown[:3]}, "
            f"missing groups {missing[:3]}"
        )
    for g, r in config.items():
        if int(r) not in meta["groups"][g]["space"]:
            raise SqftError(f"rank {r} for group '{g}' is not in its space {meta['groups'][g]['space']}")
        for n in groups[g]:
            ranks[n] = int(r)
    tensors = load_safetensors(d / ADAPTER_WEIGHTS)
    sub = {}
    for n, r in ranks.items():
        sub[_key(n, "A")] = _tensor(tensors, _key(n, "A"), d)[:r]  # (r, in)
        sub[_key(n, "B")] = _tensor(tensors, _key(n, "B"), d)[:, :r]  # (out, r)
    qa = load_safetensors(d / meta["qa_params_file"]) if meta.get("qa_params_file") else None
    _write(Path(output_dir), cfg.with_(adapter="lora"), sub, ranks, {}, qa, meta.get("base_model"), meta)
    return ranks
