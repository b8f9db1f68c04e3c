"""What every writer takes: a model as plain data — its config, its floating-point tensors, its INT-b layers.

The writers are "state dict + config in → files out": they never walk a model. `export_inputs(model)` is the one
place that turns a loaded model (plain or with sqft's `QuantLinear`s) into that data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sqft.errors import SqftError
from sqft.quantize.packing import unpack_rows, unpack_zeros
from sqft.quantize.primitives import dequantize, expand_groups
from sqft.quantize.qlinear import QuantLinear

__all__ = ["QuantizedWeight", "ExportInputs", "export_inputs"]


@dataclass
class QuantizedWeight:
    """One INT-b linear in sqft's in-memory GPTQ layout (see `QuantLinear`): zero points are z itself."""

    qweight: torch.Tensor  # int32 (in·b/32, out), codes packed along `in`
    qzeros: torch.Tensor  # int32 (G, out·b/32), z packed along `out`
    scales: torch.Tensor  # fp16 (G, out)
    bits: int
    group_size: int
    sym: bool
    in_features: int
    out_features: int
    bias: torch.Tensor | None = None

    @property
    def groups(self) -> int:
        return self.in_features // self.group_size

    def codes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q uint8 (out, in), scale fp16 (out, G), zero uint8 (out, G): ŵ = scale · (q − zero)."""
        q = unpack_rows(self.qweight, self.bits, self.in_features).T  # (out, in)
        zero = unpack_zeros(self.qzeros, self.bits, self.out_features)  # (out, G)
        return q.to(torch.uint8).contiguous(), self.scales.T.contiguous(), zero.to(torch.uint8)

    def dequantize(self) -> torch.Tensor:
        """ŵ (out, in) fp32, as sqft computes it."""
        q, s, z = self.codes()
        g, n = self.group_size, self.in_features
        return dequantize(q.int(), expand_groups(s.float(), g, n), expand_groups(z.float(), g, n))


@dataclass
class ExportInputs:
    """A model as data. Tensor names are the Hugging Face ones (`model.layers.0.self_attn.q_proj.weight`)."""

    config: dict[str, Any]  # the HF config (`config.to_dict()`)
    tensors: dict[str, torch.Tensor]  # every floating-point tensor; a tied lm_head is left out
    quantized: dict[str, QuantizedWeight] = field(default_factory=dict)  # by module name (`...q_proj`)
    linears: list[str] = field(default_factory=list)  # every linear module (plain or INT-b), lm_head included
    name: str = "model"

    @property
    def tied(self) -> bool:
        return "lm_head.weight" not in self.tensors


def _quantized_weight(m: QuantLinear) -> QuantizedWeight:
    if not torch.equal(m.g_idx.cpu(), torch.arange(m.in_features, dtype=torch.int32) // m.group_size):
        raise SqftError("an act-order (permuted g_idx) INT4 layer cannot be exported")
    return QuantizedWeight(
        qweight=m.qweight.detach().cpu(),
        qzeros=m.qzeros.detach().cpu(),
        scales=m.scales.detach().cpu(),
        bits=m.bits,
        group_size=m.group_size,
        sym=m.sym,
        in_features=m.in_features,
        out_features=m.out_features,
        bias=None if m.bias is None else m.bias.detach().cpu(),
    )


def export_inputs(model: nn.Module, name: str = "model") -> ExportInputs:
    """The config, floating-point tensors and INT-b layers of a loaded model (weights stay where they are)."""
    config = model.config.to_dict()
    config["architectures"] = config.get("architectures") or [type(model).__name__]  # what vLLM dispatches on
    quant = {n: _quantized_weight(m) for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    skip = tuple(f"{n}." for n in quant)
    tensors = {
        k: v.detach().cpu()
        for k, v in model.state_dict().items()
        if not k.startswith(skip) and v.is_floating_point()
    }
    out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
    if out_emb is not None and out_emb.weight is in_emb.weight:
        tensors.pop("lm_head.weight", None)
    linears = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, QuantLinear))]
    return ExportInputs(config=config, tensors=tensors, quantized=quant, linears=linears, name=name)
