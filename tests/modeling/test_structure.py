import pytest
import torch
from torch import nn

from sqft.errors import SqftError
from sqft.modeling import DEFAULT_TARGETS, check_targets, decoder_layers, find_target_linears, target_linears
from sqft.modeling.structure import matches


def _tiny(config_cls_name: str, model_cls_name: str, **extra):
    import transformers

    cfg = getattr(transformers, config_cls_name)(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        **extra,
    )
    return getattr(transformers, model_cls_name)(cfg)


@pytest.mark.parametrize(
    "cfg,cls,names",
    [
        ("LlamaConfig", "LlamaForCausalLM", {"self_attn.q_proj", "mlp.gate_proj", "mlp.down_proj"}),
        ("MistralConfig", "MistralForCausalLM", {"self_attn.k_proj", "mlp.up_proj"}),
        ("Qwen2Config", "Qwen2ForCausalLM", {"self_attn.v_proj", "self_attn.o_proj"}),
        ("Phi3Config", "Phi3ForCausalLM", {"self_attn.qkv_proj", "mlp.gate_up_proj", "mlp.down_proj"}),
    ],
)
def test_llama_family_blocks_and_targets(cfg, cls, names):
    model = _tiny(cfg, cls)
    layers = decoder_layers(model)
    assert len(layers) == 2
    found = target_linears(layers[0])
    assert names <= set(found)
    assert all(isinstance(m, nn.Linear) for m in found.values())
    full = find_target_linears(model)
    assert len(full) == 2 * len(found) and all(n.startswith("model.layers.") for n in full)


def test_suffix_and_regex_matching():
    assert matches("self_attn.q_proj", "q_proj")
    assert not matches("self_attn.q_proj", "proj")  # suffixes match whole name parts
    assert matches("mlp.down_proj", "re:mlp\\..*")
    assert not matches("self_attn.o_proj", "re:mlp\\..*")
    model = _tiny("LlamaConfig", "LlamaForCausalLM")
    only_attn = target_linears(decoder_layers(model)[0], ["re:self_attn\\..*"], ignore=["o_proj"])
    assert set(only_attn) == {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}


def test_unknown_target_and_bad_regex_are_refused():
    model = _tiny("LlamaConfig", "LlamaForCausalLM")
    with pytest.raises(SqftError, match="'qq_proj' match no linear layer"):
        check_targets(model, ["q_proj", "qq_proj"])
    with pytest.raises(SqftError, match="not a valid regex"):
        check_targets(model, ["re:("])
    check_targets(model, DEFAULT_TARGETS)  # defaults include Phi-3 names absent here: fine


def test_unmappable_architecture_has_a_clear_error():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2)])

    with pytest.raises(SqftError, match="cannot map the architecture"):
        decoder_layers(Odd())


def test_quantized_like_linears_are_targets():
    class FakeQuant(nn.Module):
        in_features, out_features = 4, 4

        def dequantize(self, dtype=torch.float32):
            return torch.zeros(4, 4, dtype=dtype)

    block = nn.Module()
    block.q_proj = FakeQuant()
    assert list(target_linears(block)) == ["q_proj"]
