"""Compression on real weights: perplexity, sparsity, time of every sparsify/quantize variant in one run.

Orderings the SQFT pipeline relies on (checked and printed): dense < Wanda 50% < magnitude 50% perplexity;
GPTQ-4bit < RTN-4bit on the 50%-sparse model; sparsity after GPTQ identical to before.

    python benchmarks/compression_bench.py --model ../shared/models/stories260K-hf
    python benchmarks/compression_bench.py --model smollm2 --group-size 64 --json smol.json

Needs ../shared (GSM8K text for calibration and held-out perplexity); exits cleanly without it.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _texts(path: Path, n: int) -> list[str]:
    rows = [json.loads(line) for line in path.read_text().splitlines()[:n]]
    return [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in rows]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default=str(SHARED / "models" / "stories260K-hf"), help="path, hub id or 'smollm2'"
    )
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--n-samples", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--eval-texts", type=int, default=200, help="GSM8K test items for held-out perplexity")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    return ap.parse_args()


class Rows:
    """The benchmark's rows: each model's held-out perplexity, sparsity and time, printed as they come."""

    def __init__(self, tok, held_out: list[str], seq_len: int) -> None:
        self.tok, self.held_out, self.seq_len, self.rows = tok, held_out, seq_len, []

    def record(self, name: str, m, seconds: float, **extra) -> None:
        from sqft.evaluate.perplexity import evaluate_perplexity
        from sqft.sparsify import sparsity_report

        ppl = evaluate_perplexity(
            m, self.tok, self.held_out, seq_len=self.seq_len, batch_size=8, progress=False
        )
        row = {"model": name, "perplexity": ppl["perplexity"], "sparsity": sparsity_report(m)["total"]}
        self.rows.append(row | {"seconds": round(seconds, 2), **extra})
        print(
            f"{name:<28} ppl {row['perplexity']:9.3f}  sparsity {row['sparsity']:.4f}  {seconds:7.1f} s",
            flush=True,
        )


def sparsify_all(dense, windows, rows: Rows, device: str) -> dict:
    """Each sparsifier at 50% (and Wanda 2:4) on a copy of the dense model."""
    from sqft.sparsify import SparsifyConfig, sparsify

    models = {}
    for name, cfg in [
        ("wanda 50%", SparsifyConfig(method="wanda", sparsity=0.5)),
        ("magnitude 50%", SparsifyConfig(method="magnitude", sparsity=0.5)),
        ("sparsegpt 50%", SparsifyConfig(method="sparsegpt", sparsity=0.5)),
        ("wanda 2:4", SparsifyConfig(method="wanda", pattern="2:4")),
    ]:
        cfg.device = device
        m = copy.deepcopy(dense)
        t0 = time.perf_counter()
        sparsify(m, cfg, windows, quiet=True)
        rows.record(name, m, time.perf_counter() - t0)
        models[name] = m
    return models


def quantize_sparse(sparse, windows, rows: Rows, group_size: int, device: str) -> None:
    """GPTQ and RTN 4-bit on the Wanda-50% model, with a check that every pruned zero is still zero."""
    from sqft.modeling import find_target_linears
    from sqft.quantize.api import QuantizeConfig, quantize
    from sqft.sparsify import sparsity_report

    for method in ("gptq", "rtn"):
        m = copy.deepcopy(sparse)
        before = sparsity_report(m)["zeros"]
        zero_masks = {n: lin.weight == 0 for n, lin in find_target_linears(m).items()}
        t0 = time.perf_counter()
        cfg = QuantizeConfig(method=method, bits=4, group_size=group_size, device=device)
        quantize(m, cfg, windows if method == "gptq" else None, quiet=True)
        after = sparsity_report(m)["zeros"]
        kept = all(
            bool((lin.dequantize()[zero_masks[n]] == 0).all()) for n, lin in find_target_linears(m).items()
        )
        name = f"wanda 50% + {method} 4b g{group_size}"
        rows.record(
            name,
            m,
            time.perf_counter() - t0,
            zeros_before=before,
            zeros_after=after,
            every_input_zero_kept=kept,
        )


def checks(rows: list[dict], group_size: int) -> dict[str, bool]:
    by = {r["model"]: r for r in rows}
    gptq, rtn = by[f"wanda 50% + gptq 4b g{group_size}"], by[f"wanda 50% + rtn 4b g{group_size}"]
    return {
        "dense < wanda50 < magnitude50": by["dense"]["perplexity"]
        < by["wanda 50%"]["perplexity"]
        < by["magnitude 50%"]["perplexity"],
        "gptq < rtn (on wanda50)": gptq["perplexity"] < rtn["perplexity"],
        "every input zero is a zero after gptq": gptq["every_input_zero_kept"],
    }


def main() -> int:
    args = parse_args()
    if not (SHARED / "data" / "gsm8k").is_dir():
        print(f"skipped: {SHARED}/data/gsm8k not found")
        return 0
    from sqft.calibration import calibration_windows
    from sqft.loading import load_model, load_tokenizer
    from sqft.modeling.smollm2 import smollm2_path

    source = str(smollm2_path()) if args.model == "smollm2" else args.model
    dense = load_model(source, dtype="float32")
    tok = load_tokenizer(source)
    seq_len = min(args.seq_len, dense.config.max_position_embeddings)
    windows = calibration_windows(
        tok, _texts(SHARED / "data/gsm8k/train.jsonl", 4000), args.n_samples, seq_len
    )
    rows = Rows(tok, _texts(SHARED / "data/gsm8k/test.jsonl", args.eval_texts), seq_len)
    rows.record("dense", dense, 0.0)
    models = sparsify_all(dense, windows, rows, args.device)
    quantize_sparse(models["wanda 50%"], windows, rows, args.group_size, args.device)
    result = checks(rows.rows, args.group_size)
    for k, v in result.items():
        print(f"{'PASS' if v else 'FAIL'}  {k}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"model": source, "rows": rows.rows, "checks": result}, indent=2)
        )
    return 0 if all(result.values()) else 1


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())
