"""Tiny sparse / INT4 models for the adapt tests (built offline from tests/conftest.py's tiny Llama)."""

from __future__ import annotations

import torch
from torch import nn

from sqft.modeling.structure import find_target_linears
from sqft.quantize.format import replace_module
from sqft.quantize.qlinear import QuantLinear
from sqft.quantize.rtn import rtn_quantize
from tests.conftest import tiny_llama

ALL_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def magnitude_prune_(model: nn.Module, sparsity: float = 0.5) -> nn.Module:
    """Zero the floor(in·p) smallest-|w| weights of every row of every decoder linear (in place)."""
    with torch.no_grad():
        for lin in find_target_linears(model, ALL_LINEARS).values():
            W = lin.weight
            k = int(W.shape[1] * sparsity)
            idx = W.abs().argsort(dim=1)[:, :k]
            W.scatter_(1, idx, 0.0)
    return model


def to_int4_(model: nn.Module, group_size: int = 32) -> nn.Module:
    """RTN-quantize every decoder linear into a QuantLinear (sparsity kept: pruned codes = z)."""
    for name, lin in find_target_linears(model, ALL_LINEARS).items():
        q, scale, zero = rtn_quantize(lin.weight.detach(), 4, group_size, min_zero=1)
        replace_module(model, name, QuantLinear.from_codes(q, scale, zero, 4, group_size, False, lin.bias))
    return model


def sparse_model(seed: int = 0) -> nn.Module:
    return magnitude_prune_(tiny_llama(seed=seed))


def sparse_int4_model(seed: int = 0) -> nn.Module:
    return to_int4_(sparse_model(seed))


def randomize_adapters_(model: nn.Module, std: float = 0.05, seed: int = 1) -> None:
    """Non-zero B so that the adapters change the output (B = 0 at init)."""
    from sqft.adapt import adapter_layers

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * std)


def tokens(batch: int = 2, length: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, 100, (batch, length), generator=g)


def nudge_codes_(model: nn.Module, fraction: float = 0.25, seed: int = 0) -> nn.Module:
    """Move a `fraction` of the kept codes (q ≠ z) of every INT4 layer one step up or down, clamped to the grid,
    as GPTQ's error feedback departs from round-to-nearest; pruned codes (q = z) stay. In place."""
    g = torch.Generator().manual_seed(seed)
    for name, layer in find_target_linears(model, ALL_LINEARS).items():
        q, scale, zero = layer.codes()  # (out, in), (out, G), (out, G)
        z = zero.repeat_interleave(q.shape[1] // zero.shape[1], 1).to(q.dtype)
        step = torch.randint(0, 2, q.shape, generator=g) * 2 - 1
        move = (torch.rand(q.shape, generator=g) < fraction) & (q != z)
        q = torch.where(move, (q + step).clamp(0, 2**layer.bits - 1), q)
        new = QuantLinear.from_codes(q, scale, zero, layer.bits, layer.group_size, False, layer.bias)
        replace_module(model, name, new)
    return model
