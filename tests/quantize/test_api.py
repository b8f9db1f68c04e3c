import pytest
import torch
from torch import nn

from sqft.errors import SqftError
from sqft.quantize import QuantizeConfig, QuantLinear, quantize


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"method": "awq"}, "unknown quantize method 'awq'"),
        ({"bits": 5}, "bits=5 is not supported"),
        ({"group_size": 0}, "group size 0 is invalid"),
        ({"percdamp": 0.0}, "damping 0.0 must be in (0, 1)"),
        ({"checkpoint_format": "marlin"}, "unknown checkpoint format 'marlin'"),
        ({"n_samples": 0}, "must be positive"),
    ],
)
def test_config_refuses_bad_values(kwargs, message):
    with pytest.raises(SqftError) as e:
        QuantizeConfig(**kwargs)
    assert message in str(e.value)


def test_group_size_must_divide_every_target(model):
    with pytest.raises(
        SqftError, match=r"group size 48 does not divide in_features=64 of model\.layers\.0\.self_attn"
    ):
        quantize(model, QuantizeConfig(method="rtn", group_size=48), quiet=True)
    assert isinstance(model.model.layers[0].self_attn.q_proj, nn.Linear)  # failed before any work


def test_gptq_needs_windows(model):
    with pytest.raises(SqftError, match="needs calibration data"):
        quantize(model, QuantizeConfig(group_size=32), None, quiet=True)


def test_quantize_replaces_targets_in_place_and_keeps_every_zero(model, windows):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "proj" in name:
                p[torch.rand(p.shape, generator=torch.Generator().manual_seed(len(name))) < 0.5] = 0
    dense = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    result = quantize(model, QuantizeConfig(group_size=32, ignore=["down_proj"]), windows, quiet=True)
    assert len(result.layers) == 2 * 6
    assert isinstance(model.model.layers[1].mlp.down_proj, nn.Linear)  # ignored
    assert isinstance(model.lm_head, nn.Linear)  # not a target
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear):
            W, W_hat = dense[name], m.dequantize()
            assert torch.equal(W_hat[W == 0], torch.zeros(int((W == 0).sum())))
            assert 0 < result.layers[name]["relative_output_error"] < 0.05
    assert result.sparsity_after >= result.sparsity_before > 0.45
    with pytest.raises(SqftError, match="already quantized"):
        quantize(model, QuantizeConfig(method="rtn", group_size=32), quiet=True)


def test_gptq_model_is_closer_to_full_precision_than_rtn(windows):
    from tests.conftest import tiny_llama

    ref = tiny_llama()
    with torch.no_grad():
        want = ref(windows).logits
    errors = {}
    for method in ("gptq", "rtn"):
        m = tiny_llama()
        quantize(m, QuantizeConfig(method=method, bits=3, group_size=-1), windows, quiet=True)
        with torch.no_grad():
            errors[method] = float(((m(windows).logits - want) ** 2).mean())
    assert errors["gptq"] < 0.6 * errors["rtn"]  # measured: 0.063 vs 0.208
