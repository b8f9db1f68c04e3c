"""Calibration data: texts from a local file or a hub dataset, cut into seeded token windows."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from sqft.errors import SqftError, require
from sqft.files import read_parquet, read_text_file

__all__ = ["load_texts", "calibration_windows", "load_calibration"]

log = logging.getLogger(__name__)


def _texts_from_records(records: list, field: str, where: str) -> list[str]:
    texts = []
    for i, rec in enumerate(records):
        if isinstance(rec, str):
            texts.append(rec)
            continue
        if not isinstance(rec, dict) or field not in rec:
            keys = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
            raise SqftError(
                f"{where}: record {i + 1} has no field '{field}' (it has {keys}); pass --text-field"
            )
        texts.append(str(rec[field]))
    return texts


def load_texts(source: str | os.PathLike, field: str = "text", split: str = "train") -> list[str]:
    """Texts from a `.txt`, `.jsonl`, `.json` or `.parquet` file (records' `field`), or a hub dataset id."""
    p = Path(source)
    suffix = p.suffix.lower()
    if p.exists():
        if not p.is_file():
            raise SqftError(
                f"calibration source '{p}' is a directory: pass a .txt/.jsonl/.json/.parquet file"
            )
        if suffix == ".txt":
            texts = [read_text_file(p, "calibration file")]
        elif suffix == ".jsonl":
            records = []
            for n, line in enumerate(read_text_file(p, "calibration file").splitlines(), start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise SqftError(f"{p}: line {n} is not valid JSON ({e.msg})") from e
            texts = _texts_from_records(records, field, str(p))
        elif suffix == ".json":
            try:
                data = json.loads(read_text_file(p, "calibration file"))
            except json.JSONDecodeError as e:
                raise SqftError(f"{p}: not valid JSON ({e})") from e
            texts = _texts_from_records(data if isinstance(data, list) else [data], field, str(p))
        elif suffix == ".parquet":
            table = read_parquet(p)
            if field not in table.column_names:
                raise SqftError(f"{p}: no column '{field}' (it has {table.column_names}); pass --text-field")
            texts = [str(t) for t in table.column(field).to_pylist()]
        else:
            raise SqftError(
                f"calibration file '{p}' has an unknown type '{suffix}': use .txt, .jsonl, .json or .parquet"
            )
    elif suffix in (".txt", ".jsonl", ".json", ".parquet") or str(source).startswith((".", "/")):
        raise SqftError(f"calibration file '{p}' does not exist")
    else:
        datasets = require("datasets", "hub")
        ds = datasets.load_dataset(str(source), split=split)
        texts = _texts_from_records(list(ds), field, str(source))
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise SqftError(f"calibration source '{source}' is empty: it holds no text")
    return texts


def calibration_windows(
    tokenizer, texts: list[str], n_samples: int, seq_len: int, seed: int = 0
) -> torch.Tensor:
    """`n_samples` distinct windows of `seq_len` tokens from the concatenated texts, chosen with `seed`.

    Returns token ids `(n_samples, seq_len)`. Windows do not overlap, so every calibration token counts once.
    """
    if n_samples < 1 or seq_len < 1:
        raise SqftError(f"n_samples ({n_samples}) and seq_len ({seq_len}) must be positive")
    sep = tokenizer.eos_token or "\n\n"
    ids = tokenizer(sep.join(texts), add_special_tokens=False, return_tensors="pt").input_ids[0]
    available = ids.numel() // seq_len
    if available == 0:
        raise SqftError(
            f"the calibration text has {ids.numel()} tokens: not one window of seq_len={seq_len} fits; "
            f"lower --seq-len to at most {ids.numel()} or give more text"
        )
    if available < n_samples:
        raise SqftError(
            f"the calibration text has {ids.numel()} tokens: only {available} window(s) of seq_len={seq_len} "
            f"could be made, {n_samples} requested; lower --n-samples to {available}, lower --seq-len, "
            "or give more text"
        )
    g = torch.Generator().manual_seed(seed)
    starts = torch.randperm(available, generator=g)[:n_samples].sort().values * seq_len
    return torch.stack([ids[s : s + seq_len] for s in starts.tolist()])  # (n, T)


def load_calibration(
    tokenizer,
    source: str | os.PathLike,
    n_samples: int,
    seq_len: int,
    seed: int = 0,
    field: str = "text",
    max_positions: int | None = None,
) -> torch.Tensor:
    """Texts from `source` cut into windows; `seq_len` is capped by the model's `max_positions`."""
    if max_positions is not None and seq_len > max_positions:
        log.info("seq_len %d capped to the model's max_position_embeddings %d", seq_len, max_positions)
        seq_len = max_positions
    return calibration_windows(tokenizer, load_texts(source, field), n_samples, seq_len, seed)
