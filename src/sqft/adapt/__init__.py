"""Adapt stage: LoRA / NLS adapters with SparsePEFT and QA-SparsePEFT variants, training, export (SPEC §3)."""

from sqft.adapt.config import ADAPT_TARGETS, PIPELINES, AdaptConfig, TrainConfig
from sqft.adapt.export import elastic_space, extract_subadapter, load_adapter, save_adapter
from sqft.adapt.inject import adapter_layers, groups_of, inject_adapters, set_active_ranks
from sqft.adapt.layer import AdapterLinear

__all__ = [
    "ADAPT_TARGETS",
    "PIPELINES",
    "AdaptConfig",
    "AdapterLinear",
    "TrainConfig",
    "adapter_layers",
    "elastic_space",
    "extract_subadapter",
    "groups_of",
    "inject_adapters",
    "load_adapter",
    "save_adapter",
    "set_active_ranks",
]
