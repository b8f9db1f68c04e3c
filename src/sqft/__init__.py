"""sqft: sparse, quantized, fine-tuned large language models at low cost (SQFT, arXiv 2410.03750)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
