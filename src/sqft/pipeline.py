"""The stage sequence: run a recipe's pipeline, one artifact per stage, skipping what is already done.

Every stage writes `ROOT/<stage>-<key>/`, where `key` hashes the stage's recipe section and its parent
artifact. Re-running a recipe therefore skips every stage whose artifact is complete (its `sqft.json` exists:
artifacts are moved into place only when finished) and matches the recipe; a changed section gets a new
directory, and pipelines that share a prefix (the same sparsify step, say) share its artifact. An interrupted
fine-tuning resumes from its last checkpoint, which lives beside the (not yet existing) adapter directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqft.adapt.config import FP16_QA_BASES, AdaptConfig, TrainConfig
from sqft.adapt.export import read_elastic_config
from sqft.artifacts import MANIFEST, fingerprint, read_manifest
from sqft.data import load_training_examples
from sqft.errors import SqftError
from sqft.evaluate.api import TaskSpec
from sqft.export.api import ExportConfig
from sqft.preflight import check_recipe_inputs
from sqft.quantize.api import QuantizeConfig
from sqft.recipe import Recipe, build
from sqft.sparsify.api import SparsifyConfig
from sqft.stages import (
    EvaluateOptions,
    StageIO,
    run_evaluate,
    run_export,
    run_extract,
    run_finetune,
    run_merge,
    run_quantize,
    run_sparsify,
)

__all__ = [
    "PipelineState",
    "evaluate_once",
    "evaluate_section",
    "evaluate_unmerged",
    "run_recipe",
    "stage_dir",
]

log = logging.getLogger(__name__)


@dataclass
class PipelineState:
    """What the stages so far produced (paths of artifacts), threaded through the pipeline."""

    model: str  # the recipe's input model
    current: str  # the newest model artifact (sparse / INT4 / merged)
    sparse: str | None = None
    int4: str | None = None
    adapter_base: str | None = None  # the model the adapter was trained on
    adapter: str | None = None
    final_adapter: str | None = None  # extracted sub-adapter (plain LoRA pipelines)
    dirs: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    results: dict[str, Any] | None = None


# the name `stage_dir` gives an artifact: unique by its hash, so a key may name it without its root
STAGE_DIR_NAME = re.compile(r"[a-z][a-z-]*-[0-9a-f]{10}")


def _identity(path: str) -> str:
    """A parent's identity in stage keys: a stage directory's name (the key survives moving the root), else the
    model id / path as given (two artifacts both called `adapter` or `merged` are not the same parent)."""
    p = Path(path)
    return p.name if STAGE_DIR_NAME.fullmatch(p.name) and (p / MANIFEST).is_file() else str(path)


def stage_dir(root: Path, stage: str, section: Any, parent: str) -> Path:
    blob = json.dumps(
        {"stage": stage, "section": section, "parent": _identity(parent)}, sort_keys=True, default=str
    )
    return root / f"{stage}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def _complete(d: Path) -> bool:
    """Made (it has its manifest), and from its parent as that parent is now: an artifact whose parent changed in
    place since (its recorded fingerprint differs) is refused, never reused. A parent that is gone from its
    recorded path (a moved root), or a hub id, is not checked."""
    manifest = read_manifest(d)
    if manifest is None:
        return False
    parent, recorded = manifest.get("parent"), manifest.get("parent_fingerprint")
    actual = fingerprint(parent) if isinstance(parent, str) and Path(parent).exists() else None
    if recorded is not None and actual is not None and actual != recorded:
        raise SqftError(
            f"'{d}' was made from '{parent}' (fingerprint {recorded[:12]}), which has changed since "
            f"({actual[:12]}): delete '{d}' to make it again from the new one, or use another work directory"
        )
    return True


def _sparsify(recipe: Recipe, st: PipelineState, out: Path, quiet: bool) -> None:
    sec = dict(recipe.sparsify or {})
    cfg = build(
        SparsifyConfig, {k: v for k, v in sec.items() if k not in ("calibration", "text_field")}, "sparsify"
    )
    cfg.device = recipe.device
    io = StageIO(
        st.current,
        str(out),
        sec.get("calibration"),
        sec.get("text_field", "text"),
        dtype=recipe.dtype,
        quiet=quiet,
    )
    run_sparsify(io, cfg)


def _quantize(recipe: Recipe, st: PipelineState, out: Path, quiet: bool) -> None:
    sec = dict(recipe.quantize or {})
    calib = sec.pop("calibration", None) or (recipe.sparsify or {}).get("calibration")
    field_ = sec.pop("text_field", None) or (recipe.sparsify or {}).get("text_field", "text")
    cfg = build(QuantizeConfig, sec, "quantize")
    cfg.device = recipe.device
    run_quantize(StageIO(st.current, str(out), calib, field_, dtype=recipe.dtype, quiet=quiet), cfg)


def _finetune(recipe: Recipe, st: PipelineState, out: Path, quiet: bool) -> None:
    adapt = build(AdaptConfig, recipe.adapt_section(), "finetune.adapter")
    train = build(TrainConfig, recipe.finetune.get("train"), "finetune.train")
    data = dict(recipe.finetune["data"])
    examples = load_training_examples(data.pop("source"), data.pop("format", "auto"), **data)
    qa_fp16 = _qa_fp16(recipe)  # auto: the sparse parent is always there, so gptq-residual
    base = st.sparse if qa_fp16 else st.current
    run_finetune(
        base,
        examples,
        adapt,
        train,
        out,
        dtype=recipe.dtype,
        qa_int4=st.int4 if qa_fp16 else None,
        progress=not quiet,
    )
    st.adapter_base = base


def _qa_fp16(recipe: Recipe) -> bool:
    """Whether the recipe's QA adapter trains on the fp16 sparse model (qa_base fp16, or auto in a pipeline)."""
    adapt = recipe.adapt_section()
    return bool(adapt["quantization_aware"]) and adapt.get("qa_base", "auto") in (*FP16_QA_BASES, "auto")


def _trained_on_fp16(adapter: str) -> bool:
    """Whether a finished adapter was trained on the fp16 base, qa_base fp16 or gptq-residual (its saved
    configuration says)."""
    cfg = read_elastic_config(adapter)["adapt_config"]
    return bool(cfg.get("quantization_aware")) and cfg.get("qa_base") in FP16_QA_BASES


def _extract(recipe: Recipe, st: PipelineState, out: Path, quiet: bool) -> None:
    run_extract(st.adapter, recipe.extract.get("config", "median"), out)


def _merge(recipe: Recipe, st: PipelineState, out: Path, quiet: bool) -> None:
    adapt = recipe.adapt_section()
    elastic = adapt.get("adapter", "nls") == "nls"
    qa_fp16 = _trained_on_fp16(st.adapter)
    run_merge(
        st.adapter_base,
        st.adapter,
        out,
        recipe.extract.get("config", "median") if elastic else None,
        allow_densify=recipe.pipeline == "lora",
        dtype=recipe.dtype,
        qa_int4=st.int4 if qa_fp16 else None,
    )


def _export(recipe: Recipe, st: PipelineState, out: Path, quiet: bool) -> None:
    run_export(st.current, out, build(ExportConfig, recipe.export, "export"))


def _evaluate(recipe: Recipe, st: PipelineState, out: Path, quiet: bool) -> None:
    specs = {name: build(TaskSpec, spec, f"evaluate.{name}") for name, spec in recipe.evaluate.items()}
    opts = EvaluateOptions(adapter=st.final_adapter, device=recipe.device, dtype=recipe.dtype, quiet=quiet)
    st.results = run_evaluate(st.current, specs, out, opts).results


_RUNNERS = {
    "sparsify": _sparsify,
    "quantize": _quantize,
    "finetune": _finetune,
    "extract": _extract,
    "merge": _merge,
    "evaluate": _evaluate,
    "export": _export,
}


def _advance(st: PipelineState, stage: str, d: Path, recipe: Recipe) -> None:
    """Record a finished stage's artifact in the state."""
    path = str(d)
    st.dirs[stage] = path
    if stage in ("sparsify", "quantize", "merge"):
        st.current = path
        if stage == "sparsify":
            st.sparse = path
        if stage == "quantize":
            st.int4 = path
    elif stage == "finetune":
        st.adapter = st.final_adapter = path
        if st.adapter_base is None:  # skipped: which model the adapter was trained on, from its own config
            st.adapter_base = st.sparse if _trained_on_fp16(path) else st.current
    elif stage == "extract":
        st.final_adapter = path
    if stage == "merge":
        st.final_adapter = None
    if stage == "evaluate" and st.results is None:
        st.results = json.loads((d / "results.json").read_text())


def _section(recipe: Recipe, stage: str, adapter: str | None = None) -> Any:
    if stage == "finetune":
        section = {"finetune": recipe.finetune, "pipeline": recipe.pipeline}
        adapt = recipe.adapt_section()
        if adapt["quantization_aware"] and adapt.get("qa_base", "auto") == "auto":
            # what auto means here (so adapters cached under the old default, gptq, are not taken for it)
            section["qa_base"] = "gptq-residual"
        return section
    if stage == "merge":
        return {"extract": recipe.extract, "pipeline": recipe.pipeline}
    if stage == "quantize":
        return {"quantize": recipe.quantize, "calibration": (recipe.sparsify or {}).get("calibration")}
    if stage == "evaluate":
        return evaluate_section(recipe.evaluate, adapter)
    return getattr(recipe, stage)


def evaluate_section(
    tasks: dict[str, Any], adapter: str | None, qa_int4: str | None = None
) -> dict[str, Any]:
    """An evaluation's key: its tasks and the adapter applied (the model is the parent)."""
    section = {"tasks": tasks, "adapter": None if adapter is None else _identity(adapter)}
    return section if qa_int4 is None else section | {"qa_int4": qa_int4}


def evaluate_once(
    root: str | os.PathLike,
    model: str,
    tasks: dict[str, Any],
    adapter: str | None = None,
    device: str = "cpu",
    dtype: str = "auto",
    quiet: bool = False,
    qa_int4: str | None = None,
) -> Path:
    """The evaluation artifact of `model` (plus `adapter`) on `tasks` (recipe-style dicts) under `root`, made
    once: cached in the directory a pipeline's own evaluate stage would use (`stage_dir`)."""
    out = stage_dir(Path(root), "evaluate", evaluate_section(tasks, adapter, qa_int4), model)
    if not _complete(out):
        specs = {name: build(TaskSpec, spec, f"evaluate.{name}") for name, spec in tasks.items()}
        opts = EvaluateOptions(adapter=adapter, device=device, dtype=dtype, quiet=quiet, qa_int4=qa_int4)
        run_evaluate(model, specs, out, opts)
    return out


def evaluate_unmerged(
    root: str | os.PathLike,
    state: PipelineState,
    tasks: dict[str, Any],
    device: str = "cpu",
    dtype: str = "auto",
    quiet: bool = False,
) -> Path:
    """A merged pipeline's adapter, *not* merged: its median sub-adapter (what `merge` folds in) on the model it
    was trained on (for QA on the fp16 base, with the INT4 layers it trained with), evaluated once under `root` —
    the other side of "merged = unmerged"."""
    sub = Path(root) / f"sub-median-{Path(state.dirs['finetune']).name}"
    if not _complete(sub):
        run_extract(state.dirs["finetune"], "median", sub)
    qa_int4 = state.int4 if _trained_on_fp16(state.dirs["finetune"]) else None
    return evaluate_once(root, state.adapter_base, tasks, str(sub), device, dtype, quiet, qa_int4)


def run_recipe(
    recipe: Recipe, root: str | os.PathLike, quiet: bool = False, until: str | None = None
) -> PipelineState:
    """Run (or resume) every stage of the recipe's pipeline under `root`; returns where everything is.

    Every input the recipe names is checked first (`sqft.preflight`), so a bad file fails before any stage.
    `until`: stop after that stage (e.g. 'quantize': the sparse and INT4 models a benchmark shares).
    """
    root = Path(root)
    if until is not None and until not in recipe.stages:
        raise SqftError(
            f"until='{until}' is not a stage of pipeline '{recipe.pipeline}': use one of {recipe.stages}"
        )
    check_recipe_inputs(recipe, root)
    root.mkdir(parents=True, exist_ok=True)
    st = PipelineState(model=recipe.model, current=recipe.model)
    stages = [s for s in recipe.stages if not (s == "extract" and _fixed_rank(recipe))]
    for stage in stages:
        parent = st.adapter if stage == "extract" else st.current
        section = _section(recipe, stage, st.final_adapter)
        d = stage_dir(root, stage, section, parent if stage != "merge" else st.adapter)
        if _complete(d):
            log.info("%s: up to date (%s)", stage, d.name)
            st.skipped.append(stage)
        else:
            log.info("%s: running -> %s", stage, d.name)
            _RUNNERS[stage](recipe, st, d, quiet)
        _advance(st, stage, d, recipe)
        if stage == until:
            return st
    summary = {
        "recipe": recipe.source,
        "name": recipe.name,
        "pipeline": recipe.pipeline,
        "stages": st.dirs,
        "results": st.results,
    }
    (root / f"{recipe.name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return st


def _fixed_rank(recipe: Recipe) -> bool:
    return (recipe.finetune.get("adapter") or {}).get("adapter", "nls") == "lora"
