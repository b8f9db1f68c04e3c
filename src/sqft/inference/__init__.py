"""Run a finished model: load it for inference (INT4 layers on packed kernels), generate text, benchmark it."""

from sqft.inference.bench import BenchConfig, bench_models, decode_timing
from sqft.inference.generate import GenerateConfig, generate_reply
from sqft.inference.load import LoadedModel, load_for_inference

__all__ = [
    "BenchConfig",
    "GenerateConfig",
    "LoadedModel",
    "bench_models",
    "decode_timing",
    "generate_reply",
    "load_for_inference",
]
