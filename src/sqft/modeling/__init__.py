"""Model I/O and structure: loading, saving, decoder blocks and target linears."""

from sqft.modeling.io import load_model, load_tokenizer, parse_dtype, save_model
from sqft.modeling.structure import (
    DEFAULT_TARGETS,
    check_targets,
    decoder_layers,
    find_target_linears,
    target_linears,
)

__all__ = [
    "DEFAULT_TARGETS",
    "check_targets",
    "decoder_layers",
    "find_target_linears",
    "load_model",
    "load_tokenizer",
    "parse_dtype",
    "save_model",
    "target_linears",
]
