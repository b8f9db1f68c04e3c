"""Model structure, resolved in one place: where the decoder blocks live and which linears are targets.

Every stage (sparsify, quantize, adapt, merge) asks this module; nothing else walks model internals.
Target and ignore specs are suffix names (`q_proj`, `mlp.down_proj`) or regexes prefixed with `re:`
(matched with `re.fullmatch` against the module name relative to the decoder block, e.g. `self_attn.q_proj`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from sqft.errors import SqftError

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "DEFAULT_TARGETS",
    "decoder_layers",
    "layers_path",
    "is_linear",
    "matches",
    "target_linears",
    "check_targets",
    "find_target_linears",
]

# Llama-family decoders whose blocks are `model.model.layers[i]` with plain nn.Linear projections.
SUPPORTED_MODEL_TYPES = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "phi3",
    "smollm3",
    "gemma",
    "gemma2",
    "granite",
)

# Every linear of a Llama-family block; Phi-3 fuses q,k,v into qkv_proj and gate,up into gate_up_proj.
DEFAULT_TARGETS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "qkv_proj",
    "gate_proj",
    "up_proj",
    "gate_up_proj",
    "down_proj",
)


def layers_path(model: nn.Module) -> str:
    """Dotted path of the decoder block list, e.g. 'model.layers'; a clear error for unknown layouts."""
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    for path in ("model.layers", "model.model.layers", "base_model.model.model.layers"):
        obj: object = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return path
    raise SqftError(
        f"sqft cannot map the architecture '{model_type}' ({type(model).__name__}): it looks for decoder "
        f"blocks at model.layers as in {', '.join(SUPPORTED_MODEL_TYPES)}; use a Llama-family model"
    )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks."""
    obj: nn.Module = model
    for part in layers_path(model).split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def matches(name: str, spec: str) -> bool:
    """Does module `name` (relative to its block) match a target spec (suffix or `re:` regex)?"""
    if spec.startswith("re:"):
        return re.fullmatch(spec[3:], name) is not None
    return name == spec or name.endswith("." + spec)


def _compile_check(specs: Sequence[str]) -> None:
    for spec in specs:
        if spec.startswith("re:"):
            try:
                re.compile(spec[3:])
            except re.error as e:
                raise SqftError(f"target '{spec}' is not a valid regex: {e}") from e


def is_linear(module: nn.Module) -> bool:
    """A plain nn.Linear or a quantized linear (anything with in/out features that can `dequantize()`)."""
    return isinstance(module, nn.Linear) or (
        hasattr(module, "in_features") and hasattr(module, "out_features") and hasattr(module, "dequantize")
    )


def target_linears(
    layer: nn.Module, targets: Sequence[str] = DEFAULT_TARGETS, ignore: Sequence[str] = ()
) -> dict[str, nn.Linear]:
    """The target linears of one decoder block, by name relative to the block, in module order."""
    return {
        name: m
        for name, m in layer.named_modules()
        if is_linear(m)
        and any(matches(name, t) for t in targets)
        and not any(matches(name, i) for i in ignore)
    }


def check_targets(model: nn.Module, targets: Sequence[str], ignore: Sequence[str] = ()) -> None:
    """Refuse target specs that match no linear of the first block (a typo must not silently do nothing)."""
    _compile_check(list(targets) + list(ignore))
    layer = decoder_layers(model)[0]
    names = [n for n, m in layer.named_modules() if is_linear(m)]
    if targets is DEFAULT_TARGETS or tuple(targets) == DEFAULT_TARGETS:
        unknown = [] if any(matches(n, t) for n in names for t in targets) else list(targets)
    else:
        unknown = [t for t in targets if not any(matches(n, t) for n in names)]
    if unknown:
        raise SqftError(
            f"target module(s) {', '.join(repr(u) for u in unknown)} match no linear layer of this model; "
            f"its decoder block has: {', '.join(names)}"
        )


def find_target_linears(
    model: nn.Module, targets: Sequence[str] = DEFAULT_TARGETS, ignore: Sequence[str] = ()
) -> dict[str, nn.Linear]:
    """All target linears of the model by full module name (e.g. 'model.layers.3.self_attn.q_proj')."""
    check_targets(model, targets, ignore)
    prefix = layers_path(model)
    out: dict[str, nn.Linear] = {}
    for i, layer in enumerate(decoder_layers(model)):
        for name, m in target_linears(layer, targets, ignore).items():
            out[f"{prefix}.{i}.{name}"] = m
    return out
