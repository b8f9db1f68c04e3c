"""The fidelity study: what the SQFT paper claims, on a real model, with 95% intervals and paired differences.

SmolLM2-135M-Instruct (or --model), fine-tuned on a commonsense mix of the BoolQ, ARC-e, ARC-c and OBQA train
sets (../shared/data/llm-adapters), scored on the same `--items` test items of each of ARC-e, BoolQ, PIQA and
WinoGrande for every model (`fidelity_data.py`: accuracy in the training format, Wilson 95% intervals) and by
held-out perplexity on the next `--ppl-items` test items of each. Parts, each resumable (the stages go through
`sqft.pipeline`, so an interrupted part continues where it stopped, and parts share what they have in common):

  sweep      dense; 30 / 50 / 70% Wanda without fine-tuning and with SparsePEFT, merged (the paper's Fig. 5)
  pipelines  at 50%: Shears, SQFT + SparsePEFT and SQFT + QA-SparsePEFT, merged and unmerged
  adapters   at 50%: LoRA on the dense model, SQFT (LoRA on the INT4 base), and sparse LoRA vs NLS at equal steps
  search     the Shears NLS super-adapter: the median heuristic vs hill-climbing, by accuracy on held-out ARC-e
             train items and by loss on held-out items of every train set

Each part writes WORK/<part>.json and WORK/<part>.md (the rows with their intervals, the paired differences
the paper claims, the command and wall time) and WORK/<part>.png, rewritten after each row (marked partial until
the last), so an interrupted part shows what it has. `--max-minutes` splits a part that does not fit one sitting
(pipelines on a 2-core CPU): it stops at the first row boundary after that time, and the same command continues.

    python benchmarks/fidelity.py --part sweep --work runs/fidelity
    python benchmarks/fidelity.py --part pipelines --max-minutes 60   # again, until it prints the full table
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from fidelity_data import SHARED, StudyData, build_data

PARTS = ("sweep", "pipelines", "adapters", "search")
SPARSITIES = (0.3, 0.5, 0.7)

# part → the paired differences the paper claims: (what is claimed, baseline row, row)
CLAIMS = {
    "sweep": [
        ("sparsity hurts", "dense", "{p}% sparse"),
        ("fine-tuning recovers", "{p}% sparse", "{p}% sparse + SparsePEFT"),
    ],
    "pipelines": [
        ("sparsity hurts", "dense", "50% sparse"),
        ("fine-tuning recovers", "50% sparse", "Shears"),
        ("fine-tuning recovers", "50% sparse", "SQFT + SparsePEFT"),
        ("fine-tuning recovers", "50% sparse INT4", "SQFT + QA-SparsePEFT"),
        ("merged = unmerged", "SQFT + SparsePEFT (unmerged)", "SQFT + SparsePEFT"),
        ("merged = unmerged", "SQFT + QA-SparsePEFT (unmerged)", "SQFT + QA-SparsePEFT"),
        ("QA ≈ SparsePEFT", "SQFT + SparsePEFT", "SQFT + QA-SparsePEFT"),
    ],
    "adapters": [
        ("fine-tuning recovers", "50% sparse INT4", "SQFT"),
        ("NLS ≥ LoRA", "Shears with LoRA", "Shears"),
    ],
    "search": [
        ("search ≥ median", "Shears, median", "Shears, hill-climbing (accuracy)"),
        ("search ≥ median", "Shears, median", "Shears, hill-climbing (loss)"),
    ],
}


class Study:
    """The shared model, data and settings, and the one way each model artifact is made and scored."""

    def __init__(self, args: argparse.Namespace, model: str, data: StudyData):
        self.args, self.model, self.data = args, model, data
        self.work = Path(args.work)

    def recipe(self, pipeline: str, sparsity: float = 0.5, adapter: str = "nls"):
        from sqft.recipe import Recipe

        a = self.args
        adapt = {"adapter": adapter, "alpha": 64, "dropout": 0.0}
        adapt.update({"ranks": [32, 24, 16] if adapter == "nls" else [32], "r_max": 32})
        calibration = {"n_samples": 32, "seq_len": 256, "seed": a.seed}
        return Recipe(
            name=f"fidelity-{pipeline}-{adapter}-{int(100 * sparsity)}",
            model=self.model,
            pipeline=pipeline,
            device=a.device,
            dtype=a.dtype,
            sparsify={"method": "wanda", "sparsity": sparsity, "calibration": str(self.data.calibration)}
            | calibration,
            quantize={"method": "gptq", "bits": 4, "group_size": a.group_size} | calibration,
            finetune={
                "data": {"source": str(self.data.train), "format": "commonsense"},
                "adapter": adapt,
                "train": {
                    "max_steps": a.steps,
                    "batch_size": a.batch_size,
                    "micro_batch_size": a.batch_size,
                    "learning_rate": a.lr,
                    "warmup_steps": max(a.steps // 10, 1),
                    "cutoff": a.cutoff,
                    "seed": a.seed,
                    "logging_steps": 10,
                    "save_steps": 20,
                },
            },
            evaluate=self.data.tasks,
        ).validate()

    def run(self, pipeline: str, sparsity: float = 0.5, adapter: str = "nls", until: str | None = None):
        from sqft.pipeline import run_recipe

        t0 = time.perf_counter()
        st = run_recipe(self.recipe(pipeline, sparsity, adapter), self.work, quiet=True, until=until)
        logging.info("%s %s %.0f%%: %.0f s", pipeline, adapter, 100 * sparsity, time.perf_counter() - t0)
        return st

    def evaluate(self, path: str, adapter: str | None = None) -> Path:
        """The evaluation artifact of a model (plus an adapter), made once."""
        from sqft.pipeline import evaluate_once

        return evaluate_once(
            self.work, path, self.data.tasks, adapter, self.args.device, self.args.dtype, True
        )

    def unmerged(self, st) -> Path:
        """The merged pipeline's adapter, not merged: its median sub-adapter on the base it was trained on."""
        from sqft.pipeline import evaluate_unmerged

        a = self.args
        return evaluate_unmerged(self.work, st, self.data.tasks, a.device, a.dtype, True)


# A part yields its rows (label, evaluation directory) as they are made, so that an interrupted part has written
# the rows it finished (`main` rewrites the part's report after each row, marked partial until the last).
Rows = Iterator[tuple[str, Path]]


def sweep(study: Study) -> Rows:
    yield "dense", study.evaluate(study.model)
    for p in SPARSITIES:
        st = study.run("sqft-sparsepeft", p)
        yield f"{round(100 * p)}% sparse", study.evaluate(st.dirs["sparsify"])
        yield f"{round(100 * p)}% sparse + SparsePEFT", Path(st.dirs["evaluate"])


def pipelines(study: Study) -> Rows:
    yield "dense", study.evaluate(study.model)
    qa = study.run("sqft-qa-sparsepeft")
    yield "50% sparse", study.evaluate(qa.dirs["sparsify"])
    yield "50% sparse INT4", study.evaluate(qa.dirs["quantize"])
    yield "SQFT + QA-SparsePEFT", Path(qa.dirs["evaluate"])
    yield "SQFT + QA-SparsePEFT (unmerged)", study.unmerged(qa)
    sp = study.run("sqft-sparsepeft")
    yield "SQFT + SparsePEFT", Path(sp.dirs["evaluate"])
    yield "SQFT + SparsePEFT (unmerged)", study.unmerged(sp)
    yield "Shears", Path(study.run("shears").dirs["evaluate"])


def adapters(study: Study) -> Rows:
    yield "dense", study.evaluate(study.model)
    yield "LoRA (dense)", Path(study.run("lora", adapter="lora").dirs["evaluate"])
    sqft = study.run("sqft")
    yield "50% sparse INT4", study.evaluate(sqft.dirs["quantize"])
    yield "SQFT", Path(sqft.dirs["evaluate"])
    yield "Shears", Path(study.run("shears").dirs["evaluate"])
    yield "Shears with LoRA", Path(study.run("shears", adapter="lora").dirs["evaluate"])


def hill_climbing(study: Study, st, metric: str) -> Path:
    """The Shears adapter's sub-adapter that hill-climbing (paper Algorithm 1) picks on held-out train items:
    by accuracy on ARC-e's, or by loss on every train set's (the metric that is not at chance here)."""
    from sqft.cli import main as sqft

    name = "search-hill-climbing" + ("" if metric == "accuracy" else f"-{metric}")
    out = study.work / f"{name}-{Path(st.dirs['finetune']).name}"
    if metric == "accuracy":
        validation = ["--validation", str(study.data.valid)]
    else:
        validation = ["--validation", str(study.data.valid_loss), "--validation-format", "commonsense"]
    if not out.is_dir():
        code = sqft(
            ["search", st.dirs["finetune"], "--base", st.dirs["sparsify"], "--strategy", "hill-climbing"]
            + validation
            + ["--metric", metric, "--proxy-samples", "200", "--cutoff", str(study.args.cutoff)]
            + ["--turns", "4", "--neighbours", "4", "--budget", "16", "--seed", str(study.args.seed)]
            + ["--device", study.args.device, "--dtype", study.args.dtype, "--output", str(out), "-q"]
        )
        if code != 0:
            raise SystemExit(f"search ({metric}) failed with exit code {code}")
    return out / "adapter"


def search(study: Study) -> Rows:
    st = study.run("shears")
    yield "50% sparse", study.evaluate(st.dirs["sparsify"])
    yield "Shears, median", Path(st.dirs["evaluate"])
    for metric in ("accuracy", "loss"):
        adapter = hill_climbing(study, st, metric)
        yield f"Shears, hill-climbing ({metric})", study.evaluate(st.dirs["sparsify"], str(adapter))


PART_ROWS = {"sweep": sweep, "pipelines": pipelines, "adapters": adapters, "search": search}


def claims(part: str, rows: dict[str, Path]) -> list[tuple[str, str, str]]:
    """The part's claims with the sweep's sparsity filled in, for the rows that exist."""
    out = []
    for claim, base, row in CLAIMS[part]:
        for p in SPARSITIES if "{p}" in base + row else (None,):
            b, r = (s.format(p=round(100 * p)) if p else s for s in (base, row))
            if b in rows and r in rows:
                out.append((claim, b, r))
    return out


def write_part(
    part: str, study: Study, rows: dict[str, Path], seconds: float, command: str, partial: bool = False
) -> str:
    from fidelity_report import (
        claims_table,
        curves_table,
        loss_curves,
        plot_curves,
        plot_part,
        rows_json,
        rows_table,
    )

    from sqft.report.collect import collect_row

    report_rows = [collect_row(path, label) for label, path in rows.items()]
    table = rows_table(report_rows)
    paired, comparisons = claims_table(report_rows, claims(part, rows))
    png = plot_part(part, report_rows, study.work / f"{part}.png")
    status = " (partial: the part was still running; its remaining rows are not made yet)" if partial else ""
    text = (
        f"## fidelity: {part}{status}\n\n`{command}` — {seconds / 60:.1f} min\n\n{table}\n\n"
        f"Paired differences (percentage points, 95% paired bootstrap over items; perplexity has none):\n\n"
        f"{paired}\n" + (f"\n![{part}]({png.name})\n" if png else "")
    )
    curves = loss_curves(rows)
    if curves:
        loss_png = plot_curves(curves, study.work / f"{part}-loss.png")
        text += f"\nTraining loss (logged every 10 steps):\n\n{curves_table(curves)}\n"
        text += f"\n![{part} loss]({loss_png.name})\n" if loss_png else ""
    (study.work / f"{part}.md").write_text(text)
    blob = {
        "part": part,
        "partial": partial,
        "command": command,
        "seconds": seconds,
        "settings": vars(study.args),
    }
    blob |= {"rows": rows_json(report_rows), "claims": comparisons, "loss_curves": curves}
    (study.work / f"{part}.json").write_text(json.dumps(blob, indent=2, default=str) + "\n")
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", nargs="+", choices=PARTS + ("all",), default=["sweep"])
    ap.add_argument("--model", default=None, help="default: SmolLM2-135M-Instruct (PyPI copy when offline)")
    ap.add_argument("--work", default="runs/fidelity")
    ap.add_argument("--per-task", type=int, default=600, help="training items per train set")
    ap.add_argument("--items", type=int, default=500, help="accuracy items per test set")
    ap.add_argument("--ppl-items", type=int, default=100, help="held-out perplexity items per test set")
    ap.add_argument(
        "--valid-items",
        type=int,
        default=200,
        help="held-out train items for the search (accuracy: ARC-e; loss: all train sets)",
    )
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--cutoff", type=int, default=256)
    ap.add_argument("--group-size", type=int, default=64, help="GPTQ group (SmolLM2: 576 = 9·64)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto", help="auto: bf16 where its matmuls are native, else fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop at the first row boundary after this many minutes (a row takes up to ~25 min alone: a "
        "fine-tuning, its merge and its scoring); the same command continues, as everything made is cached",
    )
    args = ap.parse_args()
    if not (SHARED / "data/llm-adapters").is_dir():
        print(f"skipped: {SHARED}/data not found")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from sqft.devices import compute_dtype

    args.dtype = compute_dtype(args.device, args.dtype)  # auto: bf16 where native (AMX here: ~2.5× faster)
    from sqft.demo import DemoConfig, _model_path

    work = Path(args.work)
    data = build_data(work, args.per_task, args.items, args.ppl_items, args.valid_items, args.seed)
    study = Study(args, _model_path(DemoConfig(model=args.model)), data)
    command = "python " + " ".join(sys.argv)
    for part in PARTS if "all" in args.part else args.part:
        t0 = time.perf_counter()
        rows: dict[str, Path] = {}
        for label, path in PART_ROWS[part](study):
            rows[label] = path
            write_part(part, study, rows, time.perf_counter() - t0, command, partial=True)
            if args.max_minutes and time.perf_counter() - t0 > 60 * args.max_minutes:
                print(
                    f"{part}: stopped after {len(rows)} rows (--max-minutes {args.max_minutes}); the same "
                    "command continues from the next row",
                    flush=True,
                )
                return 0
        print(write_part(part, study, rows, time.perf_counter() - t0, command), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
