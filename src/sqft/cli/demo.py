"""`sqft demo`: SmolLM2-135M-Instruct, 50% Wanda, SparsePEFT / QA-SparsePEFT, one table, offline."""

from __future__ import annotations

import argparse
import time

from sqft.cli.common import lazy_import

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole SQFT story on SmolLM2-135M-Instruct offline and print one table",
        description="Dense / sparse / SparsePEFT merged and unmerged / QA-SparsePEFT merged INT4 on a synthetic "
        "arithmetic task that sqft generates itself. Re-running skips finished stages.",
    )
    p.add_argument("--model", default=None, help="model to use instead of SmolLM2-135M-Instruct")
    p.add_argument("--output", "-o", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (the same code runs on both)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="compute dtype (default auto: bf16 on a GPU or a CPU with native bf16 matrix products, else fp32)",
    )
    p.add_argument("--steps", type=int, default=15, help="fine-tuning steps per pipeline (default 15)")
    p.add_argument("--train", type=int, default=512, help="synthetic training problems (default 512)")
    p.add_argument("--test", type=int, default=30, help="synthetic test problems (default 30)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars, warnings only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    demo = lazy_import("sqft.demo")
    t0 = time.perf_counter()
    cfg = demo.DemoConfig(
        model=args.model,
        output=args.output,
        device=args.device,
        dtype=args.dtype,
        max_steps=args.steps,
        n_train=args.train,
        n_test=args.test,
    )
    table, _, gguf = demo.run_demo(cfg, quiet=args.quiet)
    print(table)
    print("\n" + "\n".join(gguf))
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; artifacts and demo.md in {args.output}")
    return 0
