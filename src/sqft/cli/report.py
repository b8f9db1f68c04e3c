"""`sqft report DIR [DIR ...] --output REPORT_DIR [--baseline LABEL] [--measure-latency] [--title TEXT]`."""

from __future__ import annotations

import argparse

from sqft.cli.common import add_output_args, add_runtime_args, lazy_import

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="compare artifacts in a Markdown/HTML report with PNG figures",
        description=(
            "One row per artifact: accuracy per task (from results*.json in the artifact), sparsity, bits, size "
            "on disk, trainable parameters, fine-tuning time and peak memory (from sqft.json, following parent "
            "artifacts), and optionally the inference latency and throughput of the final model. Writes "
            "report.md, report.html (figures embedded), report.json and PNG figures: accuracy per pipeline, "
            "accuracy vs sparsity, adapter rank per layer of searched configurations. Accuracies carry their 95% "
            "interval and n; a comparison table gives each artifact's accuracy difference to a baseline with a "
            "paired bootstrap 95% interval where both were evaluated on the same items."
        ),
    )
    p.add_argument("artifacts", nargs="+", metavar="DIR", help="artifact directories written by sqft stages")
    add_output_args(p)
    p.add_argument("--title", default="sqft report", help="report title (default 'sqft report')")
    p.add_argument("--no-plots", action="store_true", help="tables only (no matplotlib needed)")
    c = p.add_argument_group("comparison")
    c.add_argument(
        "--baseline",
        default=None,
        metavar="LABEL",
        help="the artifact (its label, i.e. directory name, or its path) every other is compared with "
        "(default: the first)",
    )
    c.add_argument("--no-compare", action="store_true", help="leave out the comparison table")
    c.add_argument(
        "--bootstrap-resamples",
        type=int,
        default=10_000,
        help="paired bootstrap resamples of the comparison intervals (default 10000)",
    )
    g = p.add_argument_group("latency (paper Table 7)")
    g.add_argument(
        "--measure-latency",
        action="store_true",
        help="load each final model and time greedy generation (same prompt and length for all) on --device",
    )
    g.add_argument("--new-tokens", type=int, default=32, help="tokens generated per timed run (default 32)")
    g.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported (default 5)")
    g.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (default 1)")
    g.add_argument(
        "--prompt", default=None, help="prompt to generate from (default: a fixed GSM8K-style question)"
    )
    add_runtime_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = lazy_import("sqft.report")
    latency = report.LatencyConfig(
        prompt=args.prompt if args.prompt is not None else lazy_import("sqft.report.latency").DEFAULT_PROMPT,
        new_tokens=args.new_tokens,
        warmup=args.warmup,
        repeats=args.repeats,
        device=args.device,
    )
    config = report.ReportConfig(
        title=args.title,
        measure_latency=args.measure_latency,
        plots=not args.no_plots,
        latency=latency,
        compare=not args.no_compare,
        baseline=args.baseline,
        bootstrap_resamples=args.bootstrap_resamples,
    )
    rows = lazy_import("sqft.stages.report").run_report(
        args.artifacts, args.output, config, overwrite=args.overwrite
    )
    print(report.markdown_table(rows))
    if config.compare and len(rows) > 1:
        compared = lazy_import("sqft.report.compare").compare_rows(
            rows, config.baseline, config.bootstrap_resamples, config.seed
        )
        table = lazy_import("sqft.report.tables").markdown_comparison([c for c in compared if c.differences])
        if table:
            print(f"\ncompared with {compared[0].baseline}:\n{table}")
    print(f"report of {len(rows)} artifact(s) -> {args.output}/report.md, report.html")
    return 0
