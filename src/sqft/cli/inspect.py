"""`sqft inspect DIR`: architecture, dtype/bits, size on disk and sparsity per layer."""

from __future__ import annotations

import argparse
import json

from sqft.cli.common import lazy_import

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="show architecture, dtype/bits, size on disk and sparsity per layer of a model directory",
        description="Inspect a model directory (dense, sparse or INT4; INT4 weights are dequantized to count zeros).",
    )
    p.add_argument("model", help="model directory")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-layers", action="store_true", help="omit the per-layer sparsity table")
    p.add_argument("--quiet", "-q", action="store_true", help="warnings only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inspect_model = lazy_import("sqft.inspect_model")
    info = inspect_model.inspect_artifact(args.model)
    print(
        json.dumps(info, indent=2)
        if args.json
        else inspect_model.format_inspection(info, per_layer=not args.no_layers)
    )
    return 0
