"""Check a recipe's inputs before any stage runs, with the code the stages use, so that `sqft run --check`
saying "valid" means the run will not fail on its input (and `sqft run` fails in seconds, not after hours).

Checked: the device; the run directory can be written; the model source (config, tokenizer files, weight
headers); every local file a section names (calibration text, training data, evaluation data and few-shot
examples, an extract configuration) is read and parsed as its stage will read it; with a local model's
tokenizer, that the calibration text gives the windows asked for and that training examples fit the cutoff.
Hub ids cannot be checked offline: they are returned as notes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sqft.adapt.config import TrainConfig
from sqft.artifacts import check_writable
from sqft.calibration import calibration_windows, load_texts
from sqft.data import build_training_dataset, load_training_examples
from sqft.devices import check_device
from sqft.errors import SqftError
from sqft.evaluate.api import TaskSpec, load_task_data
from sqft.files import read_json_file
from sqft.modeling.io import config_dict, load_tokenizer, resolve_source
from sqft.quantize.api import QuantizeConfig
from sqft.recipe import Recipe, build
from sqft.sparsify.api import SparsifyConfig

__all__ = ["check_recipe_inputs", "is_local"]

log = logging.getLogger(__name__)

_FILE_SUFFIXES = (".txt", ".jsonl", ".json", ".parquet", ".gguf", ".yaml")


def is_local(source: Any) -> bool:
    """Whether a source names a local path (as the loaders decide) rather than a hub id."""
    s = str(source)
    return Path(s).exists() or Path(s).suffix.lower() in _FILE_SUFFIXES or s.startswith((".", "/", "~"))


def _check_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise SqftError(f"run directory '{root}' is a file: choose a directory")
    existing = next(p for p in (root, *root.resolve().parents) if p.exists())
    check_writable(existing / ".sqft-run" if existing == root else existing / root.name)


def _model(recipe: Recipe, notes: list[str]) -> tuple[Any, int | None]:
    """The tokenizer and max positions of a local model (None for a hub id, noted)."""
    if not is_local(recipe.model):
        notes.append(f"model '{recipe.model}' is a hub id: it is fetched when the first stage runs")
        return None, None
    where, gguf = resolve_source(recipe.model)
    max_pos = None if gguf else (config_dict(where) or {}).get("max_position_embeddings")
    return load_tokenizer(recipe.model), max_pos


def _calibration(recipe: Recipe, tokenizer: Any, max_pos: int | None, notes: list[str]) -> None:
    first = recipe.sparsify or {}
    for stage, cls in (("sparsify", SparsifyConfig), ("quantize", QuantizeConfig)):
        if stage not in recipe.stages:
            continue
        sec = dict(getattr(recipe, stage) or {})
        calib = sec.pop("calibration", None) or (first.get("calibration") if stage == "quantize" else None)
        field = sec.pop("text_field", None) or first.get("text_field", "text")
        cfg = build(cls, sec, stage)
        if not cfg.needs_calibration:
            continue
        if calib is None:
            raise SqftError(f"{stage}: method '{cfg.method}' needs calibration data: add 'calibration: FILE'")
        if not is_local(calib):
            notes.append(f"{stage}: calibration '{calib}' is a hub dataset: read when the stage runs")
            continue
        texts = load_texts(calib, field)
        if tokenizer is not None:
            seq_len = min(cfg.seq_len, max_pos or cfg.seq_len)
            calibration_windows(tokenizer, texts, cfg.n_samples, seq_len, cfg.seed)


def _training_data(recipe: Recipe, tokenizer: Any, notes: list[str]) -> None:
    data = dict(recipe.finetune["data"])
    source = data.pop("source")
    if not is_local(source):
        notes.append(f"finetune: data '{source}' is a hub dataset: read when the stage runs")
        return
    examples = load_training_examples(source, data.pop("format", "auto"), **data)
    if tokenizer is not None:
        train = build(TrainConfig, recipe.finetune.get("train"), "finetune.train")
        build_training_dataset(tokenizer, examples, train.cutoff, train.mask_prompt, add_bos=train.add_bos)


def _extract_and_evaluate(recipe: Recipe, notes: list[str]) -> None:
    spec = recipe.extract.get("config", "median")
    if spec.endswith(".json"):
        if not Path(spec).is_file():
            raise SqftError(f"extract: configuration file '{spec}' does not exist")
        read_json_file(spec, "extract configuration")
    for name, section in recipe.evaluate.items():
        task = build(TaskSpec, section, f"evaluate.{name}")
        if not is_local(task.data):
            notes.append(f"evaluate.{name}: data '{task.data}' is a hub dataset: read when the stage runs")
            continue
        try:
            load_task_data(task)
        except SqftError as e:
            raise SqftError(f"evaluate.{name}: {e}") from e


def check_recipe_inputs(recipe: Recipe, root: str | os.PathLike | None = None) -> list[str]:
    """Check everything a recipe's run reads before any stage runs; returns what could not be checked."""
    notes: list[str] = []
    check_device(recipe.device)
    if root is not None:
        _check_root(Path(root))
    tokenizer, max_pos = _model(recipe, notes)
    _calibration(recipe, tokenizer, max_pos, notes)
    _training_data(recipe, tokenizer, notes)
    _extract_and_evaluate(recipe, notes)
    for note in notes:
        log.info("not checked offline: %s", note)
    return notes
