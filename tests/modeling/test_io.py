import pytest
import torch

from sqft.errors import SqftError
from sqft.modeling import load_model, load_tokenizer, parse_dtype, save_model
from sqft.modeling.io import resolve_source


def test_save_load_round_trip_is_exact(model, tokenizer, tmp_path):
    save_model(model, tokenizer, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert not list((tmp_path / "m").glob("*.bin"))
    loaded = load_model(tmp_path / "m")
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    tok = load_tokenizer(tmp_path / "m")
    assert tok("abc").input_ids == tokenizer("abc").input_ids


def test_dtype_is_applied(model_dir):
    assert next(load_model(model_dir, dtype="bf16").parameters()).dtype == torch.bfloat16
    assert parse_dtype("auto") is None
    with pytest.raises(SqftError, match="unknown dtype 'int3'"):
        parse_dtype("int3")


def test_sources_are_checked_before_loading(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(SqftError, match="has no config.json"):
        resolve_source(tmp_path / "empty")
    with pytest.raises(SqftError, match="not a .gguf file"):
        resolve_source(tmp_path / "w.txt")
    with pytest.raises(SqftError, match="GGUF file .* does not exist"):
        resolve_source(tmp_path / "m.gguf")
    with pytest.raises(SqftError, match="does not exist"):
        resolve_source(str(tmp_path / "missing" / "model"))
    assert resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        None,
    )


def test_pickle_only_checkpoints_are_not_loaded(model, tmp_path):
    d = tmp_path / "bin"
    model.config.save_pretrained(d)
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    with pytest.raises(SqftError, match="could not load model"):
        load_model(d)


def test_a_model_that_does_not_fit_is_refused_with_its_size(model_dir, monkeypatch):
    import sqft.modeling.io as io

    monkeypatch.setattr(io, "free_memory_bytes", lambda device: 1000)
    with pytest.raises(SqftError, match=r"needs about 0\.0 GiB on cpu but only 0\.0 GiB is free"):
        load_model(model_dir)
    need = (model_dir / "model.safetensors").stat().st_size
    monkeypatch.setattr(io, "free_memory_bytes", lambda device: need // 2 + 1000)
    load_model(model_dir, dtype="bf16")  # fp32 checkpoint in bf16 needs half: it fits
    with pytest.raises(SqftError, match="needs about"):
        load_model(model_dir, dtype="float32")
