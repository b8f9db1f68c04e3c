"""GGUF export of tiny Llamas, checked by readers sqft did not write: gguf's GGUFReader and dequantizers, and
transformers' GGUF loader (weights, config and tokenizer)."""

from __future__ import annotations

import json

import pytest
import torch

from sqft.errors import SqftError
from sqft.export.blocks import fp16_ulp, unpermute_qk
from sqft.export.gguf import write_gguf
from sqft.export.inputs import export_inputs
from sqft.export.tokenizer import TOKEN_TYPES
from tests.export.helpers import CHAT_TEMPLATE, bpe_llama, bpe_tokenizer, int4_llama
from tests.tolerance import assert_close

gguf = pytest.importorskip("gguf")

TEXT = "Natalia sold 48 clips in April and half as many in May."
BLOCK_NAMES = [
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
]


@pytest.fixture(scope="module")
def tok():
    return bpe_tokenizer()


def _write(tmp_path, model, tok, float_type="f16", name="tiny", **config):
    """Write `model` (with `config` overriding keys of its HF config) to TMP/NAME.gguf."""
    path = tmp_path / f"{name}.gguf"
    inputs = export_inputs(model, name)
    inputs.config.update(config)
    figures = write_gguf(inputs, tok, path, float_type)
    return path, figures


def _meta(reader, key):
    return reader.fields[key].contents()


def _hf_load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def _logits(model, tok, text=TEXT):
    with torch.no_grad():
        return model(torch.tensor([tok.encode(text)])).logits.float()


def test_reader_sees_every_tensor_with_its_name_type_and_shape(tmp_path, tok):
    model = int4_llama(tok, group_size=64, sparsity=0.5)
    path, figures = _write(tmp_path, model, tok)
    r = gguf.GGUFReader(path)
    got = {t.name: (t.tensor_type.name, [int(x) for x in t.shape]) for t in r.tensors}
    # 2 blocks × 9 tensors + embeddings, final norm, output head
    assert len(got) == 2 * 9 + 3 == figures["tensors"]
    assert figures["tensor_types"] == {"F16": 2, "F32": 5, "Q4_1": 14}
    assert got["token_embd.weight"] == ("F16", [64, len(tok)])  # GGUF lists ne0 (the input dim) first
    assert got["output.weight"] == ("F16", [64, len(tok)])
    assert got["output_norm.weight"] == ("F32", [64])
    for i in range(2):
        assert {n.split(".")[2] for n in got if n.startswith(f"blk.{i}.")} == set(BLOCK_NAMES)
        assert got[f"blk.{i}.attn_q.weight"] == ("Q4_1", [64, 64])
        assert got[f"blk.{i}.attn_k.weight"] == ("Q4_1", [64, 32])  # 2 kv heads of 16
        assert got[f"blk.{i}.ffn_down.weight"] == ("Q4_1", [128, 64])
        assert got[f"blk.{i}.ffn_norm.weight"] == ("F32", [64])


def test_metadata_architecture_and_tokenizer(tmp_path, tok):
    model = bpe_llama(tok)
    path, _ = _write(tmp_path, model, tok)
    r = gguf.GGUFReader(path)
    cfg = model.config
    assert _meta(r, "general.architecture") == "llama" and _meta(r, "general.name") == "tiny"
    assert _meta(r, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_F16)
    expected = {
        "llama.block_count": 2,
        "llama.context_length": cfg.max_position_embeddings,
        "llama.embedding_length": 64,
        "llama.feed_forward_length": 128,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "llama.vocab_size": len(tok),
        "llama.rope.dimension_count": 16,
    }
    assert {k: _meta(r, k) for k in expected} == expected
    assert _meta(r, "llama.rope.freq_base") == pytest.approx(cfg.rope_parameters["rope_theta"])
    assert _meta(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(cfg.rms_norm_eps, rel=1e-6)
    tokens = [r.fields["tokenizer.ggml.tokens"].contents(i) for i in range(len(tok))]
    vocab = tok.get_vocab()
    assert tokens == sorted(vocab, key=vocab.get)
    types = [r.fields["tokenizer.ggml.token_type"].contents(i) for i in range(len(tok))]
    assert types[:4] == [TOKEN_TYPES["control"]] * 4 and set(types[4:]) == {TOKEN_TYPES["normal"]}
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    field = r.fields["tokenizer.ggml.merges"]
    assert [field.contents(i) for i in range(len(field.data))] == [" ".join(m) for m in merges]
    assert _meta(r, "tokenizer.ggml.model") == "gpt2" and _meta(r, "tokenizer.ggml.pre") == "gpt-2"
    ids = {k: _meta(r, f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding")}
    assert ids == {"bos": 1, "eos": 2, "unknown": 0, "padding": 3}
    assert _meta(r, "tokenizer.chat_template") == CHAT_TEMPLATE


@pytest.mark.parametrize("sym,group", [(False, 32), (True, 32), (False, -1)])
def test_gguf_dequantization_reproduces_sqft_weights(tmp_path, tok, sym, group):
    model = int4_llama(tok, group_size=group, sym=sym, sparsity=0.5)  # -1: per channel, one group per row
    path, figures = _write(tmp_path, model, tok)
    r = {t.name: t for t in gguf.GGUFReader(path).tensors}
    heads = {"attn_q": 4, "attn_k": 2}
    worst = 0.0
    for name, qw in export_inputs(model).quantized.items():
        layer, kind = name.split(".")[2], name.rsplit(".", 1)[1]
        gname = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}.get(
            kind, {"gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}.get(kind)
        )
        t = r[f"blk.{layer}.{gname}.weight"]
        w = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy())  # (out, in)
        if gname in heads:
            w = unpermute_qk(w, heads[gname])
        w_sqft = qw.dequantize()
        q, s, z = qw.codes()
        bound = (fp16_ulp(-s.float() * z.float()) / 2).repeat_interleave(qw.group_size, 1)
        delta = (w - w_sqft).abs()
        assert bool((delta <= bound).all()), name  # |Δw| ≤ ulp_fp16(m)/2 per weight
        pruned = w_sqft == 0
        assert bool((w[pruned].abs() <= bound[pruned]).all())  # pruned: ≈ 0, within the same bound
        worst = max(worst, float(delta.max()))
    assert worst == pytest.approx(figures["max_abs_weight_delta_q4_1"], abs=0)
    if sym:
        assert worst == 0.0  # symmetric: m = −8·s exactly, pruned weights exactly 0
    else:
        assert 0 < worst < 5e-4  # measured: 1.2e-4 at weights ~ N(0, 0.1), i.e. |m| < 0.5


def test_transformers_gguf_loader_reproduces_int4_logits(tmp_path, tok):
    sym = int4_llama(tok, group_size=32, sym=True, sparsity=0.5)
    path, _ = _write(tmp_path, sym, tok, float_type="f32", name="sym")
    hf, hf_tok = _hf_load(path)
    assert hf_tok.encode(TEXT) == tok.encode(TEXT)  # the tokenizer survives: same ids
    # symmetric + F32 other tensors: the file holds sqft's model exactly, so the logits are equal
    assert torch.equal(_logits(hf, tok), _logits(sym, tok))
    asym = int4_llama(tok, group_size=64, sparsity=0.5)
    path, _ = _write(tmp_path, asym, tok, name="asym")
    ref = _logits(asym, tok)
    diff = float((_logits(_hf_load(path)[0], tok) - ref).abs().max())
    # fp16(m) and the F16 embeddings/head round: measured 4e-3 on logits of magnitude ~3
    assert diff < 2e-2 * float(ref.abs().max())


@pytest.mark.parametrize("float_type,rel", [("f32", 1e-6), ("f16", 5e-3), ("q8_0", 3e-2)])
def test_transformers_gguf_loader_reproduces_sparse_float_logits(tmp_path, tok, float_type, rel):
    from tests.export.helpers import prune_magnitude

    model = bpe_llama(tok)
    prune_magnitude(model, 0.5)
    path, figures = _write(tmp_path, model, tok, float_type=float_type)
    assert figures["file_type"] == float_type
    ref = _logits(model, tok)
    diff = float((_logits(_hf_load(path)[0], tok) - ref).abs().max())
    assert diff <= rel * float(ref.abs().max())


def test_qwen2_exports_without_permutation_and_with_biases(tmp_path, tok):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    path, figures = _write(tmp_path, model, tok, float_type="f32")
    names = {t.name for t in gguf.GGUFReader(path).tensors}
    assert "blk.0.attn_q.bias" in names and "output.weight" not in names  # tied head: no copy
    assert_close(_logits(_hf_load(path)[0], tok), _logits(model, tok), torch.float32, cfg.hidden_size)


def test_llama3_rope_factors_match_transformers(tmp_path, tok):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from sqft.export.mapping import llama3_rope_factors, rope_parameters

    rp = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
    cfg = LlamaConfig(
        max_position_embeddings=16384, rope_parameters={**rp, "original_max_position_embeddings": 8192}
    )
    inv_scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    base = 1.0 / (cfg.rope_parameters["rope_theta"] ** (torch.arange(0, head_dim, 2).float() / head_dim))
    factors = llama3_rope_factors(rope_parameters(cfg.to_dict()), head_dim)
    assert_close(base / factors, inv_scaled.float(), torch.float32, 4)
    # the file carries them as llama.cpp's rope_freqs tensor (head_dim/2 factors, F32)
    path, _ = _write(
        tmp_path, bpe_llama(tok), tok, rope_parameters={**rp, "original_max_position_embeddings": 64}
    )
    t = next(t for t in gguf.GGUFReader(path).tensors if t.name == "rope_freqs.weight")
    assert t.tensor_type.name == "F32" and [int(x) for x in t.shape] == [8]


def _refused(tmp_path, model, tok, match, **kw):
    with pytest.raises(SqftError, match=match):
        _write(tmp_path, model, tok, **kw)
    assert not list(tmp_path.iterdir())  # refused before the file was opened


def test_refusals_before_anything_is_written(tmp_path, tok):
    from sqft.quantize.api import QuantizeConfig, quantize
    from tests.conftest import char_tokenizer

    eight = bpe_llama(tok)
    quantize(eight, QuantizeConfig(method="rtn", bits=8, group_size=32), None, quiet=True)
    _refused(tmp_path, eight, tok, "8-bit")
    _refused(tmp_path, int4_llama(tok, group_size=16), tok, "group size 16")
    _refused(tmp_path, bpe_llama(tok), char_tokenizer(), "byte-level BPE")
    model = bpe_llama(tok)
    _refused(tmp_path, model, tok, "architecture 'phi3'", model_type="phi3")
    _refused(tmp_path, model, tok, "sliding window", model_type="mistral", sliding_window=64)
    yarn = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}
    _refused(tmp_path, model, tok, "RoPE scaling 'yarn'", rope_parameters=yarn)
    _refused(tmp_path, bpe_llama(tok), tok, "float type", float_type="bf16")


def test_a_bos_added_by_the_post_processor_is_stated(tmp_path):
    """Llama 3 adds BOS in its tokenizer's post-processor, not through an `add_bos_token` attribute."""
    from tokenizers import processors

    tok = bpe_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    assert tok.encode(TEXT)[0] == 1
    path, _ = _write(tmp_path, bpe_llama(tok), tok)
    r = gguf.GGUFReader(path)
    assert _meta(r, "tokenizer.ggml.add_bos_token") is True
    assert _hf_load(path)[1].encode(TEXT) == tok.encode(TEXT)
