"""Export a loaded model: refuse what cannot be exported exactly (`check_export`), write GGUF or
compressed-tensors files into a directory (`write_export`). The export stage (`sqft.stages.export.run_export`)
loads the artifact and writes through a temporary directory with a manifest.

Every refusal (unknown format, missing extra, existing output, an adapter instead of a model, an architecture,
bit width or group size the format cannot hold) comes before anything is written.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqft.artifacts import read_manifest
from sqft.errors import SqftError, require
from sqft.export.compressed_tensors import check_compressed_tensors, write_compressed_tensors
from sqft.export.gguf import FLOAT_TYPES, plan_gguf, write_gguf
from sqft.export.inputs import ExportInputs

__all__ = [
    "FORMATS",
    "ExportConfig",
    "check_export",
    "check_source",
    "default_output",
    "export_name",
    "require_extra",
    "run_commands",
    "write_export",
]

log = logging.getLogger(__name__)

FORMATS = ("gguf", "compressed-tensors")
_EXTRAS = {"gguf": ("gguf", "gguf"), "compressed-tensors": ("compressed_tensors", "export")}
_ADAPTER_FILES = ("adapter_config.json", "elastic_adapter_config.json")


@dataclass
class ExportConfig:
    format: str = "gguf"
    """gguf (llama.cpp, Ollama, LM Studio) or compressed-tensors (vLLM)."""
    float_type: str = "f16"
    """GGUF only: what floating-point 2-D tensors become: f16, f32 or q8_0 (INT4 layers are always Q4_1)."""
    name: str | None = None
    """The model's name in the GGUF metadata and file name (default: the source directory's name)."""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise SqftError(f"unknown export format '{self.format}': use one of {', '.join(FORMATS)}")
        if self.float_type not in FLOAT_TYPES:
            raise SqftError(f"unknown float type '{self.float_type}': use one of {', '.join(FLOAT_TYPES)}")


def default_output(source: str | os.PathLike, fmt: str) -> Path:
    """`runs/x/merge-abc` → `runs/x/merge-abc-gguf` (a hub id or a .gguf file: `<name>-<format>` here)."""
    p = Path(str(source))
    if p.is_dir():
        return p.with_name(f"{p.name}-{fmt}")
    return Path(f"{p.stem if p.suffix == '.gguf' else p.name}-{fmt}")


def check_source(source: str | os.PathLike) -> None:
    """Refuse an adapter (or an sqft artifact without weights) given where a merged model is expected."""
    p = Path(str(source))
    if not p.is_dir():
        return
    manifest = read_manifest(p) or {}
    if any((p / f).is_file() for f in _ADAPTER_FILES) or manifest.get("stage") in ("finetune", "extract"):
        raise SqftError(
            f"'{p}' is an adapter, not a model: merge it into its base first "
            f"(sqft merge BASE {p} --output MERGED), then export MERGED"
        )
    if manifest.get("stage") in ("evaluate", "export"):
        raise SqftError(f"'{p}' is an {manifest['stage']} artifact, not a model: export a model directory")


def require_extra(config: ExportConfig) -> None:
    """The format's optional dependency is installed (an ImportError naming the extra, before any work)."""
    require(*_EXTRAS[config.format])


def export_name(config: ExportConfig, source: str | os.PathLike) -> str:
    """The model's name in the export: `config.name`, else the source's directory (or .gguf file) name."""
    p = Path(str(source))
    return config.name or (p.stem if p.suffix == ".gguf" else p.name) or "model"


def run_commands(output: Path, figures: dict[str, Any]) -> list[str]:
    """One-line commands that run a GGUF export in llama.cpp and Ollama."""
    gguf = output / figures["file"]
    tag = re.sub(r"[^a-z0-9._-]+", "-", figures["file"].rsplit(".", 2)[0].lower())  # NAME of NAME.Q4_1.gguf
    return [
        f'llama-cli -m {gguf} -p "Question: What is 12 + 30?\\nAnswer:" -n 64',
        f"ollama create {tag} -f {output / 'Modelfile'} && ollama run {tag}",
    ]


def write_export(inputs: ExportInputs, tokenizer: Any, config: ExportConfig, tmp: Path) -> dict[str, Any]:
    """Write the export's files into directory `tmp`; returns its figures."""
    if config.format == "compressed-tensors":
        return write_compressed_tensors(inputs, tokenizer, tmp)
    ggml_type = "Q4_1" if inputs.quantized else config.float_type.upper()
    file = f"{inputs.name}.{ggml_type}.gguf"
    figures = write_gguf(inputs, tokenizer, tmp / file, config.float_type)
    (tmp / "Modelfile").write_text(f"FROM ./{file}\n")  # `ollama create NAME -f Modelfile`
    return figures


def check_export(inputs: ExportInputs, tokenizer: Any, config: ExportConfig) -> None:
    """Refuse what the format cannot hold exactly, before anything is written."""
    if config.format == "gguf":
        plan_gguf(inputs, tokenizer, config.float_type)
    else:
        check_compressed_tensors(inputs)
