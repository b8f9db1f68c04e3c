"""`sqft export MODEL --format gguf|compressed-tensors [--output PATH]`: the merged model, for llama.cpp / vLLM."""

from __future__ import annotations

import argparse
from pathlib import Path

from sqft.cli.common import lazy_import
from sqft.errors import SqftError

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a merged model as GGUF (llama.cpp, Ollama, LM Studio) or compressed-tensors (vLLM)",
        description="Export MODEL (a merged sqft artifact, INT4 or floating point, or any supported HF model). "
        "GGUF: INT4 layers become Q4_1 blocks of the same codes (no requantization), other tensors F16. "
        "compressed-tensors: INT4 as pack-quantized, floating-point models as dense safetensors with their "
        "sparsity stated. What cannot be exported exactly is refused before anything is written.",
    )
    p.add_argument("model", help="merged model directory (sqft merge / quantize / sparsify output, HF dir)")
    p.add_argument("adapter", nargs="?", default=None, help=argparse.SUPPRESS)  # refused with a hint
    p.add_argument("--format", "-f", default="gguf", help="gguf (default) or compressed-tensors")
    p.add_argument(
        "--output", "-o", default=None, help="output directory (default: MODEL-FORMAT beside MODEL)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument(
        "--float-type",
        default="f16",
        help="GGUF: floating-point 2-D tensors as f16 (default), f32 or q8_0; INT4 layers are always Q4_1",
    )
    p.add_argument("--name", default=None, help="model name in the GGUF metadata and file name")
    p.add_argument(
        "--gguf-file", default=None, help="GGUF file name inside MODEL (when MODEL is a directory)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="warnings only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    export = lazy_import("sqft.export.api")
    if args.adapter is not None:
        raise SqftError(
            f"export writes one merged model, not a base + adapter: merge first (sqft merge {args.model} "
            f"{args.adapter} --output MERGED), then sqft export MERGED"
        )
    config = export.ExportConfig(format=args.format, float_type=args.float_type, name=args.name)
    out = Path(args.output) if args.output else export.default_output(args.model, args.format)
    manifest = lazy_import("sqft.stages.export").run_export(
        args.model, out, config, overwrite=args.overwrite, gguf_file=args.gguf_file
    )
    fig = manifest["figures"]
    size = fig["size_on_disk_bytes"] / 2**20
    if config.format == "gguf":
        print(f"wrote {out / fig['file']} ({size:.1f} MiB, {fig['tensors']} tensors: {fig['tensor_types']})")
        for line in export.run_commands(out, fig):
            print(f"  run: {line}")
    else:
        print(f"wrote {out} ({fig['format']}, {fig['quantized_layers']} INT layers, {size:.1f} MiB)")
    return 0
