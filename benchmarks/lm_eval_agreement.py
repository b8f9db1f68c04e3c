"""sqft's multiple-choice scorer vs lm-evaluation-harness on real weights and data.

For each task: acc, acc_norm and n from both, the largest per-choice log-likelihood difference between them,
and the number of items whose acc / acc_norm pick differs. Data: ../shared/data/mc/<task>.jsonl (the script
prints a message and exits 0 when ../shared is absent). Model: SmolLM2-135M-Instruct
(`sqft.modeling.smollm2.smollm2_path()`) unless --model names a local HF directory. Needs the lm-eval extra.

    python benchmarks/lm_eval_agreement.py [--model DIR] [--tasks arc_easy piqa boolq winogrande]
        [--limit 50] [--batch-size 8] [--json out.json]

The delimiter is sqft's default (None: "\\nAnswer: " after a question, " " after "Answer:"), passed to both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TASKS = ("arc_easy", "piqa", "boolq", "winogrande")


def _picks(scores: list[list[float]], lengths: list[list[int]]) -> tuple[list[int], list[int]]:
    """Per item: (argmax ll, argmax ll / length), first on ties."""
    acc = [max(range(len(s)), key=s.__getitem__) for s in scores]
    norm = [max(range(len(s)), key=lambda i, s=s, n=n: s[i] / n[i]) for s, n in zip(scores, lengths)]
    return acc, norm


def compare(model, tokenizer, path: Path, limit: int, batch_size: int) -> dict:
    """Both scorers on the first `limit` items of one MC file; their metrics and per-item differences."""
    from sqft.data import load_multiple_choice
    from sqft.evaluate import evaluate_multiple_choice, evaluate_multiple_choice_lm_eval

    examples = load_multiple_choice(path, limit=limit)
    kwargs = {"delimiter": None, "batch_size": batch_size, "return_scores": True}
    t0 = time.perf_counter()
    ours = evaluate_multiple_choice(model, tokenizer, examples, progress=False, **kwargs)
    t1 = time.perf_counter()
    theirs = evaluate_multiple_choice_lm_eval(model, tokenizer, examples, **kwargs)
    t2 = time.perf_counter()
    diffs = [abs(a - b) for x, y in zip(ours["scores"], theirs["scores"]) for a, b in zip(x, y)]
    lengths = [[len(cont) for _, cont in ex.requests(None)] for ex in examples]
    ours_acc, ours_norm = _picks(ours["scores"], lengths)
    theirs_acc, theirs_norm = _picks(theirs["scores"], lengths)
    return {
        "n": (ours["n"], theirs["n"]),
        "acc": (ours["acc"], theirs["acc"]),
        "acc_norm": (ours["acc_norm"], theirs["acc_norm"]),
        "max_abs_ll_diff": max(diffs),
        "n_choices": len(diffs),
        "acc_pick_differs": sum(a != b for a, b in zip(ours_acc, theirs_acc)),
        "acc_norm_pick_differs": sum(a != b for a, b in zip(ours_norm, theirs_norm)),
        "seconds": (round(t1 - t0, 1), round(t2 - t1, 1)),
    }


def table(rows: dict[str, dict]) -> str:
    head = (
        "task",
        "n",
        "acc sqft",
        "acc lm-eval",
        "acc_norm sqft",
        "acc_norm lm-eval",
        "max|Δll|",
        "s sqft/lm-eval",
    )
    lines = [head]
    for task, r in rows.items():
        lines.append(
            (
                task,
                f"{r['n'][0]}/{r['n'][1]}",
                f"{r['acc'][0]:.4f}",
                f"{r['acc'][1]:.4f}",
                f"{r['acc_norm'][0]:.4f}",
                f"{r['acc_norm'][1]:.4f}",
                f"{r['max_abs_ll_diff']:.2e}",
                f"{r['seconds'][0]}/{r['seconds'][1]}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="local HF model directory (default: SmolLM2-135M-Instruct)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help="files under ../shared/data/mc, no suffix")
    p.add_argument("--limit", type=int, default=50, help="items per task (default 50)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default 8)")
    p.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    args = p.parse_args(argv)
    data = SHARED / "data" / "mc"
    if not data.is_dir():
        print(f"skipped: {data} is absent (the shared data is needed)")
        return 0
    from sqft.loading import load_model, load_tokenizer
    from sqft.modeling.smollm2 import smollm2_path

    source = args.model or smollm2_path()
    model, tokenizer = load_model(source, dtype="float32"), load_tokenizer(source)
    rows = {}
    with torch.inference_mode():
        for task in args.tasks:
            rows[task] = compare(model, tokenizer, data / f"{task}.jsonl", args.limit, args.batch_size)
            print(f"{task}: {rows[task]}", file=sys.stderr)
    print(f"model: {source}  limit: {args.limit}  torch threads: {torch.get_num_threads()}")
    print(table(rows))
    for task, r in rows.items():
        print(
            f"{task}: {r['n_choices']} choices scored; picks that differ: acc {r['acc_pick_differs']}, "
            f"acc_norm {r['acc_norm_pick_differs']} (sqft's character lengths)"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"model": str(source), "limit": args.limit, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
