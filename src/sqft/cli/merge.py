"""`sqft merge BASE ADAPTER --output DIR`: fold an adapter into its base (sparse stays sparse, QA → INT4)."""

from __future__ import annotations

import argparse

from sqft.cli.common import add_force_arg, add_output_args, lazy_import

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "merge",
        help="merge an adapter into its base model (SparsePEFT → sparse model, QA-SparsePEFT → INT4 model)",
        description="Merge ADAPTER into BASE and save one model. Refuses to densify a sparse base "
        "(unless --allow-densify) and to merge a dense adapter into an INT4 base.",
    )
    p.add_argument(
        "base", help="the base model the adapter was trained on (directory, .gguf, INT4 checkpoint)"
    )
    p.add_argument("adapter", help="adapter directory (sqft finetune / extract)")
    add_output_args(p)
    p.add_argument(
        "--config",
        default=None,
        help="NLS configuration: median (default) | maximal | minimal | most-frequent | min-loss | FILE.json",
    )
    p.add_argument(
        "--allow-densify", action="store_true", help="allow a dense adapter to fill a sparse base's zeros"
    )
    p.add_argument("--qa-int4", default=None, help="QA adapter trained with --qa-base fp16: the INT4 model")
    p.add_argument("--dtype", default="auto", help="weights dtype of BASE: auto, float32, float16, bfloat16")
    p.add_argument("--gguf-file", default=None, help="GGUF file name inside BASE (when BASE is a directory)")
    add_force_arg(p, "merge")
    p.add_argument("--quiet", "-q", action="store_true", help="warnings only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fig = lazy_import("sqft.stages.merge").run_merge(
        args.base,
        args.adapter,
        args.output,
        config_spec=args.config,
        allow_densify=args.allow_densify,
        overwrite=args.overwrite,
        dtype=args.dtype,
        qa_int4=args.qa_int4,
        gguf_file=args.gguf_file,
        force=args.force,
    )
    print(
        f"merged {fig['layers']} layers into a {fig['kind']} model (target sparsity "
        f"{fig['target_sparsity_after']:.1%}, probe logit diff {fig['probe_max_abs_logit_diff']:.3g}) → {args.output}"
    )
    return 0
