"""Recipes: one YAML file describes a whole SQFT pipeline (SPEC §0); unknown keys are errors.

```yaml
name: sqft-sparsepeft-llama3-8b-gsm8k
model: meta-llama/Meta-Llama-3-8B
pipeline: sqft-sparsepeft            # lora | shears | sqft | sqft-sparsepeft | sqft-qa-sparsepeft
sparsify: {method: wanda, sparsity: 0.5, calibration: c4.jsonl}
quantize: {method: gptq, bits: 4, group_size: 128}        # sqft and sqft-qa-sparsepeft only
finetune:
  data: {source: gsm8k_train.jsonl, format: gsm8k}
  adapter: {adapter: nls, ranks: [32, 24, 16], alpha: 64}
  train: {learning_rate: 3.0e-4, epochs: 3, batch_size: 16}
extract: {config: median}
evaluate: {gsm8k: {task: gsm8k, data: gsm8k_test.jsonl, fewshot_data: gsm8k_train.jsonl}}
export: {format: gguf}                                  # optional, merged pipelines only: last stage
```
Stage sections hold the keys of the stage's own config class (`SparsifyConfig`, `QuantizeConfig`,
`AdaptConfig`, `TrainConfig`, `TaskSpec`, `ExportConfig`), so a recipe can say anything the Python API can, and a typo fails
with the list of valid keys.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from sqft.adapt.config import PIPELINES, AdaptConfig, TrainConfig
from sqft.devices import check_device
from sqft.errors import SqftError
from sqft.evaluate.api import TaskSpec
from sqft.export.api import ExportConfig
from sqft.files import read_text_file
from sqft.quantize.api import QuantizeConfig
from sqft.sparsify.api import SparsifyConfig
from sqft.typecheck import check_field_types

__all__ = ["PIPELINE_STAGES", "Recipe", "load_recipe", "build"]

# pipeline → the stages it runs, in order (SPEC §0)
PIPELINE_STAGES: dict[str, tuple[str, ...]] = {
    "lora": ("finetune", "extract", "merge", "evaluate"),
    "shears": ("sparsify", "finetune", "extract", "evaluate"),
    "sqft": ("sparsify", "quantize", "finetune", "extract", "evaluate"),
    "sqft-sparsepeft": ("sparsify", "finetune", "merge", "evaluate"),
    "sqft-qa-sparsepeft": ("sparsify", "quantize", "finetune", "merge", "evaluate"),
}

_IO_KEYS = {
    "sparsify": {"calibration", "text_field"},
    "quantize": {"calibration", "text_field"},
}

# finetune.data: key → type (the arguments of sqft.data.load_training_examples)
DATA_KEYS: dict[str, type | tuple[type, ...]] = {
    "source": str,
    "format": str,
    "template": str,
    "response_template": str,
    "delimiter": str,
    "split": str,
    "limit": int,
}


def _unknown(where: str, keys: set[str], valid: set[str]) -> None:
    bad = sorted(str(k) for k in keys - valid)
    if bad:
        hints = []
        for k in bad:
            close = difflib.get_close_matches(k, sorted(valid), n=1)
            hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise SqftError(f"{where}: unknown key(s) {', '.join(hints)}; valid keys: {', '.join(sorted(valid))}")


def build(cls: type, section: dict[str, Any] | None, where: str, extra: set[str] = frozenset()) -> Any:
    """Instantiate a config dataclass from a recipe section, refusing unknown keys and wrong types by name."""
    section = mapping(section, where)
    valid = {f.name for f in fields(cls) if f.init}
    _unknown(where, set(section), valid | set(extra))
    kwargs = {
        k: tuple(v) if isinstance(v, list) and k in ("ranks", "targets") else v
        for k, v in section.items()
        if k in valid
    }
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise SqftError(f"{where}: {e}") from e
    except SqftError as e:
        raise SqftError(f"{where}: {e}") from e


def mapping(section: Any, where: str) -> dict[str, Any]:
    """A recipe section as a dict (None → {}); a scalar or a list where a mapping belongs is an error."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise SqftError(
            f"{where}: expected a mapping of keys (key: value lines), got {type(section).__name__} "
            f"{section!r:.60}"
        )
    return dict(section)


def _check_data_section(data: dict[str, Any]) -> None:
    _unknown("finetune.data", set(data), set(DATA_KEYS))
    if "source" not in data:
        raise SqftError("finetune.data: 'source' is required, e.g. source: train.jsonl")
    for key, value in data.items():
        kind = DATA_KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise SqftError(
                f"finetune.data.{key}={value!r:.60} must be {'an integer' if kind is int else 'a string'}"
            )


@dataclass
class Recipe:
    """A whole pipeline. Sections are raw mappings validated by `validate()` against the stage configs."""

    name: str
    model: str
    pipeline: str
    dtype: str = "auto"
    device: str = "cpu"
    sparsify: dict[str, Any] | None = None
    quantize: dict[str, Any] | None = None
    finetune: dict[str, Any] = field(default_factory=dict)
    extract: dict[str, Any] = field(default_factory=lambda: {"config": "median"})
    evaluate: dict[str, dict[str, Any]] = field(default_factory=dict)
    export: dict[str, Any] | None = None  # {format: gguf | compressed-tensors, ...}: the merged model, last
    source: str | None = None  # the file it came from

    @property
    def stages(self) -> tuple[str, ...]:
        return PIPELINE_STAGES[self.pipeline] + (("export",) if self.export is not None else ())

    def validate(self) -> Recipe:
        """Check every section against its stage config (a typo anywhere fails before any work)."""
        try:
            check_field_types(self)
        except SqftError as e:
            raise SqftError(f"recipe: {e}") from e
        if self.pipeline not in PIPELINE_STAGES:
            raise SqftError(f"unknown pipeline '{self.pipeline}': use one of {', '.join(PIPELINE_STAGES)}")
        check_device(self.device, available=False)  # availability: sqft.preflight, before the run
        for stage, cls in (("sparsify", SparsifyConfig), ("quantize", QuantizeConfig)):
            section = getattr(self, stage)
            if stage in self.stages and section is None:
                raise SqftError(f"pipeline '{self.pipeline}' needs a '{stage}:' section")
            if section is not None:
                io = {k: v for k, v in section.items() if k in _IO_KEYS[stage]}
                for key, value in io.items():
                    if not isinstance(value, str):
                        raise SqftError(f"{stage}.{key}={value!r:.60} must be a string")
                build(cls, {k: v for k, v in section.items() if k not in io}, stage, _IO_KEYS[stage])
        ft = dict(self.finetune)
        _unknown("finetune", set(ft), {"data", "adapter", "train"})
        if "data" not in ft:
            raise SqftError("finetune: 'data' is required, e.g. data: {source: train.jsonl, format: gsm8k}")
        _check_data_section(mapping(ft["data"], "finetune.data"))
        build(AdaptConfig, self.adapt_section(), "finetune.adapter")
        build(TrainConfig, ft.get("train"), "finetune.train")
        _unknown("extract", set(self.extract), {"config"})
        if not isinstance(self.extract.get("config", "median"), str):
            raise SqftError(
                f"extract.config={self.extract['config']!r:.60} must be a string (median, FILE.json)"
            )
        for name, spec in self.evaluate.items():
            build(TaskSpec, spec, f"evaluate.{name}")
        self._validate_export()
        return self

    def _validate_export(self) -> None:
        if self.export is None:
            return
        if "merge" not in PIPELINE_STAGES[self.pipeline]:
            raise SqftError(
                f"export: pipeline '{self.pipeline}' ends with a base + adapter, not one model; export the merged "
                "model of lora, sqft-sparsepeft or sqft-qa-sparsepeft (or merge first: sqft merge)"
            )
        build(ExportConfig, self.export, "export")

    def adapt_section(self) -> dict[str, Any]:
        """The adapter section with the pipeline's SparsePEFT / QA switches filled in."""
        sparse, qa = PIPELINES[self.pipeline]
        section = mapping(self.finetune.get("adapter"), "finetune.adapter")
        for key in ("sparse_adapter", "quantization_aware"):
            if key in section:
                raise SqftError(
                    f"finetune.adapter.{key} is set by the pipeline ('{self.pipeline}'); remove it"
                )
        return {**section, "sparse_adapter": sparse, "quantization_aware": qa}


def load_recipe(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe YAML file."""
    p = Path(path)
    if not p.is_file():
        raise SqftError(f"recipe '{p}' does not exist")
    try:
        data = yaml.safe_load(read_text_file(p, "recipe"))
    except yaml.YAMLError as e:
        raise SqftError(f"recipe '{p}' is not valid YAML: {' '.join(str(e).split())}") from e
    if not isinstance(data, dict):
        raise SqftError(f"recipe '{p}' must be a mapping with keys name, model, pipeline, ...")
    data.update(overrides or {})
    _unknown(f"recipe '{p.name}'", set(data), {f.name for f in fields(Recipe)} - {"source"})
    for key in ("name", "model", "pipeline"):
        if key not in data:
            raise SqftError(f"recipe '{p.name}': '{key}' is required")
    return Recipe(**data, source=str(p)).validate()
