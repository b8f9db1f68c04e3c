"""The shared layer-sequential calibration loop (Wanda, SparseGPT and GPTQ all run through it).

Pseudocode:
    X ← inputs of block 0 (captured with a pre-hook; also the kwargs the block needs: attention mask,
        position ids, rotary position embeddings computed outside the blocks in transformers 5)
    for each block i:
        move block i to the device
        hook its target linears; run X through it; each hook feeds its accumulator (‖X_j‖², H, ...)
        process every target linear with its statistic (prune / quantize, in place)
        X ← block_i(X) re-run after processing, so errors propagate as they will at inference
        move block i back
Only one block is ever on the device, plus the activations X.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from sqft.modeling.structure import DEFAULT_TARGETS, decoder_layers, layers_path, target_linears

__all__ = ["Accumulator", "LayerwiseResult", "capture_block_inputs", "run_layerwise"]

log = logging.getLogger(__name__)


class Accumulator(Protocol):
    def add_batch(self, x: torch.Tensor) -> None: ...


@dataclass
class LayerwiseResult:
    figures: dict[str, Any] = field(default_factory=dict)  # per full linear name: what `process` returned
    hidden: list[torch.Tensor] = field(default_factory=list)  # outputs of the last block, one per window


class _Captured(Exception):
    pass


def _move_outside_layers(model: nn.Module, device: torch.device | str) -> None:
    """Move every parameter and buffer that is not inside a decoder block (embeddings, rotary, norm)."""
    prefix = layers_path(model) + "."
    for name, module in model.named_modules():
        if name.startswith(prefix) or name + "." == prefix:
            continue
        for p in module.parameters(recurse=False):
            p.data = p.data.to(device)
        for key, b in list(module._buffers.items()):
            if b is not None:
                module._buffers[key] = b.to(device)


def _block_output(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def capture_block_inputs(
    model: nn.Module, windows: torch.Tensor, device: torch.device | str, offload: torch.device | str = "cpu"
) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """Inputs of block 0 for each window `(1, T, C)` (kept on `offload`) and the block's keyword arguments.

    All windows have the same length and no padding, so the kwargs (mask, positions, rotary cos/sin) are the
    same for every window and are kept once, on `device`.
    """
    layer0 = decoder_layers(model)[0]
    hidden: list[torch.Tensor] = []
    kwargs: dict[str, Any] = {}

    def hook(module: nn.Module, args: tuple, kw: dict) -> None:
        x = args[0] if args else kw["hidden_states"]
        hidden.append(x.to(offload))
        if not kwargs:
            kwargs.update({k: v for k, v in kw.items() if k not in ("hidden_states", "past_key_values")})
            kwargs["use_cache"] = False
        raise _Captured

    _move_outside_layers(model, device)
    handle = layer0.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for ids in windows:
            try:
                model(ids.unsqueeze(0).to(device), use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
        _move_outside_layers(model, offload)
    return hidden, kwargs


@torch.no_grad()
def _run_block(
    layer: nn.Module, hidden: list[torch.Tensor], kwargs: dict, device, offload, batch_size: int
) -> list[torch.Tensor]:
    """Run windows through one block, `batch_size` at a time (the batch-1 kwargs broadcast over the batch)."""
    out: list[torch.Tensor] = []
    for i in range(0, len(hidden), batch_size):
        x = torch.cat(hidden[i : i + batch_size]).to(device)  # (b, T, C)
        out.extend(_block_output(layer(x, **kwargs)).to(offload).split(1))
    return out


@torch.no_grad()
def run_layerwise(
    model: nn.Module,
    windows: torch.Tensor | None,
    process: Callable[[str, nn.Linear, Accumulator | None], Any],
    make_accumulator: Callable[[nn.Linear], Accumulator] | None,
    *,
    targets: Sequence[str] = DEFAULT_TARGETS,
    ignore: Sequence[str] = (),
    device: torch.device | str = "cpu",
    offload: torch.device | str = "cpu",
    desc: str = "layers",
    quiet: bool = False,
    batch_size: int = 8,
) -> LayerwiseResult:
    """Run the layer-sequential loop; `process(name, linear, stat)` modifies each target linear in place.

    With `make_accumulator=None` no statistic is gathered (e.g. magnitude pruning, RTN) and `process` gets None;
    the calibration forward passes are skipped unless `windows` is given (then the final hidden states are
    still computed, which the engine's equivalence test uses). `batch_size` windows go through a block at once.
    """
    layers = decoder_layers(model)
    prefix = layers_path(model)
    needs_data = make_accumulator is not None or windows is not None
    hidden, kwargs = capture_block_inputs(model, windows, device, offload) if needs_data else ([], {})
    result = LayerwiseResult()
    for i, layer in enumerate(tqdm(layers, desc=desc, disable=quiet, unit="block")):
        layer.to(device)
        linears = target_linears(layer, targets, ignore)
        stats: dict[str, Accumulator] = {}
        if make_accumulator is not None:
            stats = {name: make_accumulator(lin) for name, lin in linears.items()}
            handles = [
                lin.register_forward_hook(lambda m, args, out, acc=stats[name]: acc.add_batch(args[0]))
                for name, lin in linears.items()
            ]
            try:
                _run_block(layer, hidden, kwargs, device, offload, batch_size)
            finally:
                for h in handles:
                    h.remove()
        for name, lin in linears.items():
            result.figures[f"{prefix}.{i}.{name}"] = process(
                f"{prefix}.{i}.{name}", lin, stats.pop(name, None)
            )
        if hidden:
            hidden = _run_block(layer, hidden, kwargs, device, offload, batch_size)
        layer.to(offload)
        if str(device).startswith("cuda"):
            torch.cuda.empty_cache()
    result.hidden = hidden
    return result
