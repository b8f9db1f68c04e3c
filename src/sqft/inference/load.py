"""Load a model for inference: weights, optional adapter, INT4 layers packed once for the kernels."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sqft.adapt import AdaptConfig, load_adapter
from sqft.adapt.inject import adapter_config_of
from sqft.devices import check_device
from sqft.errors import SqftError
from sqft.loading import load_model
from sqft.merge import check_adapter_inputs, load_qa_fp16_base, merge_adapters
from sqft.modeling import load_tokenizer, parse_dtype
from sqft.modeling.io import resolve_source
from sqft.quantize.kernels import PackReport, pack_int4_layers

__all__ = ["LoadedModel", "load_for_inference", "model_dtype"]

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready to run: in eval mode on its device, INT4 layers on the kernel where they can be."""

    model: nn.Module
    tokenizer: Any
    source: str
    adapter: str | None
    device: str
    packing: PackReport | None

    @property
    def dtype(self) -> torch.dtype:
        return model_dtype(self.model)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of a model's parameters (fp32 when it has none)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def _check_not_adapter(source: str) -> None:
    p = Path(source)
    if (p / "adapter_config.json").is_file() and not (p / "config.json").is_file():
        raise SqftError(f"'{source}' is an adapter, not a model: pass its base model and --adapter {source}")


def _rebuilds_weights(cfg: AdaptConfig) -> bool:
    """SparsePEFT / QA variants multiply by a rebuilt W + L (or Ŵ) in eval; plain LoRA adds (x Aᵀ) Bᵀ."""
    return cfg.sparse_adapter or cfg.quantization_aware


def load_for_inference(
    source: str | os.PathLike,
    adapter: str | os.PathLike | None = None,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype = "auto",
    int4_kernels: bool = True,
    trust_remote_code: bool = False,
    qa_int4: str | os.PathLike | None = None,
    force: bool = False,
    fold_adapter: bool = True,
) -> LoadedModel:
    """Load `source` (dense, sparse or INT4; hub id, directory or GGUF) plus an optional adapter for inference.

    `qa_int4`: for a QA adapter trained on the fp16 base, the INT4 model it trained with (its layers without
    adapter and, for qa_base gptq-residual, the bins of its codes; `merge.prepare_qa_fp16_base`), so that the
    unmerged model runs as trained.

    An adapter must have been trained on `source` (and with `qa_int4`), as its recorded fingerprints say
    (`sqft.adapt.provenance`), unless `force`. With `fold_adapter`, a SparsePEFT / QA-SparsePEFT adapter is
    merged into its base here, in memory (`merge.merge_adapters`): its eval forward multiplies by W + L (Ŵ for
    QA), which it would rebuild at every call, at every decoded token; the merged layers hold that same weight
    (the same logits, bit for bit, on the exact path) and a QA adapter's are INT4 layers, which then run on the
    kernels. A plain LoRA adapter stays unmerged: x Wᵀ + s (x Aᵀ) Bᵀ costs little beside x Wᵀ.

    With `int4_kernels`, every INT4 layer the packed kernel supports is packed once here and runs in bf16
    (see `sqft.quantize.kernels`); the others keep dequantizing, which one log line names.
    """
    source = str(source)
    check_device(device)
    _check_not_adapter(source)
    resolve_source(source)
    if adapter is not None and not Path(adapter).is_dir():
        raise SqftError(f"adapter '{adapter}' does not exist: give the adapter directory that finetune wrote")
    parse_dtype(dtype)  # an unknown dtype fails before the load
    check_adapter_inputs(adapter, source, qa_int4, force)
    model = load_model(source, dtype=dtype, trust_remote_code=trust_remote_code)
    load_qa_fp16_base(model, adapter, qa_int4, dtype)
    if adapter is not None:
        model = load_adapter(model, adapter, force)
    model = model.to(device).eval()
    if adapter is not None and fold_adapter and _rebuilds_weights(adapter_config_of(model)):
        model, _ = merge_adapters(model)
        log.info("adapter '%s' merged into the base in memory: no W + L rebuilt per token", adapter)
    packing = pack_int4_layers(model, device) if int4_kernels else None  # bf16 kernels (see kernel_dtype)
    tok_dir = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else source
    tokenizer = load_tokenizer(tok_dir, trust_remote_code=trust_remote_code)
    return LoadedModel(model, tokenizer, source, None if adapter is None else str(adapter), device, packing)
