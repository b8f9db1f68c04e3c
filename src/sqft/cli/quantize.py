"""`sqft quantize MODEL --method gptq --bits 4 --group-size 128 --calibration FILE --output DIR`."""

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
        "quantize",
        help="quantize a (sparse) model to INT2/3/4/8 with GPTQ or RTN; zeros stay zeros",
        description="Quantize the linear layers of the decoder blocks and write a GPTQ checkpoint "
        "(readable by transformers/optimum/GPTQModel). Pruned weights stay exactly zero.",
    )
    add_model_args(p)
    p.add_argument(
        "--method", default="gptq", help="gptq (default, needs --calibration) or rtn (round to nearest)"
    )
    p.add_argument("--bits", type=int, default=4, help="bits per weight: 2, 3, 4 (default) or 8")
    p.add_argument(
        "--group-size",
        type=int,
        default=None,
        help="input columns per scale/zero group; -1 = per row. Default: 128 where it divides every target's "
        "in_features, else the largest power of two that does (logged, recorded in the manifest). A size given "
        "here is used as given or refused",
    )
    p.add_argument("--sym", action="store_true", help="symmetric quantization (fixed zero point 2^(b-1))")
    p.add_argument(
        "--damp", type=float, default=0.01, help="GPTQ damping, fraction of mean diag(H) (default 0.01)"
    )
    p.add_argument(
        "--checkpoint-format",
        default="gptq",
        help="gptq (v1, default: read by transformers/optimum/vLLM; zero points >= 1) or gptq_v2 (GPTQModel)",
    )
    add_calibrated_stage_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    QuantizeConfig = lazy_import("sqft.quantize.api").QuantizeConfig
    config = QuantizeConfig(
        **calibration_config_kwargs(args),
        method=args.method,
        bits=args.bits,
        group_size=args.group_size,
        sym=args.sym,
        percdamp=args.damp,
        checkpoint_format=args.checkpoint_format,
    )
    manifest = lazy_import("sqft.stages.quantize").run_quantize(stage_io(args), config)
    fig = manifest["figures"]
    print(
        f"{config.method} {config.bits}-bit: {len(fig['layers'])} layers, sparsity {fig['sparsity_before']:.2%} -> "
        f"{fig['sparsity_after']:.2%}, {fig['seconds']:.1f} s, {fig['size_on_disk_bytes'] / 2**20:.1f} MiB "
        f"-> {args.output}"
    )
    return 0
