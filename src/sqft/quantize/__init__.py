"""Quantization: primitives, sparsity-preserving GPTQ, RTN, GPTQ checkpoint packing and loading."""

from sqft.quantize.api import QuantizationResult, QuantizeConfig, quantize
from sqft.quantize.format import load_gptq_model, save_gptq_model
from sqft.quantize.gptq import gptq_quantize
from sqft.quantize.qlinear import QuantLinear
from sqft.quantize.rtn import rtn_quantize

__all__ = [
    "QuantLinear",
    "QuantizationResult",
    "QuantizeConfig",
    "gptq_quantize",
    "load_gptq_model",
    "quantize",
    "rtn_quantize",
    "save_gptq_model",
]
