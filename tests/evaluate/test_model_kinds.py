"""The evaluators work on any causal LM module: dense, INT4 (QuantLinear) and base + adapter."""

import pytest
import torch

from sqft.data import MCExample
from sqft.evaluate import evaluate_multiple_choice, evaluate_perplexity
from tests.conftest import CORPUS

EXAMPLES = [MCExample(f"Question: item {i}?", ("yes", "no", "maybe so"), i % 3) for i in range(4)]


def scores(model, tokenizer):
    mc = evaluate_multiple_choice(
        model, tokenizer, EXAMPLES, batch_size=4, return_scores=True, progress=False
    )
    ppl = evaluate_perplexity(model, tokenizer, [CORPUS[:400]], seq_len=64, batch_size=4, progress=False)
    return [s for ex in mc["scores"] for s in ex], ppl["perplexity"]


def test_int4_model(model, tokenizer):
    from sqft.quantize.api import QuantizeConfig, quantize

    dense_lls, dense_ppl = scores(model, tokenizer)
    quantize(model, QuantizeConfig(method="rtn", group_size=32), quiet=True)
    assert not any(type(m) is torch.nn.Linear for m in model.model.layers.modules())  # really INT4 modules
    lls, ppl = scores(model, tokenizer)
    assert lls != dense_lls  # the quantized weights are used...
    assert lls == pytest.approx(dense_lls, rel=0.2) and ppl == pytest.approx(
        dense_ppl, rel=0.2
    )  # ...and close


def test_base_plus_adapter(model, tokenizer):
    from sqft.adapt import AdaptConfig, adapter_layers, inject_adapters

    dense_lls, dense_ppl = scores(model, tokenizer)
    inject_adapters(model, AdaptConfig(adapter="lora", r_max=4, alpha=8.0, dropout=0.0))
    model.eval()
    lls, ppl = scores(model, tokenizer)
    assert lls == pytest.approx(dense_lls, abs=1e-5) and ppl == pytest.approx(
        dense_ppl, rel=1e-6
    )  # B = 0 at init
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            layer.lora_B.normal_(0, 0.5)
    lls, ppl = scores(model, tokenizer)
    assert max(abs(a - b) for a, b in zip(lls, dense_lls, strict=True)) > 1e-2
