"""The extract stage: write the sub-adapter of an NLS adapter chosen by a heuristic name or a configuration
JSON (`A[:r]`, `B[:, :r]` per module, PEFT `rank_pattern`), with the configuration and a manifest."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from sqft.adapt.export import extract_subadapter, read_elastic_config
from sqft.artifacts import (
    atomic_output,
    check_output,
    check_writable,
    fingerprint,
    read_manifest,
    write_manifest,
)
from sqft.errors import SqftError
from sqft.files import safetensors_header
from sqft.search.api import resolve_adapter_config

__all__ = ["CONFIGURATION_FILE", "check_configuration_source", "run_extract", "write_subadapter"]

log = logging.getLogger(__name__)

CONFIGURATION_FILE = "configuration.json"


def check_configuration_source(adapter_dir: str | os.PathLike, spec: str, force: bool = False) -> bool:
    """A configuration JSON written by `sqft search` must come from a search on this adapter: its directory's
    manifest records the adapter's fingerprint. Returns whether the check ran."""
    path = Path(spec)
    manifest = read_manifest(path.parent) if spec.endswith(".json") and path.is_file() else None
    expected = (manifest or {}).get("parent_fingerprint")
    if expected is None:
        return False
    actual = fingerprint(adapter_dir)
    if actual != expected:
        message = (
            f"configuration '{spec}' was chosen by a search on another adapter ('{manifest.get('parent')}', "
            f"fingerprint {expected[:12]}), not on '{adapter_dir}' ({str(actual)[:12]}): use that adapter"
        )
        if not force:
            raise SqftError(message + "; or pass --force to extract anyway (recorded in the manifest)")
        log.warning("--force: %s", message)
    return True


def _count_params(directory: Path) -> int:
    _, header = safetensors_header(directory / "adapter_model.safetensors")
    return sum(v["shape"][0] * v["shape"][1] for k, v in header.items() if k != "__metadata__")


def run_extract(
    adapter_dir: str | os.PathLike,
    spec: str,
    output: str | os.PathLike,
    overwrite: bool = False,
    force: bool = False,
) -> dict[str, int]:
    """Write the sub-adapter chosen by `spec` (median, maximal, ..., or a JSON file) to `output`; returns the
    configuration (group → rank)."""
    out = check_output(output, overwrite, [adapter_dir])
    check_writable(out)
    read_elastic_config(adapter_dir)  # a damaged adapter fails here, before the configuration is resolved
    checked = check_configuration_source(adapter_dir, spec, force)
    config = resolve_adapter_config(adapter_dir, spec)
    with atomic_output(out, overwrite, [adapter_dir]) as tmp:
        write_subadapter(adapter_dir, config, tmp, spec, {"configuration_checked": checked, "forced": force})
    return config


def write_subadapter(
    adapter_dir: str | os.PathLike,
    config: dict[str, int],
    directory: Path,
    spec: str,
    provenance: dict[str, bool],
) -> None:
    """The sub-adapter of `config` in `directory`, with its configuration and an extract manifest whose parent
    is the super-adapter (so reports follow it to the base it was trained on)."""
    ranks = extract_subadapter(adapter_dir, config, directory)
    (directory / CONFIGURATION_FILE).write_text(json.dumps(config, indent=2) + "\n")
    figures = {"adapter_parameters": _count_params(directory), "mean_rank": sum(ranks.values()) / len(ranks)}
    force = provenance.get("forced", False)
    write_manifest(
        directory,
        "extract",
        {"config": spec, "configuration": config, "force": force},
        str(adapter_dir),
        {**figures, "provenance": provenance},
    )
