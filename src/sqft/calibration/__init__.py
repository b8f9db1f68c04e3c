"""Calibration: data windows, the shared layer-sequential loop, statistics and Hessian preparation."""

from sqft.calibration.data import calibration_windows, load_calibration, load_texts
from sqft.calibration.engine import LayerwiseResult, capture_block_inputs, run_layerwise
from sqft.calibration.hessian import inverse_hessian_cholesky, prepare_hessian
from sqft.calibration.stats import Hessian, InputSqNorm

__all__ = [
    "Hessian",
    "InputSqNorm",
    "LayerwiseResult",
    "calibration_windows",
    "capture_block_inputs",
    "inverse_hessian_cholesky",
    "load_calibration",
    "load_texts",
    "prepare_hessian",
    "run_layerwise",
]
