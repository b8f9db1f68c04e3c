"""`sqft export`: end to end on saved artifacts, and every refusal is one line with nothing written."""

from __future__ import annotations

import json
import sys

import pytest

from sqft.cli import main
from sqft.quantize.format import save_gptq_model
from tests.export.helpers import bpe_llama, bpe_tokenizer, int4_llama

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def tok():
    return bpe_tokenizer()


@pytest.fixture
def int4_dir(tmp_path, tok):
    d = tmp_path / "merged"
    save_gptq_model(int4_llama(tok, group_size=32, sparsity=0.5), tok, d)
    return d


def _entries(d):
    return sorted(p.name for p in d.iterdir())


def test_export_gguf_end_to_end(int4_dir, capsys):
    assert main(["export", str(int4_dir), "--quiet"]) == 0
    out = int4_dir.with_name("merged-gguf")
    assert _entries(out) == ["Modelfile", "merged.Q4_1.gguf", "sqft.json"]
    manifest = json.loads((out / "sqft.json").read_text())
    assert manifest["stage"] == "export" and manifest["parent"] == str(int4_dir.resolve())
    assert manifest["figures"]["tensor_types"] == {"F16": 2, "F32": 5, "Q4_1": 14}
    assert (out / "Modelfile").read_text() == "FROM ./merged.Q4_1.gguf\n"
    printed = capsys.readouterr().out
    assert str(out / "merged.Q4_1.gguf") in printed and "MiB" in printed
    assert "llama-cli -m" in printed and "ollama create merged -f" in printed


def test_export_gguf_loads_back_in_sqft(int4_dir):
    """sqft reads GGUF too: the export is a model sqft (through transformers) evaluates like any other."""
    import torch

    from sqft.loading import load_model

    out = int4_dir.parent / "g"
    assert main(["export", str(int4_dir), "-o", str(out), "--float-type", "f32", "-q"]) == 0
    back = load_model(out / "merged.Q4_1.gguf", dtype="float32")
    ref = load_model(int4_dir)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        diff = (back(ids).logits - ref(ids).logits).abs().max()
    assert float(diff) < 1e-2


def test_export_compressed_tensors_end_to_end(int4_dir, capsys):
    pytest.importorskip("compressed_tensors")
    out = int4_dir.parent / "ct"
    assert main(["export", str(int4_dir), "--format", "compressed-tensors", "-o", str(out), "-q"]) == 0
    assert {"config.json", "model.safetensors", "sqft.json", "tokenizer.json"} <= set(_entries(out))
    qcfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qcfg["format"] == "pack-quantized"
    assert "pack-quantized" in capsys.readouterr().out


def test_overwrite_replaces_an_existing_export(int4_dir, capsys):
    out = int4_dir.parent / "e"
    assert main(["export", str(int4_dir), "-o", str(out), "-q"]) == 0
    before = (out / "sqft.json").read_text()
    assert main(["export", str(int4_dir), "-o", str(out), "-q"]) == 2
    assert "already exists" in capsys.readouterr().err and (out / "sqft.json").read_text() == before
    assert main(["export", str(int4_dir), "-o", str(out), "--overwrite", "--float-type", "q8_0", "-q"]) == 0
    assert json.loads((out / "sqft.json").read_text())["config"]["float_type"] == "q8_0"


def _refused(argv, match, capsys, root):
    before = _entries(root)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert _entries(root) == before  # nothing written, no temporary directory left behind


def test_refusals_are_one_line_and_write_nothing(tmp_path, int4_dir, tok, capsys):
    root = tmp_path
    out = str(tmp_path / "x")
    _refused(
        ["export", str(int4_dir), "--format", "onnx", "-o", out], "unknown export format 'onnx'", capsys, root
    )
    _refused(["export", str(int4_dir), "--float-type", "bf16", "-o", out], "unknown float type", capsys, root)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    root_entries = tmp_path
    _refused(
        ["export", str(adapter), "-o", out], "is an adapter, not a model: merge it", capsys, root_entries
    )
    _refused(["export", str(int4_dir), str(adapter), "-o", out], "merge first", capsys, root_entries)
    g16 = tmp_path / "g16"
    save_gptq_model(int4_llama(tok, group_size=16), tok, g16)
    _refused(["export", str(g16), "-o", out], "group size 16", capsys, root_entries)
    _refused(["export", str(tmp_path / "missing"), "-o", out], "does not exist", capsys, root_entries)


def test_a_missing_extra_names_it(tmp_path, monkeypatch, capsys):
    d = tmp_path / "dense"
    tok = bpe_tokenizer()
    bpe_llama(tok).save_pretrained(d)
    tok.save_pretrained(d)
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now fails
    _refused(["export", str(d), "-o", str(tmp_path / "o")], "pip install 'sqft[gguf]'", capsys, tmp_path)
    monkeypatch.setitem(sys.modules, "compressed_tensors", None)
    argv = ["export", str(d), "-f", "compressed-tensors", "-o", str(tmp_path / "o")]
    _refused(argv, "pip install 'sqft[export]'", capsys, tmp_path)
