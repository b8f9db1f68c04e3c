"""`sqft sparsify MODEL --method wanda --sparsity 0.5 [--pattern 2:4] --calibration FILE --output DIR`."""

from __future__ import annotations

import argparse

from sqft.cli.common import (
    add_calibrated_stage_args,
    add_model_args,
    calibration_config_kwargs,
    lazy_import,
    stage_io,
)

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sparsify",
        help="prune a model (Wanda, magnitude, SparseGPT; unstructured or N:M)",
        description="Prune the linear layers of the decoder blocks and write a sparse checkpoint.",
    )
    add_model_args(p)
    p.add_argument("--method", default="wanda", help="wanda (default), magnitude or sparsegpt")
    p.add_argument(
        "--sparsity", type=float, default=0.5, help="fraction of weights to zero per row, in [0, 1)"
    )
    p.add_argument(
        "--pattern", default=None, help="N:M semi-structured pattern, e.g. 2:4 (overrides --sparsity)"
    )
    p.add_argument("--damp", type=float, default=0.01, help="SparseGPT damping, fraction of mean diag(H)")
    add_calibrated_stage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    SparsifyConfig = lazy_import("sqft.sparsify.api").SparsifyConfig
    config = SparsifyConfig(
        **calibration_config_kwargs(args),
        method=args.method,
        sparsity=args.sparsity,
        pattern=args.pattern,
        percdamp=args.damp,
    )
    manifest = lazy_import("sqft.stages.sparsify").run_sparsify(stage_io(args), config)
    fig = manifest["figures"]
    print(f"sparsity {fig['sparsity']['total']:.2%} over targets, {fig['seconds']:.1f} s -> {args.output}")
    return 0
