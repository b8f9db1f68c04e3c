"""Commonsense fine-tuning and sub-adapter search on real weights (issues: SparsePEFT recovery; search).

Trains one NLS SparsePEFT super-adapter on a commonsense mix (BoolQ, ARC-e, ARC-c, OBQA train sets from
../shared/data/llm-adapters) on a sparse base, chooses sub-adapters with median / most-frequent / min-loss /
hill-climbing on a held-out part of the ARC-e train set (never the test data), and scores dense, sparse and
every merged choice on multiple-choice test sets (../shared/data/mc). CPU-sized defaults.

    python benchmarks/commonsense_search.py --sparse runs/demo/sparsify-<key> --dense ~/.cache/sqft/SmolLM2-135M-Instruct
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRAIN_SETS = ("boolq", "ARC-Easy", "ARC-Challenge", "openbookqa")
TESTS = ("arc_easy", "piqa")


def _mix(work: Path, per_task: int, held_out: int, seed: int) -> tuple[Path, Path]:
    rng = random.Random(seed)
    train, valid = [], []
    for name in TRAIN_SETS:
        items = json.loads((SHARED / "data/llm-adapters" / name / "train.json").read_text())
        rng.shuffle(items)
        train += items[:per_task]
        if name == "ARC-Easy":
            valid = items[per_task : per_task + held_out]  # the train set's held-out part
    rng.shuffle(train)
    (work / "train.json").write_text(json.dumps(train))
    (work / "valid.json").write_text(json.dumps(valid))
    return work / "train.json", work / "valid.json"


def _mc_acc(model: str, test: str, limit: int, work: Path) -> dict:
    from sqft.cli import main

    out = work / f"eval-{Path(model).name}-{Path(model).parent.name}-{test}.json"
    if not out.exists():
        main(
            [
                "evaluate",
                model,
                "--task",
                "mc",
                "--data",
                str(SHARED / "data/mc" / f"{test}.jsonl"),
                "--limit",
                str(limit),
                "--batch-size",
                "16",
                "-o",
                str(out),
                "-q",
            ]
        )
    return json.loads(out.read_text())["results"]["mc"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sparse", required=True, help="50%-sparse base model directory")
    ap.add_argument("--dense", required=True, help="the dense model it came from")
    ap.add_argument("--work", default="runs/commonsense")
    ap.add_argument("--per-task", type=int, default=200)
    ap.add_argument("--held-out", type=int, default=60)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--test-limit", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (SHARED / "data/llm-adapters").is_dir():
        print(f"skipped: {SHARED}/data not found")
        return 0
    from sqft.cli import main as sqft

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    train, valid = _mix(work, args.per_task, args.held_out, args.seed)
    adapter = work / "adapter"
    t0 = time.perf_counter()
    if not adapter.exists():
        sqft(
            [
                "finetune",
                args.sparse,
                "--data",
                str(train),
                "--format",
                "commonsense",
                "--adapter",
                "nls",
                "--sparse-adapter",
                "--max-steps",
                str(args.steps),
                "--batch-size",
                "8",
                "--micro-batch-size",
                "8",
                "--lr",
                "1e-3",
                "--cutoff",
                "160",
                "--warmup-steps",
                "5",
                "--dropout",
                "0",
                "--output",
                str(adapter),
                "-q",
            ]
        )
    print(f"fine-tuned in {time.perf_counter() - t0:.0f} s")
    rows = {"dense": args.dense, "sparse, no fine-tuning": args.sparse}
    for strategy in ("median", "most-frequent", "min-loss", "hill-climbing"):
        out = work / f"search-{strategy}"
        if not out.exists():
            sqft(
                [
                    "search",
                    str(adapter),
                    "--base",
                    args.sparse,
                    "--strategy",
                    strategy,
                    "--validation",
                    str(valid),
                    "--metric",
                    "loss",
                    "--proxy-samples",
                    str(args.held_out),
                    "--budget",
                    str(args.budget),
                    "--turns",
                    "3",
                    "--neighbours",
                    "3",
                    "--test-data",
                    str(SHARED / "data/mc/arc_easy.jsonl"),
                    "--cutoff",
                    "160",
                    "--seed",
                    str(args.seed),
                    "--output",
                    str(out),
                    "-q",
                ]
            )
        rows[f"SparsePEFT merged, {strategy}"] = str(out / "merged")
    table = []
    for label, model in rows.items():
        search = Path(model).parent / "search.json"
        score = json.loads(search.read_text()).get("score") if search.is_file() else None
        accs = {t: _mc_acc(model, t, args.test_limit, work) for t in TESTS}
        table.append((label, score, accs))
        cells = "  ".join(f"{t} {a['acc']:.3f}/{a['acc_norm']:.3f}" for t, a in accs.items())
        print(f"{label:<36} val {'' if score is None else f'{score:8.4f}'}  {cells}", flush=True)
    (work / "results.json").write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
