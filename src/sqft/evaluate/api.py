"""Evaluation entry points: a task spec per benchmark, one dispatcher, results as JSON and a table."""

from __future__ import annotations

import glob
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import sqft.data as D
from sqft.calibration.data import load_texts
from sqft.errors import OutputExistsError, SqftError
from sqft.evaluate import gsm8k, instructions, lm_eval_backend, multiple_choice, perplexity
from sqft.evaluate.intervals import ACCURACY_METRICS, metric_interval
from sqft.quantize.qlinear import dequantized_weights
from sqft.typecheck import check_field_types

__all__ = [
    "BACKENDS",
    "TASKS",
    "TaskSpec",
    "sibling_train_split",
    "evaluate",
    "load_task_data",
    "run_task",
    "check_results_path",
    "write_results",
    "format_table",
]

log = logging.getLogger(__name__)

TASKS = ("gsm8k", "math", "mc", "commonsense-gen", "perplexity")
BACKENDS = ("sqft", "lm-eval")
_DEFAULT_NEW_TOKENS = {"gsm8k": 256, "math": 256, "commonsense-gen": 32}


@dataclass
class TaskSpec:
    """One benchmark run: the task kind, its data, and how to run it.

    task: gsm8k | math | mc | commonsense-gen | perplexity. data: a .jsonl/.json/.parquet file or a hub id
    (perplexity also takes .txt). fewshot_data: GSM8K solved examples (defaults to `data`'s train split on the
    hub; for a file to a sibling train file, `train.jsonl` or the name with 'test' replaced by 'train',
    and otherwise it must be given when n_shot > 0). delimiter: text between an MC query and a choice (None:
    per query, see `sqft.data.auto_delimiter`). max_new_tokens: None → 256 for math/gsm8k, 32 for
    commonsense-gen. add_bos: prefix a BOS token (lm-eval does not by default). backend: who scores an mc
    task, sqft or lm-eval (`sqft.evaluate.lm_eval_backend`, the `lm-eval` extra); other tasks are sqft's only.
    """

    task: str
    data: str
    fewshot_data: str | None = None
    n_shot: int = 5
    limit: int | None = None
    batch_size: int = 8
    max_new_tokens: int | None = None
    delimiter: str | None = None
    seq_len: int = 2048
    text_field: str = "text"
    split: str = "test"
    add_bos: bool = False
    seed: int = 1234
    backend: str = "sqft"

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.task not in TASKS:
            raise SqftError(f"unknown task '{self.task}': known tasks are {', '.join(TASKS)}")
        if self.backend not in BACKENDS:
            raise SqftError(f"unknown backend '{self.backend}': known backends are {', '.join(BACKENDS)}")
        if self.backend != "sqft" and self.task != "mc":
            raise SqftError(
                f"backend '{self.backend}' runs only the mc task, not '{self.task}': use backend 'sqft'"
            )
        for name in ("batch_size", "seq_len") + (("limit",) if self.limit is not None else ()):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SqftError(f"{name} must be a positive integer, got {value!r}")
        if self.n_shot < 0:
            raise SqftError(f"n_shot must be 0 or more, got {self.n_shot}")
        if self.max_new_tokens is None:
            self.max_new_tokens = _DEFAULT_NEW_TOKENS.get(self.task, 256)
        if self.max_new_tokens < 1:
            raise SqftError(f"max_new_tokens must be positive, got {self.max_new_tokens}")
        if (
            self.task == "gsm8k"
            and self.n_shot > 0
            and self.fewshot_data is None
            and Path(self.data).exists()
        ):
            sibling = sibling_train_split(self.data)
            if sibling is None:
                raise SqftError(
                    f"{self.n_shot}-shot GSM8K needs solved examples that are not the test items: pass "
                    "--fewshot-data (e.g. the train split) or --n-shot 0"
                )
            log.info("GSM8K few-shot examples from the sibling train split '%s'", sibling)
            self.fewshot_data = str(sibling)


def sibling_train_split(data: str | os.PathLike) -> Path | None:
    """The train file beside a test file: the name with 'test' replaced by 'train', or `train<suffix>`."""
    p = Path(data)
    for name in (p.name.replace("test", "train"), f"train{p.suffix}"):
        candidate = p.with_name(name)
        if candidate.is_file() and candidate.resolve() != p.resolve():
            return candidate
    return None


def load_task_data(spec: TaskSpec) -> dict:
    """The spec's data, read and validated (so a bad file fails before any model is loaded).

    `{"texts"}` for perplexity, `{"examples"}` otherwise, plus `{"fewshot"}` for GSM8K.
    """
    if spec.task == "perplexity":
        return {"texts": load_texts(spec.data, field=spec.text_field, split=spec.split)}
    if spec.task == "mc":
        return {"examples": D.load_multiple_choice(spec.data, spec.split, spec.limit)}
    if spec.task == "gsm8k":
        shots = D.load_gsm8k(spec.fewshot_data or spec.data, "train") if spec.n_shot else []
        return {"examples": D.load_gsm8k(spec.data, spec.split, spec.limit), "fewshot": shots}
    return {"examples": D.load_instructions(spec.data, spec.split, spec.limit)}


def run_task(
    model: nn.Module,
    tokenizer,
    spec: TaskSpec,
    device: str | None = None,
    progress: bool = True,
    data: dict | None = None,
) -> dict:
    """Run one task (loading its data unless `data` from `load_task_data` is given); its metrics.

    An mc task's metrics name the backend that scored it.
    """
    data = data if data is not None else load_task_data(spec)
    common = {"batch_size": spec.batch_size, "limit": spec.limit, "device": device, "progress": progress}
    if spec.task == "perplexity":
        return perplexity.evaluate_perplexity(model, tokenizer, data["texts"], spec.seq_len, **common)
    examples = data["examples"]
    if spec.task == "mc":
        score = (
            multiple_choice.evaluate_multiple_choice
            if spec.backend == "sqft"
            else lm_eval_backend.evaluate_multiple_choice_lm_eval
        )
        metrics = score(model, tokenizer, examples, spec.delimiter, add_bos=spec.add_bos, **common)
        return {**metrics, "backend": spec.backend}
    gen = {**common, "max_new_tokens": spec.max_new_tokens, "add_bos": spec.add_bos}
    if spec.task == "gsm8k":
        return gsm8k.evaluate_gsm8k(
            model, tokenizer, examples, data["fewshot"], spec.n_shot, seed=spec.seed, **gen
        )
    if spec.task == "math":
        return instructions.evaluate_math(model, tokenizer, examples, **gen)
    return instructions.evaluate_commonsense_gen(model, tokenizer, examples, **gen)


def evaluate(
    model: nn.Module,
    tokenizer,
    tasks: dict[str, TaskSpec],
    device: str | None = None,
    progress: bool = True,
    data: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """Run every task; `{name: metrics}` with each task's sample count `n` and wall time `seconds`.

    `data` may hold pre-loaded `load_task_data` results by task name.
    """
    results = {}
    for name, spec in tasks.items():
        t0 = time.perf_counter()
        with torch.inference_mode(), dequantized_weights(model):
            metrics = run_task(model, tokenizer, spec, device, progress, (data or {}).get(name))
        metrics["seconds"] = round(time.perf_counter() - t0, 3)
        log.info(
            "%s: %s",
            name,
            {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and k != "items_sha256"},
        )
        results[name] = metrics
    return results


def check_results_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an existing results file (unless `overwrite`) or a missing parent, before any work starts."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"results file '{p}' already exists: choose another path or pass --overwrite")
    if p.is_dir():
        raise SqftError(f"results path '{p}' is a directory: name a .json file")
    if p.exists() and not _is_results_file(p):
        raise SqftError(
            f"'{p}' is not a results file of sqft evaluate: --overwrite replaces only those; choose another path"
        )
    if not p.resolve().parent.is_dir():
        raise SqftError(f"the directory of results file '{p}' does not exist: create it first")
    return p


def _is_results_file(p: Path) -> bool:
    """Whether `p` is what `write_results` writes: a JSON object with a "results" mapping."""
    try:
        payload = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(payload, dict) and isinstance(payload.get("results"), dict)


def write_results(
    results: dict, path: str | os.PathLike, overwrite: bool = False, meta: dict | None = None
) -> Path:
    """Write `{"results": {task: metrics}, **meta}` as JSON atomically (temp file, then rename).

    The temporary file is `.NAME.tmp-PID-*`; those of killed runs are removed by the next write."""
    p = check_results_path(path, overwrite)
    _remove_stale_temporaries(p)
    payload = {"results": results, **(meta or {})}
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.tmp-{os.getpid()}-", dir=p.resolve().parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _remove_stale_temporaries(p: Path) -> None:
    """Delete `.NAME.tmp-PID-*` files beside results file `p` whose process is gone (a kill -9 mid-write)."""
    for tmp in p.resolve().parent.glob(f".{glob.escape(p.name)}.tmp-*"):
        pid = tmp.name[len(p.name) + 6 :].split("-")[0]
        if tmp.is_file() and pid.isdigit() and not _alive(int(pid)):
            log.warning("removing %s, left by a killed run", tmp)
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table: one row per task and metric, with its 95% interval (accuracies) and n."""
    rows = [("task", "metric", "value", "95% CI", "n")]
    for task, metrics in results.items():
        for key, value in metrics.items():
            if key in ("n", "n_shot", "seconds") or isinstance(value, (list, dict, str, bool)):
                continue
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            ci = metric_interval(metrics, key) if key in ACCURACY_METRICS else None
            shown_ci = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
            rows.append((task, key, shown, shown_ci, str(metrics.get("n", metrics.get("n_tokens", "")))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
