import importlib.util
import json

import pytest
import torch
from safetensors.torch import load_file

from sqft.errors import SqftError
from sqft.quantize import QuantizeConfig, QuantLinear, load_gptq_model, quantize, save_gptq_model


def _quantized(model, windows, **kw):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "proj" in name:
                p[torch.rand(p.shape, generator=torch.Generator().manual_seed(len(name))) < 0.5] = 0
    quantize(model, QuantizeConfig(group_size=kw.pop("group_size", 32), **kw), windows, quiet=True)
    return model


def _reference_unpack(packed: torch.Tensor, bits: int, n: int) -> list[list[int]]:
    """Independent reader: each column of int32 words is one little-endian bit stream of n codes."""
    words = [[w & 0xFFFFFFFF for w in row] for row in packed.tolist()]
    cols = []
    for c in range(packed.shape[1]):
        stream = sum(words[r][c] << (32 * r) for r in range(packed.shape[0]))
        cols.append([(stream >> (k * bits)) & ((1 << bits) - 1) for k in range(n)])
    return cols  # cols[c][k]


def _reference_weight(sd, name, bits, v1):
    """Ŵ (out, in) from the raw checkpoint tensors: qweight packs `in` per output column, qzeros packs `out`."""
    qweight, qzeros, scales, g_idx = (sd[f"{name}.{k}"] for k in ("qweight", "qzeros", "scales", "g_idx"))
    out_f, in_f = scales.shape[1], g_idx.shape[0]
    q = torch.tensor(_reference_unpack(qweight, bits, in_f), dtype=torch.float32)  # (out, in)
    z = torch.tensor(_reference_unpack(qzeros.T, bits, out_f), dtype=torch.float32) + (
        1 if v1 else 0
    )  # (G, out)
    g = g_idx.long()
    return scales.float()[g].T * (q - z[g].T)


@pytest.mark.parametrize("fmt,bits", [("gptq", 4), ("gptq_v2", 4), ("gptq", 3), ("gptq", 2)])
def test_saved_checkpoint_reads_back_exactly(model, tokenizer, windows, tmp_path, fmt, bits):
    m = _quantized(model, windows, checkpoint_format=fmt, bits=bits)
    ids = windows[:2]
    with torch.no_grad():
        want = m(ids).logits
    save_gptq_model(m, tokenizer, tmp_path, fmt, 32)
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "gptq" and qc["bits"] == bits and qc["group_size"] == 32
    assert qc["checkpoint_format"] == fmt and qc["desc_act"] is False and qc["sym"] is False
    assert json.loads((tmp_path / "quantize_config.json").read_text()) == qc
    sd = load_file(tmp_path / "model.safetensors")
    loaded = load_gptq_model(tmp_path)
    for name, layer in m.named_modules():
        if isinstance(layer, QuantLinear):
            other = loaded.get_submodule(name)
            assert isinstance(other, QuantLinear)
            assert all(torch.equal(a, b) for a, b in zip(layer.codes(), other.codes(), strict=True))
            assert torch.equal(_reference_weight(sd, name, bits, v1=fmt == "gptq"), layer.dequantize())
            assert sd[f"{name}.scales"].dtype == torch.float16 and sd[f"{name}.qweight"].dtype == torch.int32
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, want)


def test_v1_cannot_store_zero_point_zero(tokenizer, tmp_path):
    from tests.conftest import tiny_llama

    m = tiny_llama(num_layers=1)
    quantize(m, QuantizeConfig(method="rtn", group_size=32, checkpoint_format="gptq_v2"), quiet=True)
    layer = m.model.layers[0].mlp.down_proj
    q, s, z = layer.codes()
    m.model.layers[0].mlp.down_proj = QuantLinear.from_codes(q, s, torch.zeros_like(z), 4, 32, False)
    with pytest.raises(SqftError, match="v1 format cannot store"):
        save_gptq_model(m, tokenizer, tmp_path / "v1", "gptq")
    save_gptq_model(m, tokenizer, tmp_path / "v2", "gptq_v2")
    loaded = load_gptq_model(tmp_path / "v2").model.layers[0].mlp.down_proj
    assert torch.equal(loaded.codes()[2], torch.zeros_like(z))


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("gptqmodel") is None or importlib.util.find_spec("optimum") is None,
    reason="needs gptqmodel + optimum (a standard GPTQ reader)",
)
@pytest.mark.parametrize("fmt", ["gptq", "gptq_v2"])
def test_transformers_reads_the_checkpoint(model, tokenizer, windows, tmp_path, fmt):
    from transformers import AutoModelForCausalLM

    m = _quantized(model, windows, checkpoint_format=fmt)
    save_gptq_model(m, tokenizer, tmp_path, fmt)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path, device_map="cpu")
    assert not any(isinstance(x, torch.nn.Linear) for x in hf.model.layers[0].self_attn.children())
    with torch.no_grad():
        want, got = m(windows[:2]).logits, hf(windows[:2]).logits.float()
    # gptqmodel's CPU kernels compute in bf16; a v1/v2 mix-up gives differences of ~4 here, not ~0.05
    assert (got - want).abs().max() < 0.15
