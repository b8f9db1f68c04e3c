"""Decode speed of base + SparsePEFT / QA-SparsePEFT adapter as `generate` and `bench` load it (merged in memory
at load, `load_for_inference(fold_adapter=True)`) against the adapter left unmerged, which rebuilds W + L in every
target layer at every decoded token. Both in one process, rounds interleaved.

    python benchmarks/adapter_decode.py runs/demo/sparsify-* runs/demo/finetune-<sqft-sparsepeft>

Measured on a 2-core AMD EPYC (AVX512-BF16), SmolLM2-135M 50% sparse + the demo's SparsePEFT adapter, bf16,
batch 1, 32 prompt tokens, median of 2 interleaved rounds: unmerged 3.1 tok/s, merged at load 25.7 tok/s (8.2×).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from sqft.inference import load_for_inference
from sqft.inference.bench import decode_timing, prompt_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base")
    ap.add_argument("adapter")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--new-tokens", type=int, default=33)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    models = {
        fold: load_for_inference(args.base, args.adapter, dtype=args.dtype, fold_adapter=fold).model
        for fold in (False, True)
    }
    speeds: dict[bool, list[float]] = {False: [], True: []}
    ids = prompt_batch(models[True].config.vocab_size, 32, 1, 0, "cpu")
    with torch.no_grad():
        for _ in range(args.rounds):
            for fold, model in models.items():
                decode_timing(model, ids, 4)  # warm-up
                t = decode_timing(model, ids, args.new_tokens)
                speeds[fold].append((args.new_tokens - 1) / t.decode_s)
    unmerged, merged = (statistics.median(speeds[f]) for f in (False, True))
    print(
        f"decode tok/s, batch 1: unmerged {unmerged:.1f}, merged at load {merged:.1f} ({merged / unmerged:.1f}x)"
    )


if __name__ == "__main__":
    main()
