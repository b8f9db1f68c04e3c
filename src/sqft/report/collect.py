"""Collect one report row per artifact: its manifest, its evaluation results and its ancestors' figures.

An artifact is a directory with `sqft.json` (any stage), or a plain Hugging Face model / PEFT adapter
directory (a baseline nobody ran through sqft). Figures an artifact lacks are looked up along its `parent`
links (an adapter inherits the sparsity and bit width of the base it was trained on; a merged model inherits
the fine-tuning cost of its adapter). Anything still unknown stays `None` and is shown as "–".
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqft.artifacts import MANIFEST, dir_size_bytes, read_manifest
from sqft.errors import SqftError
from sqft.evaluate.intervals import metric_interval

__all__ = [
    "Artifact",
    "ReportRow",
    "load_artifact",
    "lineage",
    "collect_row",
    "collect_rows",
    "read_results",
    "primary_metrics",
]

log = logging.getLogger(__name__)

RESULTS_GLOB = "results*.json"
ELASTIC_CONFIG = "elastic_adapter_config.json"
RANK_CONFIG = "configuration.json"
_MODEL_FILES = ("config.json", "adapter_config.json")
_MAX_DEPTH = 32  # parent links followed at most (a cycle or a very long chain stops here)
TRAIN_SECONDS = ("train_seconds", "train_runtime_s")
TRAIN_PEAK = ("train_peak_memory_bytes",)
_DTYPE_BITS = {"float32": 32, "float16": 16, "bfloat16": 16}


@dataclass
class Artifact:
    """One directory: its path and manifest (empty for a plain checkpoint)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config") or {}

    @property
    def figures(self) -> dict[str, Any]:
        return self.manifest.get("figures") or {}

    @property
    def stage(self) -> str | None:
        return self.manifest.get("stage")


@dataclass
class ReportRow:
    """Everything the report shows about one artifact (None = unknown)."""

    label: str
    path: Path
    stage: str | None = None
    pipeline: str | None = None
    tasks: dict[str, dict[str, float]] = field(default_factory=dict)  # task → primary metric → value
    n: dict[str, int] = field(default_factory=dict)  # task → items (or tokens, perplexity) evaluated
    # task → metric → 95% interval (accuracies only)
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    # task → {"correct": {metric: "0110…"}, "items_sha256": …}: per-item outcomes, for paired comparisons
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    sparsity: float | None = None  # fraction of zeros over the target linears
    bits: int | None = None
    size_bytes: int | None = None
    trainable_parameters: int | None = None
    train_seconds: float | None = None
    train_peak_memory_bytes: int | None = None
    latency_ms_per_token: float | None = None
    tokens_per_second: float | None = None
    rank_config: dict[str, int] | None = None  # chosen NLS configuration (group → rank)
    rank_space: dict[str, list[int]] | None = None  # group → elastic ranks

    @property
    def group(self) -> str:
        """What plots group by: the pipeline, else the label."""
        return self.pipeline or self.label


def load_artifact(path: str | os.PathLike) -> Artifact:
    """The artifact at `path`; SqftError when it does not exist or is neither an sqft artifact nor a model."""
    p = Path(path)
    if not p.exists():
        raise SqftError(f"artifact '{p}' does not exist")
    if not p.is_dir():
        raise SqftError(f"'{p}' is a file, not an artifact: pass a directory written by an sqft stage")
    manifest = read_manifest(p)
    if manifest is None:
        if not any((p / name).is_file() for name in _MODEL_FILES):
            raise SqftError(
                f"'{p}' is not an artifact: it has no {MANIFEST} (written by every sqft stage), config.json "
                "or adapter_config.json; pass the output directory of an sqft stage"
            )
        manifest = {}
    if not isinstance(manifest, dict):
        raise SqftError(f"'{p / MANIFEST}' does not hold a JSON object: the artifact is damaged")
    return Artifact(p, manifest)


def lineage(path: str | os.PathLike) -> list[Artifact]:
    """The artifact followed by its ancestors (nearest first), as far as `parent` names local artifacts."""
    chain = [load_artifact(path)]
    seen = {chain[0].path.resolve()}
    while len(chain) < _MAX_DEPTH:
        parent = chain[-1].manifest.get("parent")
        if not isinstance(parent, str) or not parent:
            break
        p = Path(parent)
        if not p.is_absolute() and (chain[-1].path / p).is_dir():
            p = chain[-1].path / p
        # else relative to the working directory: how `sqft evaluate` named parents before they were absolute
        if not p.is_dir() or p.resolve() in seen:
            break  # a hub id, a moved directory or a cycle: the chain ends here
        try:
            chain.append(load_artifact(p))
        except SqftError as e:
            log.warning("not following parent of '%s': %s", chain[-1].path, e)
            break
        seen.add(p.resolve())
    return chain


def _first(chain: list[Artifact], get: Callable[[Artifact], Any]) -> Any:
    """The first non-None value of `get(artifact)` along the chain."""
    for a in chain:
        value = get(a)
        if value is not None:
            return value
    return None


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _sparsity(a: Artifact) -> float | None:
    """Measured sparsity of the artifact itself, else the sparsity its config asked for."""
    s = a.figures.get("sparsity")
    if isinstance(s, dict):
        s = s.get("total")
    measured = _number(s) if s is not None else _number(a.figures.get("sparsity_after"))
    return measured if measured is not None else _number(a.config.get("sparsity"))


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:  # JSONDecodeError, UnicodeDecodeError (a binary file)
        log.warning("ignoring unreadable '%s': %s", path, e)
        return None


def _bits(a: Artifact) -> int | None:
    """Bit width: the stage config's `bits`, else the checkpoint's quantization config or dtype."""
    bits = _number(a.config.get("bits"))
    if bits is not None:
        return int(bits)
    cfg = _json(a.path / "config.json") if (a.path / "config.json").is_file() else None
    if not isinstance(cfg, dict):
        return None
    qbits = _number((cfg.get("quantization_config") or {}).get("bits"))
    if qbits is not None:
        return int(qbits)
    return _DTYPE_BITS.get(str(cfg.get("dtype") or cfg.get("torch_dtype")))


def _finetune_figure(a: Artifact, names: tuple[str, ...], generic: str) -> float | None:
    """A fine-tuning figure under one of `names`, or the stage's generic figure when `a` is a finetune stage."""
    keys = names + ((generic,) if a.stage == "finetune" else ())
    return next((v for k in keys if (v := _number(a.figures.get(k))) is not None), None)


def read_results(directory: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """task → metrics from every `results*.json` in `directory` (the `{"results": ...}` wrapper optional)."""
    tasks: dict[str, dict[str, Any]] = {}
    for p in sorted(Path(directory).glob(RESULTS_GLOB)):
        data = _json(p)
        if isinstance(data, dict) and isinstance(data.get("results"), dict):
            data = data["results"]
        if not isinstance(data, dict):
            continue
        tasks.update({str(t): m for t, m in data.items() if isinstance(m, dict)})
    return tasks


# Metrics reported per task, in order of preference; a task shows every one of the first matching tuple.
PRIMARY = (("flexible_match",), ("acc", "acc_norm"), ("accuracy",), ("perplexity",), ("exact_match",))


def primary_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics the report shows for one task (gsm8k: flexible_match, mc: acc and acc_norm, ...)."""
    for names in PRIMARY:
        found = {n: float(metrics[n]) for n in names if _number(metrics.get(n)) is not None}
        if found:
            return found
    return {}


def _add_results(row: ReportRow, results: dict[str, dict[str, Any]]) -> None:
    """The primary metrics of every task, with n, 95% intervals and per-item outcomes where recorded."""
    for task, metrics in results.items():
        primary = primary_metrics(metrics)
        if not primary:
            continue
        row.tasks[task] = primary
        n = metrics.get("n", metrics.get("n_tokens"))
        if isinstance(n, int) and not isinstance(n, bool):
            row.n[task] = n
        cis = {m: ci for m in primary if (ci := metric_interval(metrics, m)) is not None}
        if cis:
            row.intervals[task] = cis
        if isinstance(metrics.get("correct"), dict) and isinstance(metrics.get("items_sha256"), str):
            row.outcomes[task] = {"correct": metrics["correct"], "items_sha256": metrics["items_sha256"]}


def _adapter_dir(a: Artifact) -> Path | None:
    for d in (a.path, a.path / "adapter"):
        if (d / ELASTIC_CONFIG).is_file() or (d / "adapter_config.json").is_file():
            return d
    return None


def _rank_space(chain: list[Artifact]) -> dict[str, list[int]] | None:
    """group → elastic ranks from the nearest adapter with NLS groups."""
    for a in chain:
        d = _adapter_dir(a)
        meta = _json(d / ELASTIC_CONFIG) if d is not None and (d / ELASTIC_CONFIG).is_file() else None
        groups = meta.get("groups") if isinstance(meta, dict) else None
        if isinstance(groups, dict) and groups:
            return {
                str(g): [int(r) for r in v.get("space", [])] for g, v in groups.items() if isinstance(v, dict)
            }
    return None


def _rank_config(a: Artifact) -> dict[str, int] | None:
    p = a.path / RANK_CONFIG
    data = _json(p) if p.is_file() else None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if isinstance(data, dict) and data and all(_number(v) is not None for v in data.values()):
        return {str(g): int(r) for g, r in data.items()}
    return None


def _own_size(a: Artifact) -> float | None:
    """The recorded size; a plain checkpoint (no manifest) is measured like a stage would have."""
    if not a.manifest:
        return float(dir_size_bytes(a.path))
    return _number(a.figures.get("size_on_disk_bytes"))


def _size_bytes(chain: list[Artifact]) -> int | None:
    """Bytes needed to run the artifact: its own files, plus the base model's when it is an adapter only."""
    own = _own_size(chain[0])
    if own is None or (chain[0].path / "config.json").is_file():
        return None if own is None else int(own)
    base = _first(chain[1:], lambda a: _own_size(a) if (a.path / "config.json").is_file() else None)
    return int(own + base) if base is not None else int(own)


def collect_row(path: str | os.PathLike, label: str | None = None) -> ReportRow:
    """The report row of one artifact, with missing figures filled in from its ancestors."""
    chain = lineage(path)
    a = chain[0]
    row = ReportRow(label=label or a.path.resolve().name, path=a.path, stage=a.stage)
    row.pipeline = _first(chain, lambda x: x.config.get("pipeline"))
    _add_results(row, read_results(a.path))
    row.sparsity = _first(chain, _sparsity)
    row.bits = _first(chain, _bits)
    row.size_bytes = _size_bytes(chain)
    params = _first(chain, lambda x: _number(x.figures.get("trainable_parameters")))
    row.trainable_parameters = None if params is None else int(params)
    row.train_seconds = _first(chain, lambda x: _finetune_figure(x, TRAIN_SECONDS, "seconds"))
    peak = _first(chain, lambda x: _finetune_figure(x, TRAIN_PEAK, "peak_memory_bytes"))
    row.train_peak_memory_bytes = None if peak is None else int(peak)
    row.rank_config = _rank_config(a)
    row.rank_space = _rank_space(chain) if row.rank_config else None
    return row


def _labels(paths: list[Path]) -> list[str]:
    """Directory names, prefixed with their parent's name where two would collide."""
    names = [p.resolve().name for p in paths]
    return [
        f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n
        for p, n in zip(paths, names, strict=True)
    ]


def collect_rows(paths: list[str | os.PathLike]) -> list[ReportRow]:
    """One row per artifact, in the order given; every path is checked before any row is built."""
    if not paths:
        raise SqftError("no artifacts given: pass one or more artifact directories")
    for p in paths:
        load_artifact(p)
    ps = [Path(p) for p in paths]
    return [collect_row(p, label) for p, label in zip(ps, _labels(ps), strict=True)]
