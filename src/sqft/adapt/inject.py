"""Put adapters on a model's target linears, group them for NLS, and set active ranks (SPEC §3).

Groups (elastic ranks): `layer_qkv` — one rank per decoder layer shared by its attention projections
(q, k, v / qkv), other targets fixed at r_max (the paper's default); `module` — one group per target module;
`layer` — one group per decoder layer for all its targets. A group's name is data: `model.layers.3.qkv`,
`model.layers.3`, or the full module name.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from sqft.adapt.config import AdaptConfig
from sqft.adapt.equations import QAParams
from sqft.adapt.layer import AdapterLinear, is_quant_linear
from sqft.errors import SqftError
from sqft.modeling.structure import find_target_linears, layers_path

__all__ = [
    "ATTENTION_PROJ",
    "inject_adapters",
    "dither_seed",
    "adapter_layers",
    "group_of",
    "groups_of",
    "set_active_ranks",
    "qa_params_of",
    "codes_and_qa_params",
    "adapter_parameters",
    "named_adapter_parameters",
    "adapter_config_of",
]

ATTENTION_PROJ = ("q_proj", "k_proj", "v_proj", "qkv_proj")
CONFIG_ATTR = "sqft_adapt_config"


def group_of(name: str, prefix: str, grouping: str, elastic: bool) -> str | None:
    """The NLS group of module `name` (full name), or None when its rank is fixed at r_max."""
    if not elastic:
        return None
    layer = name[len(prefix) + 1 :].split(".")[0]
    if grouping == "module":
        return name
    if grouping == "layer":
        return f"{prefix}.{layer}"
    return f"{prefix}.{layer}.qkv" if name.rsplit(".", 1)[-1] in ATTENTION_PROJ else None


def codes_and_qa_params(module: nn.Module) -> tuple[torch.Tensor, QAParams]:
    """The codes q (out, in) int32 of an INT4 layer and its frozen (scale, zero), unpacked once."""
    q, scale, zero = module.codes()  # scale, zero: (out, G) fp32 each
    sym = bool(getattr(module, "sym", False))
    return q, QAParams(scale, zero, int(module.bits), int(module.group_size), sym)


def qa_params_of(module: nn.Module) -> QAParams:
    """The frozen (scale, zero) of an INT4 layer, shared with the QA adapter."""
    return codes_and_qa_params(module)[1]


def _qa_for(name: str, base: nn.Module, cfg: AdaptConfig, qa_params: Mapping[str, QAParams] | None):
    int4 = is_quant_linear(base)
    if not cfg.quantization_aware:
        if int4 and cfg.sparse_adapter:
            raise SqftError(
                f"'{name}' is INT4: a SparsePEFT adapter on an INT4 base could never be merged; add "
                "--quantization-aware (pipeline sqft-qa-sparsepeft) or drop --sparse-adapter (pipeline sqft)"
            )
        return None
    if cfg.qa_base in ("gptq", "gptq-dither"):
        if not int4:
            raise SqftError(
                f"quantization-aware training with qa_base={cfg.qa_base} needs an INT4 (GPTQ) base model, but '{name}' is a "
                "dense layer: quantize the model first (sqft quantize) or use qa_base=fp16 with the INT4 params"
            )
        return qa_params_of(base)
    if qa_params is None or name not in qa_params:
        raise SqftError(
            f"quantization-aware training with qa_base={cfg.qa_base} needs the INT4 model's scales and zeros for "
            f"'{name}': "
            "pass the quantized model (--qa-int4) alongside the fp16 sparse model"
        )
    return qa_params[name]


def dither_seed(name: str) -> int:
    """The seed of a module's dither offsets: a function of its name only, so that training, a resumed run and
    the merge regenerate the very same offsets with nothing stored."""
    return zlib.crc32(name.encode())


def inject_adapters(
    model: nn.Module,
    cfg: AdaptConfig,
    qa_params: Mapping[str, QAParams] | None = None,
    seed: int = 0,
    module_ranks: Mapping[str, int] | None = None,
) -> dict[str, AdapterLinear]:
    """Wrap every target linear in an `AdapterLinear`; freeze everything but the adapters. In place.

    `module_ranks` allocates fewer than r_max rows to some modules (an extracted sub-adapter); the scaling stays
    α / r_max for all of them. `qa_base='auto'` is resolved for this base (`AdaptConfig.resolved_qa_base`) and the
    model keeps the concrete configuration, so a saved adapter records the base it was trained with.
    """
    if adapter_layers(model):
        raise SqftError("the model already has sqft adapters: load a fresh base model")
    targets = find_target_linears(model, cfg.targets)
    cfg = cfg.resolved_qa_base(int4_base=any(is_quant_linear(b) for b in targets.values()))
    prefix = layers_path(model)
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(False)
    out: dict[str, AdapterLinear] = {}
    for name, base in targets.items():
        qa = _qa_for(name, base, cfg, qa_params)
        r = int(module_ranks[name]) if module_ranks is not None else cfg.r_max
        layer = AdapterLinear(
            base,
            r,
            cfg.alpha,
            cfg.dropout,
            cfg.sparse_adapter,
            qa,
            generator=gen,
            scaling=cfg.scaling,
            dither_seed=dither_seed(name)
            if cfg.quantization_aware and cfg.qa_base == "gptq-dither"
            else None,
        )
        layer.group = group_of(name, prefix, cfg.grouping, cfg.elastic)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, layer)
        out[name] = layer
    setattr(model, CONFIG_ATTR, cfg)
    return out


def adapter_layers(model: nn.Module) -> dict[str, AdapterLinear]:
    """The adapter layers of a model by full module name (without a wrapper's prefix such as DDP's `module.`)."""
    return {n.removeprefix("module."): m for n, m in model.named_modules() if isinstance(m, AdapterLinear)}


def adapter_config_of(model: nn.Module) -> AdaptConfig:
    cfg = getattr(model, CONFIG_ATTR, None) or getattr(getattr(model, "module", None), CONFIG_ATTR, None)
    if cfg is None:
        raise SqftError("this model has no sqft adapters: inject or load an adapter first")
    return cfg


def groups_of(model: nn.Module) -> dict[str, list[str]]:
    """Group name → full names of its modules, in module order."""
    groups: dict[str, list[str]] = {}
    for name, layer in adapter_layers(model).items():
        if layer.group is not None:
            groups.setdefault(layer.group, []).append(name)
    return groups


def set_active_ranks(model: nn.Module, config: Mapping[str, int]) -> None:
    """Activate one sub-adapter: group → rank. Changes only the active ranks (no reload, no re-merge)."""
    cfg = adapter_config_of(model)
    groups = groups_of(model)
    unknown = sorted(set(config) - set(groups))
    missing = sorted(set(groups) - set(config))
    if unknown or missing:
        raise SqftError(
            f"configuration does not match the adapter's groups: unknown {unknown[:3]}, missing {missing[:3]} "
            f"(the adapter has {len(groups)} groups)"
        )
    bad = {g: r for g, r in config.items() if int(r) not in cfg.ranks}
    if bad:
        g, r = next(iter(bad.items()))
        raise SqftError(f"rank {r} for group '{g}' is not in its search space {list(cfg.ranks)}")
    layers = adapter_layers(model)
    for g, names in groups.items():
        for n in names:
            layers[n].set_active_rank(int(config[g]))


def adapter_parameters(model: nn.Module) -> Iterable[nn.Parameter]:
    for layer in adapter_layers(model).values():
        yield layer.lora_A
        yield layer.lora_B


def named_adapter_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """`<module>.lora_A` / `<module>.lora_B` → parameter: the trainable state of a model's adapters."""
    return {
        f"{n}.{w}": getattr(layer, w)
        for n, layer in adapter_layers(model).items()
        for w in ("lora_A", "lora_B")
    }
