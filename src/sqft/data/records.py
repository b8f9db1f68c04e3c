"""Records from local JSON/JSONL/parquet files or the hub, each tagged with where it came from.

Every loader downstream reports a bad record as "FILE line N" (JSONL) or "FILE record N" (JSON, parquet,
hub), so a user can open the file and fix it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from sqft.errors import SqftError, require
from sqft.files import read_parquet, read_text_file

__all__ = ["Located", "read_records", "field", "SUFFIXES"]

SUFFIXES = (".jsonl", ".json", ".parquet")


class Located(NamedTuple):
    """One record and its position: 'data.jsonl line 7' or 'data.json record 3'."""

    where: str
    record: dict[str, Any]


def field(rec: Located, name: str, kind: type | tuple[type, ...] = str) -> Any:
    """`rec.record[name]`, or an error naming the field, the record's position and the fields it has."""
    if name not in rec.record:
        raise SqftError(f"{rec.where}: missing field '{name}' (the record has {sorted(rec.record)})")
    value = rec.record[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        want = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise SqftError(
            f"{rec.where}: field '{name}' should be {want}, got {type(value).__name__} ({value!r:.60})"
        )
    return value


def _jsonl(p: Path) -> list[Located]:
    out = []
    for n, line in enumerate(read_text_file(p, "data file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SqftError(f"{p} line {n}: not valid JSON ({e.msg})") from e
        out.append(Located(f"{p} line {n}", rec))
    return out


def _json(p: Path) -> list[Located]:
    try:
        data = json.loads(read_text_file(p, "data file"))
    except json.JSONDecodeError as e:
        raise SqftError(f"{p}: not valid JSON ({e}); JSON Lines files need the .jsonl suffix") from e
    if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}: take the single list inside
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else [data]
    return [Located(f"{p} record {i + 1}", rec) for i, rec in enumerate(data)]


def _parquet(p: Path) -> list[Located]:
    rows = read_parquet(p).to_pylist()
    return [Located(f"{p} record {i + 1}", rec) for i, rec in enumerate(rows)]


def _hub(name: str, config: str | None, split: str) -> list[Located]:
    datasets = require("datasets", "hub")
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # the hub raises many types; the user needs one line
        raise SqftError(f"could not load hub dataset '{name}' (config {config}, split {split}): {e}") from e
    return [Located(f"{name}[{split}] record {i + 1}", dict(rec)) for i, rec in enumerate(ds)]


def read_records(
    source: str | os.PathLike, split: str = "train", hub_config: str | None = None
) -> list[Located]:
    """Records of a `.jsonl`, `.json` (a list of objects) or `.parquet` file, or of a hub dataset id."""
    p = Path(source)
    suffix = p.suffix.lower()
    if p.is_dir():
        raise SqftError(f"data source '{p}' is a directory: pass a {'/'.join(SUFFIXES)} file")
    if p.is_file():
        readers = {".jsonl": _jsonl, ".json": _json, ".parquet": _parquet}
        if suffix not in readers:
            raise SqftError(f"data file '{p}' has an unknown type '{suffix}': use {', '.join(SUFFIXES)}")
        records = readers[suffix](p)
    elif suffix in SUFFIXES or str(source).startswith((".", "/", "~")):
        raise SqftError(f"data file '{p}' does not exist")
    else:
        records = _hub(str(source), hub_config, split)
    for rec in records:
        if not isinstance(rec.record, dict):
            raise SqftError(f"{rec.where}: expected a JSON object, got {type(rec.record).__name__}")
    if not records:
        raise SqftError(f"data source '{source}' holds no records")
    return records
