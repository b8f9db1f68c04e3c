"""Every SQFT pipeline on real weights: fine-tune on a commonsense mix, score on commonsense test sets.

SmolLM2-135M-Instruct (or --model), 50% Wanda, GPTQ INT4 where the pipeline quantizes; each of the five
pipelines of SPEC §0 (lora, shears, sqft, sqft-sparsepeft, sqft-qa-sparsepeft) fine-tuned through
`sqft.pipeline` on a mix of the BoolQ, ARC-e, ARC-c and OBQA train sets (../shared/data/llm-adapters), then
scored by log-likelihood on the BoolQ, ARC-e, PIQA and WinoGrande test sets (../shared/data/mc). Rows: dense,
sparse and sparse INT4 without fine-tuning, every pipeline's final model, and for the merged pipelines the
unmerged base + adapter as well (merged must equal unmerged). Prints one Markdown table (also written to
WORK/commonsense.md) and the training-loss curve of each pipeline. CPU-sized defaults.

    python benchmarks/commonsense_pipelines.py --work runs/commonsense-pipelines
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRAIN_SETS = ("boolq", "ARC-Easy", "ARC-Challenge", "openbookqa")
TESTS = ("boolq", "arc_easy", "piqa", "winogrande")
PIPELINES = ("lora", "shears", "sqft", "sqft-sparsepeft", "sqft-qa-sparsepeft")


def _mix(work: Path, per_task: int, seed: int) -> Path:
    rng = random.Random(seed)
    train = []
    for name in TRAIN_SETS:
        items = json.loads((SHARED / "data/llm-adapters" / name / "train.json").read_text())
        rng.shuffle(items)
        train += items[:per_task]
    rng.shuffle(train)
    path = work / "data" / "commonsense-mix.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(train))
    return path


def _calibration(work: Path, n: int, seed: int) -> Path:
    """Calibration text: train-set passages and questions (never test data)."""
    items = json.loads((SHARED / "data/llm-adapters/boolq/train.json").read_text())
    random.Random(seed + 1).shuffle(items)
    path = work / "data" / "calibration.txt"
    path.write_text("\n\n".join(f"{it['instruction']}\n{it['output']}" for it in items[:n]))
    return path


def _recipe(args, model: str, pipeline: str, train: Path, calib: Path):
    from sqft.recipe import Recipe

    steps = int(dict(kv.split("=") for kv in args.steps_for).get(pipeline, args.steps))
    adapter = {"adapter": "nls", "ranks": [32, 24, 16], "r_max": 32, "alpha": 64, "dropout": args.dropout}
    return Recipe(
        name=f"commonsense-{pipeline}",
        model=model,
        pipeline=pipeline,
        device=args.device,
        sparsify={
            "method": "wanda",
            "sparsity": 0.5,
            "calibration": str(calib),
            "n_samples": 32,
            "seq_len": 256,
            "seed": args.seed,
        },
        quantize={
            "method": "gptq",
            "bits": 4,
            "group_size": 64,
            "n_samples": 32,
            "seq_len": 256,
            "seed": args.seed,
        },
        finetune={
            "data": {"source": str(train), "format": "commonsense"},
            "adapter": adapter,
            "train": {
                "max_steps": steps,
                "batch_size": args.batch_size,
                "micro_batch_size": args.batch_size,
                "learning_rate": args.lr,
                "warmup_steps": steps // 10,
                "cutoff": args.cutoff,
                "seed": args.seed,
                "logging_steps": 10,
                "save_steps": 50,
            },
        },
        evaluate=_tasks(args),
    ).validate()


def _tasks(args, tests=TESTS) -> dict:
    return {
        t: {
            "task": "mc",
            "data": str(SHARED / "data/mc" / f"{t}.jsonl"),
            "limit": args.test_limit,
            "batch_size": 16,
        }
        for t in tests
    }


def _loss_curve(adapter: Path) -> list[float]:
    """The logged training loss, from the adapter's manifest."""
    figures = json.loads((adapter / "sqft.json").read_text()).get("figures", {})
    return [round(loss, 2) for _, loss in figures.get("loss_curve", [])]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="default: SmolLM2-135M-Instruct (PyPI copy when offline)")
    ap.add_argument("--work", default="runs/commonsense-pipelines")
    ap.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=PIPELINES)
    ap.add_argument("--per-task", type=int, default=500, help="train items per train set")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument(
        "--steps-for", nargs="*", default=[], metavar="PIPELINE=N", help="per-pipeline step counts"
    )
    ap.add_argument(
        "--unmerged-tests",
        nargs="+",
        default=["arc_easy", "piqa"],
        choices=TESTS,
        help="test sets for the unmerged (base + adapter) check rows",
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--cutoff", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--test-limit", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (SHARED / "data/llm-adapters").is_dir():
        print(f"skipped: {SHARED}/data not found")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from sqft.demo import DemoConfig, _model_path
    from sqft.evaluate.api import TaskSpec
    from sqft.pipeline import evaluate_section, evaluate_to_dir, run_recipe, stage_dir
    from sqft.report.collect import collect_row
    from sqft.report.tables import markdown_table

    work = Path(args.work)
    model = _model_path(DemoConfig(model=args.model))
    train, calib = _mix(work, args.per_task, args.seed), _calibration(work, 512, args.seed)

    def evaluate(path: str, adapter: str | None = None, tests=TESTS) -> Path:
        tasks = _tasks(args, tests)
        out = stage_dir(work, "evaluate", evaluate_section(tasks, adapter), path)
        if not (out / "sqft.json").is_file():
            specs = {k: TaskSpec(**v) for k, v in tasks.items()}
            evaluate_to_dir(path, specs, out, adapter=adapter, device=args.device, quiet=True)
        return out

    states, times = {}, {}
    for pipeline in args.pipelines:
        t0 = time.perf_counter()
        states[pipeline] = run_recipe(_recipe(args, model, pipeline, train, calib), work, quiet=True)
        times[pipeline] = time.perf_counter() - t0
        print(
            f"{pipeline}: {times[pipeline]:.0f} s; loss {_loss_curve(Path(states[pipeline].dirs['finetune']))}",
            flush=True,
        )
    st = next(iter(states.values()))
    rows = [("dense", evaluate(model))]
    sparse = next((s.dirs["sparsify"] for s in states.values() if "sparsify" in s.dirs), None)
    int4 = next((s.dirs["quantize"] for s in states.values() if "quantize" in s.dirs), None)
    if sparse:
        rows.append(("50% sparse, no fine-tuning", evaluate(sparse)))
    if int4:
        rows.append(("50% sparse INT4, no fine-tuning", evaluate(int4)))
    for pipeline, st in states.items():
        rows.append((pipeline, Path(st.dirs["evaluate"])))
        if "merge" in st.dirs:  # the same adapter, unmerged, on the base it was trained on
            from sqft.adapt.api import extract_to_dir

            sub = work / f"sub-median-{Path(st.dirs['finetune']).name}"
            if not sub.is_dir():
                extract_to_dir(st.dirs["finetune"], "median", sub)
            rows.append((f"{pipeline} (unmerged)", evaluate(st.adapter_base, str(sub), args.unmerged_tests)))
    table = markdown_table([collect_row(path, label) for label, path in rows])
    (work / "commonsense.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
