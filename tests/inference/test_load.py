"""`load_for_inference`: a SparsePEFT / QA-SparsePEFT adapter is merged in memory, giving the unmerged model's
logits bit for bit without rebuilding W + L per call; a plain LoRA adapter stays unmerged."""

import pytest
import torch

from sqft.adapt import AdaptConfig, adapter_layers, inject_adapters
from sqft.adapt.export import save_adapter
from sqft.inference import load_for_inference
from sqft.quantize.format import save_gptq_model
from sqft.quantize.qlinear import QuantLinear
from tests.adapt.helpers import randomize_adapters_, sparse_int4_model, sparse_model, tokens
from tests.conftest import char_tokenizer

VARIANTS = {  # name → (base model, adapter config)
    "sparsepeft": (sparse_model, AdaptConfig(sparse_adapter=True)),
    "qa-sparsepeft on INT4": (
        sparse_int4_model,
        AdaptConfig(sparse_adapter=True, quantization_aware=True, qa_base="gptq"),
    ),
    "lora": (sparse_model, AdaptConfig(adapter="lora")),
}


def _base_and_adapter(tmp_path, variant: str):
    make, cfg = VARIANTS[variant]
    base = tmp_path / "base"
    model = make()
    if variant.startswith("qa"):
        save_gptq_model(model, char_tokenizer(), base)
    else:
        model.save_pretrained(base)
        char_tokenizer().save_pretrained(base)
    inject_adapters(model, cfg)
    randomize_adapters_(model, std=0.2)
    save_adapter(model, tmp_path / "adapter", base=str(base))
    return base, tmp_path / "adapter"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_weight_rebuilding_adapter_is_merged_at_load_with_the_same_logits(tmp_path, variant):
    base, adapter = _base_and_adapter(tmp_path, variant)
    x = tokens()
    kw = {"int4_kernels": False}  # the exact path: merged = unmerged bit for bit there
    folded = load_for_inference(base, adapter, **kw).model
    unmerged = load_for_inference(base, adapter, fold_adapter=False, **kw).model
    assert adapter_layers(unmerged)
    with torch.no_grad():
        assert torch.equal(folded(x).logits, unmerged(x).logits)
    if variant == "lora":
        assert adapter_layers(folded)  # x Wᵀ + s (x Aᵀ) Bᵀ: nothing rebuilt, nothing to gain
    else:
        assert not adapter_layers(folded)
        q_proj = folded.get_submodule("model.layers.0.self_attn.q_proj")
        assert isinstance(q_proj, QuantLinear) == variant.startswith("qa")
