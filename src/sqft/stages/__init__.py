"""The stages: one function per stage, each loading its input artifact, calling its library and writing its
output artifact atomically (temporary path, then moved into place; `overwrite` respected) with a manifest.

The CLI commands and the recipe pipeline (`sqft.pipeline`) both call these, so each stage has one path.
The libraries below (sparsify, quantize, adapt, search, merge, export, evaluate, report) take and return
models, tensors and configs and never write artifact directories or manifests.
"""

from sqft.stages.common import StageIO
from sqft.stages.evaluate import EvaluateOptions, Evaluation, run_evaluate
from sqft.stages.export import run_export
from sqft.stages.extract import run_extract
from sqft.stages.finetune import run_finetune
from sqft.stages.merge import run_merge
from sqft.stages.quantize import run_quantize
from sqft.stages.report import run_report
from sqft.stages.search import run_search
from sqft.stages.sparsify import run_sparsify

__all__ = [
    "EvaluateOptions",
    "Evaluation",
    "StageIO",
    "run_evaluate",
    "run_export",
    "run_extract",
    "run_finetune",
    "run_merge",
    "run_quantize",
    "run_report",
    "run_search",
    "run_sparsify",
]
