"""The tables of `adapt_step_bench.py`: ratios against PEFT's LoRA, and the efficiency targets, each a ratio
of two variants measured in the same run."""

from __future__ import annotations


def _ratio(results, name, ref, key) -> float:
    a, b = results.get(name, {}).get(key), results.get(ref, {}).get(key)
    return a / b if a is not None and b else float("nan")


def print_static(results: dict) -> None:
    print(f"{'variant':20s} {'static MiB':>11s} {'x peft':>7s} {'x fp16-copy':>12s}")
    for name, r in results.items():
        r["memory_ratio"] = _ratio(results, name, "peft-lora", "static_bytes")
        r["vs_fp16_copy"] = _ratio(results, name, "qa-fp16-copy", "static_bytes")
        print(
            f"{name:20s} {r['static_bytes'] / 2**20:11.1f} {r['memory_ratio']:7.2f} {r['vs_fp16_copy']:12.2f}"
        )


def print_table(results: dict) -> None:
    """Ratios against PEFT's LoRA (and NLS vs sqft LoRA, QA vs the fp16-copy design), stored in `results`."""
    mem = "cuda_peak_bytes" if any("cuda_peak_bytes" in r for r in results.values()) else "memory_model_bytes"
    print(f"memory column: {mem}")
    print(
        f"{'variant':20s} {'step s':>8s} {'x peft':>7s} {'memory MiB':>11s} {'x peft':>7s} {'saved MiB':>10s}"
    )
    for name, r in results.items():
        r["step_ratio"] = _ratio(results, name, "peft-lora", "step_s")
        r["memory_ratio"] = _ratio(results, name, "peft-lora", mem)
        print(
            f"{name:20s} {r['step_s']:8.3f} {r['step_ratio']:7.2f} {r[mem] / 2**20:11.1f} "
            f"{r['memory_ratio']:7.2f} {r['saved_for_backward_bytes'] / 2**20:10.1f}"
        )
    results["targets"] = targets = {}
    for label, name, ref, key, bound in TARGETS_OF_ISSUE:
        targets[label] = value = _ratio(results, name, ref, mem if key == "memory" else key)
        print(f"{label:50s} {value:6.2f}  (target ≤ {bound})")


# (what, variant, baseline, figure, bound): the efficiency targets, each a ratio within this run
TARGETS_OF_ISSUE = [
    ("SparsePEFT, dropout 0 / floor-3 (step)", "sparsepeft-nodrop", "floor-3", "step_s", 1.1),
    ("SparsePEFT, dropout 0.1 / floor-5 (step)", "sparsepeft", "floor-5", "step_s", 1.1),
    ("QA-SparsePEFT, dropout 0 / floor-3-int4 (step)", "qa-sparsepeft-nodrop", "floor-3-int4", "step_s", 1.1),
    ("QA-SparsePEFT, dropout 0.1 / floor-3-int4 (step)", "qa-sparsepeft", "floor-3-int4", "step_s", 1.1),
    (
        "SparsePEFT, dropout 0 / authors' design (step)",
        "sparsepeft-nodrop",
        "authors-sparsepeft",
        "step_s",
        0.75,
    ),
    ("SparsePEFT / PEFT LoRA (memory)", "sparsepeft", "peft-lora", "memory", 1.05),
    ("SparsePEFT, dropout 0 / PEFT LoRA (memory)", "sparsepeft-nodrop", "peft-lora", "memory", 1.05),
    ("QA-SparsePEFT / fp16-copy design (memory)", "qa-sparsepeft", "qa-fp16-copy", "memory", 0.6),
    ("NLS / sqft LoRA (step)", "sqft-nls", "sqft-lora", "step_s", 1.03),
]
