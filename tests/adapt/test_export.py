"""Adapter files: round trip, sub-adapter extraction, vanilla PEFT compatibility, tagging of sparse adapters."""

import json

import pytest
import torch

from sqft.adapt import (
    AdaptConfig,
    elastic_space,
    extract_subadapter,
    groups_of,
    inject_adapters,
    load_adapter,
    save_adapter,
    set_active_ranks,
)
from sqft.errors import SqftError
from tests.adapt.helpers import randomize_adapters_, sparse_int4_model, sparse_model, tokens
from tests.conftest import tiny_llama
from tests.tolerance import assert_close

CONFIG = {"model.layers.0.qkv": 16, "model.layers.1.qkv": 24}


def _trained(model, **kw):
    inject_adapters(model, AdaptConfig(**kw))
    randomize_adapters_(model)
    return model.eval()


@pytest.mark.parametrize(
    "make,kw",
    [
        (tiny_llama, {}),
        (sparse_model, {"sparse_adapter": True}),
        (sparse_int4_model, {"sparse_adapter": True, "quantization_aware": True}),
        # the dither offsets are regenerated from the module names: nothing stored, the same model loaded
        (sparse_int4_model, {"sparse_adapter": True, "quantization_aware": True, "qa_base": "gptq-dither"}),
        (sparse_int4_model, {"adapter": "lora"}),
    ],
)
def test_save_load_round_trip_and_subadapter_equals_super_adapter(tmp_path, make, kw):
    model = _trained(make(), **kw)
    save_adapter(model, tmp_path / "super")
    x = tokens()
    loaded = load_adapter(make(), tmp_path / "super")
    assert torch.equal(loaded(x).logits, model(x).logits)
    if kw.get("adapter") == "lora":
        return
    assert elastic_space(tmp_path / "super") == {g: [32, 24, 16] for g in CONFIG} == elastic_space(model)
    set_active_ranks(model, CONFIG)
    ranks = extract_subadapter(tmp_path / "super", CONFIG, tmp_path / "sub")
    assert ranks["model.layers.0.self_attn.v_proj"] == 16 and ranks["model.layers.0.mlp.up_proj"] == 32
    sub = load_adapter(make(), tmp_path / "sub")
    assert torch.equal(sub(x).logits, model(x).logits)
    assert elastic_space(tmp_path / "sub") == {}


def test_vanilla_peft_loads_the_extracted_subadapter(tmp_path):
    from peft import PeftModel

    model = _trained(tiny_llama())
    save_adapter(model, tmp_path / "super")
    extract_subadapter(tmp_path / "super", CONFIG, tmp_path / "sub")
    set_active_ranks(model, CONFIG)
    x = tokens()
    want = model(x).logits
    cfg = json.loads((tmp_path / "sub" / "adapter_config.json").read_text())
    assert cfg["rank_pattern"]["model.layers.0.self_attn.q_proj"] == 16
    assert cfg["alpha_pattern"]["model.layers.0.self_attn.q_proj"] == 32.0  # α·r/r_max keeps s = α/r_max
    peft_model = PeftModel.from_pretrained(tiny_llama(), str(tmp_path / "sub")).eval()
    got = peft_model(x).logits
    assert_close(got, want, torch.float32, 128)
    lora_a = peft_model.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight
    assert lora_a.shape == (16, 64)


@pytest.mark.parametrize("kw", [{"sparse_adapter": True}])
def test_vanilla_peft_refuses_sparse_adapters(tmp_path, kw):
    from peft import PeftModel

    save_adapter(_trained(sparse_model(), **kw), tmp_path / "a")
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["peft_type"] == "SQFT_SPARSE_LORA"
    with pytest.raises(Exception, match="SQFT_SPARSE_LORA"):
        PeftModel.from_pretrained(sparse_model(), str(tmp_path / "a"))


def test_adapter_base_mismatch_is_refused(tmp_path):
    save_adapter(_trained(tiny_llama()), tmp_path / "a")
    with pytest.raises(SqftError, match="does not match this base model"):
        load_adapter(tiny_llama(num_layers=3), tmp_path / "a")


def test_bad_configuration_is_refused(tmp_path):
    save_adapter(_trained(tiny_llama()), tmp_path / "a")
    with pytest.raises(SqftError, match="not in its space"):
        extract_subadapter(
            tmp_path / "a", {"model.layers.0.qkv": 8, "model.layers.1.qkv": 16}, tmp_path / "b"
        )
    with pytest.raises(SqftError, match="missing groups"):
        extract_subadapter(tmp_path / "a", {"model.layers.0.qkv": 16}, tmp_path / "b")


def test_nls_groups_file_matches_contract(tmp_path):
    model = _trained(tiny_llama())
    save_adapter(model, tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "elastic_adapter_config.json").read_text())
    assert meta["groups"]["model.layers.1.qkv"] == {
        "modules": [f"model.layers.1.self_attn.{p}_proj" for p in "qkv"],
        "space": [32, 24, 16],
    }
    assert list(meta["groups"]) == list(groups_of(model))
