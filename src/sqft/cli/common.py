"""Argument groups shared by several subcommands (so each flag is spelled and documented once), and the
CLI's one way to import the heavy stage code only when a command runs (`lazy_import`)."""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sqft.modeling.structure import DEFAULT_TARGETS

if TYPE_CHECKING:
    from sqft.stages.common import StageIO

__all__ = [
    "lazy_import",
    "add_model_args",
    "add_output_args",
    "add_calibration_args",
    "add_target_args",
    "add_runtime_args",
    "add_force_arg",
    "add_calibrated_stage_args",
    "calibration_config_kwargs",
    "stage_io",
]


def lazy_import(module: str) -> ModuleType:
    """Import `module` when a command runs, not when the parser is built.

    Building the parser (`sqft --help`, `sqft COMMAND --help`) must stay fast, while the stages pull in
    transformers, the trainer and the kernels (seconds). This is the one place the CLI defers an import: each
    command's `run` calls it for the stage module it needs (e.g. `lazy_import("sqft.stages.sparsify")`).
    """
    return importlib.import_module(module)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", help="hub id, local Hugging Face directory, .gguf file, or an sqft artifact directory"
    )
    p.add_argument(
        "--dtype", default="auto", help="weights dtype: auto (checkpoint's), float32, float16, bfloat16"
    )
    p.add_argument(
        "--gguf-file", default=None, help="GGUF file name inside MODEL (when MODEL is a directory)"
    )
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model's own Python code (off by default)"
    )


def add_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", "-o", required=True, help="output directory (refused if it exists)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def add_calibration_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("calibration")
    g.add_argument(
        "--calibration",
        required=required,
        help="calibration text: .txt, .jsonl, .json or .parquet file, or a hub dataset id",
    )
    g.add_argument("--text-field", default="text", help="record field holding the text (json/jsonl/parquet)")
    g.add_argument("--n-samples", type=int, default=128, help="number of calibration windows (default 128)")
    g.add_argument(
        "--seq-len", type=int, default=2048, help="tokens per window (default 2048, capped by the model)"
    )
    g.add_argument("--seed", type=int, default=0, help="seed for choosing the windows")


def add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--targets",
        nargs="+",
        default=list(DEFAULT_TARGETS),
        help="target linears: suffix names (q_proj) or 're:REGEX' on names inside a decoder block",
    )
    p.add_argument(
        "--ignore", nargs="*", default=[], help="linears to leave alone (same syntax as --targets)"
    )


def add_force_arg(p: argparse.ArgumentParser, what: str = "use the adapter") -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help=f"{what} even though its recorded provenance says it was trained on another base (or, for "
        "SparsePEFT, with another mask); the override is recorded in the manifest",
    )


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="compute device: cpu, cuda, cuda:1 ...")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars, warnings only")


def stage_io(args: argparse.Namespace) -> StageIO:
    """Where a calibrated stage (sparsify, quantize) reads and writes, from the shared flags."""
    return lazy_import("sqft.stages.common").StageIO(
        source=args.model,
        output=args.output,
        calibration=args.calibration,
        text_field=args.text_field,
        overwrite=args.overwrite,
        dtype=args.dtype,
        gguf_file=args.gguf_file,
        trust_remote_code=args.trust_remote_code,
        quiet=args.quiet,
    )


def add_calibrated_stage_args(p: argparse.ArgumentParser) -> None:
    """The flags every calibrated stage (sparsify, quantize) shares after its own."""
    add_calibration_args(p, required=False)
    add_target_args(p)
    add_output_args(p)
    add_runtime_args(p)


def calibration_config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields every calibrated stage shares: windows, seed, targets, device."""
    return {
        "n_samples": args.n_samples,
        "seq_len": args.seq_len,
        "seed": args.seed,
        "targets": args.targets,
        "ignore": args.ignore,
        "device": args.device,
    }
