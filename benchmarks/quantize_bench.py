"""GPTQ vs RTN: time, peak memory and error on synthetic layers, and perplexity on a real tiny model.

Part 1 quantizes random layers with correlated inputs, each method in its own process (clean peak RSS);
GPTQ/RTN ratios come from the same run. Part 2 quantizes stories260K (../shared/models/stories260K-hf) with
GPTQ and RTN, dense and 50% magnitude-pruned, and reports perplexity on two held-out texts: stories sampled
from the full-precision model itself (in-domain; the calibration uses other samples) and GSM8K test
(out-of-domain for a TinyStories model; calibration on GSM8K train). It also reports target sparsity before
and after quantization (every pruned weight must stay exactly zero).

    python benchmarks/quantize_bench.py [--sizes 1024 2048] [--threads 1] [--json out.json] [--skip-model]

On a busy 2-core machine torch's intra-op threads can slow small ops down by 50x; `--threads 1` avoids it.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _layer_run(method: str, size: int, bits: int, group_size: int, threads: int, q: mp.Queue) -> None:
    from sqft.quantize.gptq import gptq_quantize, reconstruction_error
    from sqft.quantize.primitives import dequantize, expand_groups
    from sqft.quantize.rtn import rtn_quantize

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    n = 2 * size
    X = torch.randn(n, size // 8, generator=g) @ torch.randn(size // 8, size, generator=g)
    X += 0.3 * torch.randn(n, size, generator=g)  # (n, in) correlated inputs
    W = torch.randn(size, size, generator=g) * 0.02  # (out, in)
    H = 2 / n * X.T @ X
    del X
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if method == "gptq":
        qc, scale, zero = gptq_quantize(W, H, bits, group_size)
    else:
        qc, scale, zero = rtn_quantize(W, bits, group_size)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gs = size if group_size == -1 else group_size
    W_hat = dequantize(qc, expand_groups(scale, gs, size), expand_groups(zero, gs, size))
    rel = reconstruction_error(W, W_hat, H) / reconstruction_error(W, torch.zeros_like(W), H)
    q.put(
        {"seconds": seconds, "peak_rss_bytes": peak, "peak_over_inputs_bytes": peak - base, "rel_error": rel}
    )


def bench_layers(sizes: list[int], threads: int, bits: int = 4, group_size: int = 128) -> list[dict]:
    ctx = mp.get_context("spawn")
    rows = []
    for size in sizes:
        row: dict = {"size": size, "bits": bits, "group_size": group_size}
        for method in ("rtn", "gptq"):
            q = ctx.Queue()
            p = ctx.Process(target=_layer_run, args=(method, size, bits, group_size, threads, q))
            p.start()
            row[method] = q.get()
            p.join()
        row["time_ratio_gptq_over_rtn"] = row["gptq"]["seconds"] / row["rtn"]["seconds"]
        row["error_ratio_gptq_over_rtn"] = row["gptq"]["rel_error"] / row["rtn"]["rel_error"]
        rows.append(row)
        print(
            f"layer {size}x{size} {bits}-bit g{group_size}: rtn {row['rtn']['seconds']:.2f} s, "
            f"gptq {row['gptq']['seconds']:.2f} s (x{row['time_ratio_gptq_over_rtn']:.0f}); rel. output error "
            f"rtn {row['rtn']['rel_error']:.2e}, gptq {row['gptq']['rel_error']:.2e} "
            f"(x{row['error_ratio_gptq_over_rtn']:.2f}); peak RSS gptq {row['gptq']['peak_rss_bytes'] / 2**20:.0f} MiB"
        )
    return rows


def _gsm8k_texts(split: str, limit: int) -> list[str]:
    lines = (SHARED / "data/gsm8k" / f"{split}.jsonl").read_text().splitlines()[:limit]
    return [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in map(json.loads, lines)]


@torch.no_grad()
def _samples(model, n: int, seq_len: int, seed: int) -> torch.Tensor:
    """(n, seq_len) token ids sampled from the model itself (temperature 1, no top-k): in-domain text."""
    torch.manual_seed(seed)
    bos = torch.full((n, 1), model.config.bos_token_id)
    return model.generate(
        bos, do_sample=True, top_k=0, max_new_tokens=seq_len - 1, min_new_tokens=seq_len - 1
    )


@torch.no_grad()
def _ppl(model, windows: torch.Tensor) -> float:
    from sqft.evaluate.perplexity import token_nll

    nll, n = 0.0, 0
    for x in windows.split(32):  # (B, T), no padding
        s, k = token_nll(model(x).logits, x, torch.ones_like(x))
        nll, n = nll + s, n + k
    return math.exp(nll / n)


def _data(src: Path, n_samples: int, seq_len: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per domain: (calibration windows, held-out evaluation windows)."""
    from sqft.calibration import calibration_windows
    from sqft.loading import load_model, load_tokenizer

    tok = load_tokenizer(src)
    base = load_model(src, dtype="float32")
    ids = tok(
        "\n\n".join(_gsm8k_texts("test", 200)), add_special_tokens=False, return_tensors="pt"
    ).input_ids[0]
    return {
        "stories": (_samples(base, n_samples, seq_len, seed=0), _samples(base, 32, seq_len, seed=1)),
        "gsm8k": (
            calibration_windows(tok, _gsm8k_texts("train", 2000), n_samples, seq_len, seed=0),
            ids[: ids.numel() // seq_len * seq_len].view(-1, seq_len),  # (n, T) full windows
        ),
    }


def bench_model(group_sizes: list[int], n_samples: int = 64, seq_len: int = 256) -> list[dict]:
    from sqft.artifacts import Stopwatch
    from sqft.loading import load_model
    from sqft.quantize import QuantizeConfig, quantize
    from sqft.sparsify import SparsifyConfig, sparsify

    src = SHARED / "models/stories260K-hf"
    data = _data(src, n_samples, seq_len)

    def fresh(sparsity: float):
        m = load_model(src, dtype="float32")
        if sparsity:
            sparsify(m, SparsifyConfig(method="magnitude", sparsity=sparsity), quiet=True)
        return m

    rows = []
    for domain, (calib, test) in data.items():
        for sparsity in (0.0, 0.5):
            rows.append(
                {"domain": domain, "sparsity": sparsity, "method": "fp32", "ppl": _ppl(fresh(sparsity), test)}
            )
            print(f"stories260K on {domain}, sparsity {sparsity:.0%}, fp32: ppl {rows[-1]['ppl']:.3f}")
            for gs in group_sizes:
                for method in ("rtn", "gptq"):
                    m = fresh(sparsity)
                    with Stopwatch() as sw:
                        res = quantize(m, QuantizeConfig(method=method, group_size=gs), calib, quiet=True)
                    row = {
                        "domain": domain,
                        "sparsity": sparsity,
                        "method": method,
                        "bits": 4,
                        "group_size": gs,
                    }
                    row.update(ppl=_ppl(m, test), seconds=sw.seconds)
                    row.update(sparsity_before=res.sparsity_before, sparsity_after=res.sparsity_after)
                    rows.append(row)
                    print(
                        f"stories260K on {domain}, sparsity {sparsity:.0%}, {method} 4-bit g{gs}: ppl {row['ppl']:.3f}, "
                        f"{sw.seconds:.1f} s, target sparsity {res.sparsity_before:.4f} -> {res.sparsity_after:.4f}"
                    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048], help="square layer sizes")
    ap.add_argument("--group-sizes", type=int, nargs="+", default=[-1, 4], help="stories260K group sizes")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--skip-model", action="store_true", help="only the synthetic layers")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"layers": bench_layers(args.sizes, torch.get_num_threads())}
    if not args.skip_model:
        if (SHARED / "models/stories260K-hf").is_dir():
            results["stories260K"] = bench_model(args.group_sizes)
        else:
            print(f"skipping the real-model part: {SHARED / 'models/stories260K-hf'} not found")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
