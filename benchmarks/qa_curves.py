"""Held-out loss curves of the adapters SQFT trains, at the demo's settings, on SmolLM2-135M-Instruct.

One shared 50%-Wanda sparse model and its GPTQ INT4 (4-bit, g64) model, built once through `sqft.pipeline`
(cached under --root, so a re-run skips them), then the same NLS adapter (ranks 32/24/16, 20 steps, batch 8,
lr 1e-3, cutoff 128, --seed, the demo's synthetic arithmetic data) trained as

    sparsepeft   SparsePEFT on the fp16 sparse model                     (pipeline sqft-sparsepeft)
    qa-fp16      QA-SparsePEFT, W_base = the fp16 sparse weights         (the paper's base)
    qa-residual  QA-SparsePEFT, W_base = the fp16 weights moved into      (qa_base=gptq-residual, the default
                 the bins of their GPTQ codes                             with the fp16 parent)
    qa-gptq      QA-SparsePEFT, W_base = the dequantized GPTQ weights    (sqft's memory-saving option)
    qa-dither    QA-SparsePEFT, W_base = GPTQ + s_q·u, u ~ U[−½, ½)       (qa_base=gptq-dither: GPTQ's memory)
    lora-int4    a dense NLS adapter on the INT4 model                   (pipeline sqft)

The held-out loss (mean token cross-entropy on synthetic problems disjoint from the train and demo test
splits, in eval mode at the median sub-adapter — what `merge` takes) is logged at step 0 and every --every
steps. Each finished variant is appended to the JSON at once, so an interrupted run resumes with the next.

    PYTHONPATH=src python benchmarks/qa_curves.py                     # ~1 h on 2 busy CPU cores
    PYTHONPATH=src python benchmarks/qa_curves.py --variants qa-fp16 qa-gptq --max-steps 10

Writes ROOT/qa_curves.json, ROOT/qa_curves.md (steps × variants, QA vs SparsePEFT in %), ROOT/qa_curves.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

# variant → (pipeline whose adapter it trains, the base it trains on, adapter overrides)
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "sparsepeft": ("sqft-sparsepeft", "sparse", {}),
    "qa-fp16": ("sqft-qa-sparsepeft", "sparse", {"qa_base": "fp16"}),
    "qa-residual": ("sqft-qa-sparsepeft", "sparse", {"qa_base": "gptq-residual"}),
    "qa-gptq": ("sqft-qa-sparsepeft", "int4", {"qa_base": "gptq"}),
    "qa-dither": ("sqft-qa-sparsepeft", "int4", {"qa_base": "gptq-dither"}),
    "lora-int4": ("sqft", "int4", {}),
}
REFERENCE = "sparsepeft"


def _shared_models(cfg, root: Path) -> tuple[dict[str, Path], dict[str, str], Any]:
    """The demo's data files and its sparse + INT4 models (through the pipeline's stage cache)."""
    from sqft.demo import _recipe, _write_data  # the demo's own recipe: its settings exactly
    from sqft.pipeline import run_recipe

    paths = _write_data(cfg, root)
    recipe = _recipe(cfg, cfg.model, "sqft-qa-sparsepeft", paths)
    st = run_recipe(recipe, root, quiet=True, until="quantize")
    return paths, {"sparse": st.sparse, "int4": st.int4}, recipe


def _heldout_rows(cfg, root: Path, n: int, tokenizer, cutoff: int) -> list[dict[str, list[int]]]:
    """Problems after the demo's train and test splits in the same seeded stream: never trained or tested on."""
    from sqft.data import build_training_dataset, load_training_examples
    from sqft.data.synthetic import generate_problems, write_jsonl

    problems = generate_problems(cfg.n_train + cfg.n_test + n, cfg.seed)[cfg.n_train + cfg.n_test :]
    path = write_jsonl(problems, root / "data" / "heldout.jsonl")
    return build_training_dataset(tokenizer, load_training_examples(str(path), "gsm8k"), cutoff)


def _train_variant(
    name: str, recipe, models: dict[str, str], heldout, every: int, work: Path, seed: int
) -> dict:
    from sqft.adapt.config import AdaptConfig, TrainConfig
    from sqft.adapt.heldout import HeldOutLossCallback
    from sqft.adapt.train import finetune
    from sqft.data import load_training_examples, pad_collate
    from sqft.loading import load_model, load_tokenizer
    from sqft.merge import prepare_qa_fp16_base
    from sqft.recipe import build
    from sqft.stages.finetune import qa_params_from

    pipeline, base, overrides = VARIANTS[name]
    section = {**recipe.adapt_section(), **overrides}
    section.update(zip(("sparse_adapter", "quantization_aware"), _switches(pipeline)))
    adapt = build(AdaptConfig, section, name)
    # `seed`: adapter init and data order; `nls_seed`: the sub-adapters sampled
    train = build(TrainConfig, {**recipe.finetune["train"], "seed": seed, "nls_seed": seed}, name)
    qa_params = None
    model, tokenizer = load_model(models[base]), load_tokenizer(models[base])
    if adapt.on_fp16_base:  # as `sqft finetune --qa-int4` does
        int4 = load_model(models["int4"])
        qa_params = qa_params_from(int4)
        prepare_qa_fp16_base(model, adapt, int4, models["int4"])
    examples = load_training_examples(recipe.finetune["data"]["source"], "gsm8k")
    cb = HeldOutLossCallback(model, heldout, pad_collate(tokenizer), every=every)
    t0 = time.perf_counter()
    res = finetune(model, tokenizer, examples, adapt, train, work / name, qa_params, False, [cb])
    return {
        "pipeline": pipeline,
        "base": base,
        "qa_base": adapt.qa_base if adapt.quantization_aware else None,
        "curve": [[s, round(v, 5)] for s, v in cb.curve],
        "train_loss_curve": res.figures["loss_curve"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _switches(pipeline: str) -> tuple[bool, bool]:
    from sqft.adapt.config import PIPELINES

    return PIPELINES[pipeline]


def markdown(results: dict[str, dict]) -> str:
    """Steps × variants; a QA column's (x%) is its loss relative to SparsePEFT's at the same step."""
    names = list(results)
    curves = {n: dict(results[n]["curve"]) for n in names}
    steps = sorted(set().union(*curves.values()))
    ref = curves.get(REFERENCE, {})
    lines = ["| step | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for s in steps:
        cells = []
        for n in names:
            v = curves[n].get(s)
            rel = (
                f" ({100 * (v / ref[s] - 1):+.1f}%)" if v is not None and n != REFERENCE and s in ref else ""
            )
            cells.append("" if v is None else f"{v:.4f}{rel}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def within_target(
    results: dict[str, dict], variant: str, tol: float = 0.05, from_step: int = 10
) -> bool | None:
    """Whether `variant`'s held-out loss is within `tol` (relative) of SparsePEFT's at every step ≥ from_step."""
    if variant not in results or REFERENCE not in results:
        return None
    ref, cur = dict(results[REFERENCE]["curve"]), dict(results[variant]["curve"])
    common = [s for s in cur if s in ref and s >= from_step]
    return bool(common) and all(cur[s] <= ref[s] * (1 + tol) for s in common)


def plot(results: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in results.items():
        steps, losses = zip(*r["curve"])
        ax.plot(steps, losses, marker="o", ms=3, label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("held-out loss (mean token CE)")
    ax.set_title("SmolLM2-135M, 50% Wanda + GPTQ-4bit g64, demo settings")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="runs/qa-curves", help="run directory (stage cache and outputs)")
    ap.add_argument("--model", default=None, help="model path (default: the cached SmolLM2-135M-Instruct)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--max-steps", type=int, default=20)
    ap.add_argument("--every", type=int, default=2, help="log the held-out loss every N optimizer steps")
    ap.add_argument("--heldout", type=int, default=24, help="held-out problems (~70 tokens each)")
    ap.add_argument("--fresh", action="store_true", help="retrain variants already in the JSON")
    ap.add_argument(
        "--seed", type=int, default=0, help="training seed (adapter init, data order, NLS sampling)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from sqft.demo import DemoConfig
    from sqft.modeling import load_tokenizer
    from sqft.modeling.smollm2 import smollm2_path

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    cfg = DemoConfig(model=args.model or str(smollm2_path()), output=str(root), max_steps=args.max_steps)
    _, models, recipe = _shared_models(cfg, root)
    tokenizer = load_tokenizer(models["sparse"])
    heldout = _heldout_rows(cfg, root, args.heldout, tokenizer, cfg.cutoff)
    out = root / "qa_curves.json"
    saved = json.loads(out.read_text()) if out.is_file() and not args.fresh else {}
    if saved and saved.get("settings", {}).get("seed", 0) != args.seed:
        raise SystemExit(f"{out} holds curves of seed {saved['settings'].get('seed', 0)}: use another --root")
    results = saved.get("variants", {})
    n_tokens = sum(sum(label != -100 for label in r["labels"][1:]) for r in heldout)
    for name in args.variants:
        if name in results:
            logging.info("%s: done already (%s); --fresh to retrain", name, out)
            continue
        work = root / "work" / f"seed{args.seed}"  # never another seed's checkpoints
        results[name] = _train_variant(name, recipe, models, heldout, args.every, work, args.seed)
        meta = {"heldout_examples": len(heldout), "heldout_tokens": n_tokens, "max_steps": args.max_steps}
        meta["seed"] = args.seed
        out.write_text(json.dumps({"settings": meta, "models": models, "variants": results}, indent=1) + "\n")
    table = markdown(results)
    verdicts = {v: within_target(results, v) for v in results if v.startswith("qa")}
    text = table + "\n\nwithin 5% of SparsePEFT at every step >= 10: " + json.dumps(verdicts) + "\n"
    (root / "qa_curves.md").write_text(text)
    plot(results, root / "qa_curves.png")
    print(text)


if __name__ == "__main__":
    main()
