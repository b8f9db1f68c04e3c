"""Provenance of adapters: was this adapter trained on this base, and does a resumed run continue the same run?

- An adapter records the `fingerprint` of the base it was trained on (`base_fingerprint` in
  `elastic_adapter_config.json`, also the finetune manifest's `parent_fingerprint`) and, for SparsePEFT, a
  hash of its mask (`mask_fingerprint`: the base's non-zeros). `check_base` compares the first with the base
  given to merge / evaluate / search before the base is loaded; `check_mask` the second once it is.
- A fine-tuning run records its configuration in its checkpoint directory (`run_config.json`); `check_resume`
  refuses to resume checkpoints written with another configuration, naming the keys that differ.

Adapters and checkpoints written before these records existed are accepted, with a log line saying that the
check was skipped. `force=True` turns a refusal into a warning (and the caller records it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from sqft.adapt.equations import pack_mask
from sqft.adapt.inject import adapter_layers
from sqft.artifacts import fingerprint
from sqft.errors import SqftError
from sqft.files import read_json_file

__all__ = [
    "RUN_RECORD",
    "check_base",
    "check_mask",
    "check_qa_int4",
    "check_resume",
    "diff_keys",
    "mask_fingerprint",
]

log = logging.getLogger(__name__)

RUN_RECORD = "run_config.json"


def mask_fingerprint(model: nn.Module) -> str | None:
    """sha256 of the packed masks M = 1[W ≠ 0] of every SparsePEFT layer (by name); None without any."""
    h, any_sparse = hashlib.sha256(), False
    for name, layer in sorted(adapter_layers(model).items()):
        if not layer.sparse:
            continue
        any_sparse = True
        h.update(name.encode() + b"\0")
        h.update(pack_mask(layer.mask).cpu().numpy().tobytes())
    return h.hexdigest()[:32] if any_sparse else None


def _refuse_or_warn(message: str, force: bool) -> None:
    if not force:
        raise SqftError(message + "; or pass --force to go on anyway (recorded in the manifest)")
    log.warning("--force: %s", message)


def check_base(
    meta: Mapping[str, Any], adapter_dir: str | os.PathLike, base: str | os.PathLike, force: bool = False
) -> dict[str, Any]:
    """Compare the adapter's recorded base fingerprint with `base`'s; the provenance record for the manifest."""
    expected, actual = meta.get("base_fingerprint"), fingerprint(base)
    record = {"base_fingerprint": actual, "trained_on_fingerprint": expected, "forced": False}
    if expected is None or actual is None:
        why = "the adapter records no base fingerprint (older sqft)" if expected is None else "a hub id"
        log.info("provenance of '%s' on '%s' not checked: %s", adapter_dir, base, why)
        return {**record, "checked": False}
    record["forced"] = expected != actual
    if record["forced"]:
        _refuse_or_warn(
            f"adapter '{adapter_dir}' was trained on '{meta.get('base_model')}' (fingerprint {expected[:12]}), "
            f"not on '{base}' (fingerprint {actual[:12]}): pass the base it was trained on",
            force,
        )
    return {**record, "checked": True}


def check_qa_int4(
    meta: Mapping[str, Any], adapter_dir: str | os.PathLike, qa_int4: str | os.PathLike, force: bool = False
) -> dict[str, Any]:
    """A QA adapter trained on the fp16 base (qa_base fp16, gptq-residual): the INT4 model given to run or merge it
    must be the one it trained with, whose layers without adapter (and, for gptq-residual, whose codes) are part
    of the trained model. Compares the recorded `qa_int4_fingerprint`; the provenance record for the manifest."""
    expected, actual = meta.get("qa_int4_fingerprint"), fingerprint(qa_int4)
    checked = expected is not None and actual is not None
    if not checked:
        why = "the adapter records none (older sqft)" if expected is None else "a source without weight files"
        log.info("the INT4 model '%s' of adapter '%s' not checked: %s", qa_int4, adapter_dir, why)
    elif expected != actual:
        message = f"adapter '{adapter_dir}' was trained with another INT4 model (fingerprint {expected[:12]})"
        _refuse_or_warn(
            f"{message} than '{qa_int4}' (fingerprint {actual[:12]}): pass that one as --qa-int4", force
        )
    return {"qa_int4_fingerprint": actual, "trained_with_qa_int4": expected, "qa_int4_checked": checked}


def check_mask(
    meta: Mapping[str, Any], adapter_dir: str | os.PathLike, model: nn.Module, force: bool
) -> bool:
    """For a SparsePEFT adapter: its recorded mask must equal the zeros of the base it was loaded on.

    Returns whether the check ran."""
    expected = meta.get("mask_fingerprint")
    if expected is None:
        return False
    actual = mask_fingerprint(model)
    if actual != expected:
        _refuse_or_warn(
            f"SparsePEFT adapter '{adapter_dir}' was trained with another sparsity mask than this base's zeros "
            "(the base is dense, or pruned differently): its merge would not keep the base's sparsity; pass "
            "the sparse base it was trained on",
            force,
        )
    return True


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def diff_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """'key: old → new' for every (dotted) key whose value differs."""
    a, b = _flat(old), _flat(new)
    return [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def check_resume(work: Path, record: Mapping[str, Any], has_checkpoint: bool, restart: bool = False) -> None:
    """Before training: refuse checkpoints in `work` written with another configuration; write `record`.

    `restart` deletes the checkpoints first. A record is compared through JSON, as it is stored."""
    if restart and work.exists():
        log.info("--restart: deleting the checkpoints in %s", work)
        shutil.rmtree(work)
        has_checkpoint = False
    record = json.loads(json.dumps(record, default=str))
    stored_path = work / RUN_RECORD
    if has_checkpoint:
        if not stored_path.is_file():
            log.info("checkpoints in %s record no configuration (older sqft): resuming unchecked", work)
        else:
            diffs = diff_keys(read_json_file(stored_path, "checkpoint configuration"), record)
            if diffs:
                shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
                raise SqftError(
                    f"the checkpoints in '{work}' were written by a run with another configuration ({shown}): "
                    "resuming would mix two runs; pass --restart to start over, or re-run with the same settings"
                )
    work.mkdir(parents=True, exist_ok=True)
    tmp = stored_path.with_name(f".{RUN_RECORD}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, stored_path)
