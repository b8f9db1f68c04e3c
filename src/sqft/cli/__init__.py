"""The `sqft` command: one table of subcommands, each in its own module with `add_parser(subparsers)`.

User errors (`SqftError`, missing files) become one line on stderr and exit code 2; no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from sqft import __version__
from sqft.cli.common import lazy_import
from sqft.errors import SqftError

__all__ = ["main", "COMMANDS"]

# command name → module under sqft.cli that defines add_parser(subparsers)
COMMANDS: dict[str, str] = {
    "sparsify": "sqft.cli.sparsify",
    "quantize": "sqft.cli.quantize",
    "inspect": "sqft.cli.inspect",
    "evaluate": "sqft.cli.evaluate",
    "finetune": "sqft.cli.finetune",
    "extract": "sqft.cli.extract",
    "merge": "sqft.cli.merge",
    "export": "sqft.cli.export",
    "search": "sqft.cli.search",
    "run": "sqft.cli.run",
    "demo": "sqft.cli.demo",
    "report": "sqft.cli.report",
    "generate": "sqft.cli.generate",
    "bench": "sqft.cli.bench",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sqft",
        description="Sparse, quantized, fine-tuned LLMs: sparsify, quantize, finetune, merge, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"sqft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        lazy_import(module).add_parser(sub)
    return parser


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if quiet:
        hf_logging = lazy_import("transformers.utils.logging")
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "quiet", False))
    try:
        return int(args.func(args) or 0)
    except SqftError as e:
        print(f"sqft {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"sqft {args.command}: error: file not found: {e.filename or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sqft {args.command}: interrupted; no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
