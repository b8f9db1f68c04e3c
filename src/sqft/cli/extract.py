"""`sqft extract ADAPTER --config median --output DIR`: write one sub-adapter of an NLS super-adapter."""

from __future__ import annotations

import argparse

from sqft.cli.common import add_output_args, lazy_import

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "extract",
        help="extract a sub-adapter (one rank per group) that vanilla PEFT loads",
        description="Write the sub-adapter of ADAPTER at a configuration: per-module ranks in PEFT's "
        "rank_pattern/alpha_pattern (scaling kept at alpha / r_max).",
    )
    p.add_argument("adapter", help="NLS adapter directory written by sqft finetune")
    p.add_argument(
        "--config",
        default="median",
        help="median | maximal | minimal | most-frequent | min-loss[:K] | FILE.json (default median)",
    )
    add_output_args(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="use a --config FILE.json that a search chose for another adapter (recorded in the manifest)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="warnings only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    run_extract = lazy_import("sqft.stages.extract").run_extract
    config = run_extract(args.adapter, args.config, args.output, overwrite=args.overwrite, force=args.force)
    ranks = sorted(set(config.values()))
    print(f"sub-adapter '{args.config}' ({len(config)} groups, ranks {ranks}) saved to {args.output}")
    return 0
