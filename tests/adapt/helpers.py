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
