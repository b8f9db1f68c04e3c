"""Reading user files so that a damaged one is one clear `SqftError`, never a traceback.

Every reader names the file and what is wrong with it: "not UTF-8 text", "not valid JSON (line 3 column 5)",
"truncated safetensors: the header describes 812 bytes of tensors but the file holds 300". Safetensors and
GGUF files are checked from their headers only (cheap even at 8B): the weights are read later by the loader.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from sqft.errors import SqftError, require

__all__ = [
    "read_text_file",
    "read_json_file",
    "safetensors_header",
    "check_safetensors",
    "load_safetensors",
    "check_gguf",
    "read_parquet",
]

_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


def read_text_file(path: str | os.PathLike, what: str = "file") -> str:
    """The file's text; SqftError when it is not UTF-8 text (a binary file) or cannot be read."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError as e:
        raise SqftError(f"{what} '{p}' is a directory: pass a file") from e
    except FileNotFoundError as e:
        raise SqftError(f"{what} '{p}' does not exist") from e
    except OSError as e:
        raise SqftError(f"cannot read {what} '{p}': {e.strerror or e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SqftError(
            f"not UTF-8 text: {p} (byte {e.start} is 0x{data[e.start]:02x}; is it a binary file?)"
        ) from e
    if "\x00" in text:
        raise SqftError(f"not UTF-8 text: {p} (it holds NUL bytes; is it a binary file?)")
    return text


def read_json_file(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """The parsed JSON of a file; SqftError naming the file and the position of a syntax error."""
    p = Path(path)
    text = read_text_file(p, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SqftError(f"{what} '{p}' is not valid JSON ({e}): the file is damaged or truncated") from e


def safetensors_header(path: str | os.PathLike) -> tuple[bytes, dict[str, Any]]:
    """(raw header bytes, parsed header) of a safetensors file, after checking that it is complete.

    Layout: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}}, then
    the tensor bytes; every tensor's end offset must lie within the file.
    """
    p = Path(path)
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SqftError(f"'{p}' is not a safetensors file: {size} bytes, too short for a header")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > _MAX_HEADER or 8 + n > size:
            raise SqftError(
                f"'{p}' is not a valid safetensors file (header length {n} for a file of {size} bytes): "
                "it is damaged, truncated or another format"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SqftError(f"'{p}' is not a valid safetensors file: its header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise SqftError(f"'{p}' is not a valid safetensors file: its header is not a mapping")
    _check_offsets(p, header, size - 8 - n)
    return raw, header


def _check_offsets(p: Path, header: dict[str, Any], data_bytes: int) -> None:
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise SqftError(f"'{p}' is not a valid safetensors file: tensor '{name}' has no data offsets")
        end = max(end, offsets[1])
    if end > data_bytes:
        raise SqftError(
            f"truncated safetensors file '{p}': its header describes {end} bytes of tensors but the file holds "
            f"{data_bytes}; re-download or re-create it"
        )


def check_safetensors(directory: str | os.PathLike) -> list[Path]:
    """Check the header of every `*.safetensors` file of a directory; returns the files (sorted)."""
    files = sorted(Path(directory).glob("*.safetensors"))
    for f in files:
        safetensors_header(f)
    return files


def load_safetensors(path: str | os.PathLike) -> dict[str, Any]:
    """`safetensors.torch.load_file`, after the header check, with any remaining error as one SqftError."""
    safetensors_header(path)
    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError derives from Exception only
        raise SqftError(f"cannot read safetensors file '{path}': {e}") from e


def check_gguf(path: str | os.PathLike) -> None:
    """Parse a GGUF file's header and tensor table (memory-mapped, no weights read); SqftError if damaged."""
    p = Path(path)
    with p.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise SqftError(f"'{p}' is not a GGUF file (it does not start with the GGUF magic bytes)")
    gguf = require("gguf", "gguf")
    try:
        gguf.GGUFReader(str(p))
    except Exception as e:  # the reader raises ValueError, IndexError, struct.error ... on a damaged file
        raise SqftError(f"GGUF file '{p}' is damaged or truncated ({type(e).__name__}: {e})"[:400]) from e


def read_parquet(path: str | os.PathLike) -> Any:
    """A parquet file as a pyarrow table; a damaged file is one SqftError."""
    pq = require("pyarrow.parquet", "hub")
    try:
        return pq.read_table(path)
    except Exception as e:  # pyarrow.lib.ArrowInvalid and friends
        raise SqftError(f"'{path}' is not a readable parquet file: {str(e).splitlines()[0][:200]}") from e
