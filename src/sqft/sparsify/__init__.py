"""Sparsify: Wanda (default), magnitude and SparseGPT; unstructured and N:M."""

from sqft.sparsify.api import (
    METHODS,
    SparsifyConfig,
    SparsifyResult,
    sparsify,
    sparsity_report,
)
from sqft.sparsify.masks import magnitude_score, nm_mask, unstructured_mask, wanda_score
from sqft.sparsify.sparsegpt import sparsegpt_prune

__all__ = [
    "METHODS",
    "SparsifyConfig",
    "SparsifyResult",
    "magnitude_score",
    "nm_mask",
    "sparsegpt_prune",
    "sparsify",
    "sparsity_report",
    "unstructured_mask",
    "wanda_score",
]
