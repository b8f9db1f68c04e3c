"""The memory-saving path (`adapt.recompute`) against the paper's plain-autograd forward (`adapt.reference`):
outputs and gradients agree for every variant, fp32 and bf16, dropout off and on."""

import pytest
import torch
from torch import nn

from sqft.adapt.equations import QAParams
from sqft.adapt.inject import qa_params_of
from sqft.adapt.layer import AdapterLinear
from sqft.quantize.qlinear import QuantLinear
from sqft.quantize.rtn import rtn_quantize
from tests.tolerance import assert_close

OUT, IN, GS = 24, 96, 32
# variant → (base, sparse adapter, quantization-aware, dithered INT4 base, active rank)
VARIANTS = {
    "lora": ("float", False, False, False, 8),
    "nls-slice": ("float", False, False, False, 4),
    "lora-on-int4": ("int4", False, False, False, 8),
    "sparsepeft": ("float", True, False, False, 4),
    "qa-sparsepeft-fp16": ("float", True, True, False, 4),
    "qa-dense-fp16": ("float", False, True, False, 8),
    "qa-sparsepeft-gptq": ("int4", True, True, False, 4),
    "qa-sparsepeft-gptq-dither": ("int4", True, True, True, 4),
}


def make_layer(variant: str, dropout: float, dtype: torch.dtype) -> AdapterLinear:
    """A 50%-sparse target linear with its adapter; B random, so the adapter moves outputs (and QA codes)."""
    kind, sparse, qa, dither, rank = VARIANTS[variant]
    g = torch.Generator().manual_seed(0)
    W = torch.randn(OUT, IN, generator=g)
    W[W.abs() < 0.67] = 0
    q, scale, zero = rtn_quantize(W, 4, GS, min_zero=1)
    if kind == "int4":
        base = QuantLinear.from_codes(q, scale, zero, 4, GS, False)
    else:
        base = nn.Linear(IN, OUT, bias=True).to(dtype)
        with torch.no_grad():
            base.weight.copy_(W)
    qa_params = None
    if qa:
        qa_params = qa_params_of(base) if kind == "int4" else QAParams(scale.float(), zero.float(), 4, GS)
    layer = AdapterLinear(
        base, 8, 16, dropout, sparse=sparse, qa=qa_params, generator=g, dither_seed=11 if dither else None
    )
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.3)
    layer.set_active_rank(rank)
    return layer.train()


def forward_backward(layer: AdapterLinear, path: str, x: torch.Tensor, up: torch.Tensor):
    """y and ∂(y·up)/∂(x, A, B) on `path`, the dropout mask drawn from the same seed."""
    layer.path = path
    x = x.detach().requires_grad_()
    torch.manual_seed(123)
    y = layer(x)
    return (y, *torch.autograd.grad(y, [x, layer.lora_A, layer.lora_B], up))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_recompute_path_matches_the_reference(variant, dropout, dtype):
    layer = make_layer(variant, dropout, dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, IN, generator=g).to(dtype)
    up = torch.randn(3, 5, OUT, generator=g).to(dtype)
    got = forward_backward(layer, "recompute", x, up)
    want = forward_backward(layer, "reference", x, up)
    assert got[0].dtype == want[0].dtype == dtype
    # the same weights and GEMMs: outputs agree to one rounding; gradients to a few (the order of the fp32
    # chain into A and B differs: masked, scaled, then multiplied)
    for name, a, b, k in zip(("y", "∂x", "∂A", "∂B"), got, want, (1, 1, 4, 4)):
        assert_close(a, b, dtype, k, msg=f"{variant} {name}")
    assert got[2].abs().sum() > 0 and got[3].abs().sum() > 0  # the adapter really gets gradients


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_qa_dropout_is_on_the_layer_input(dropout):
    """QA-SparsePEFT computes y = dropout(x) Ŵᵀ: with dropout every output is a product with the dropped input
    (the authors' design, one GEMM), not x Ŵᵀ plus a dropped adapter branch."""
    layer = make_layer("qa-sparsepeft-fp16", dropout, torch.float32)
    x = torch.randn(4, IN, generator=torch.Generator().manual_seed(2))
    W_hat = layer.merged_weight()  # eval-mode Ŵ
    torch.manual_seed(5)
    y = layer(x)
    torch.manual_seed(5)
    x_in = nn.functional.dropout(x, dropout, training=True) if dropout else x
    assert torch.equal(y, nn.functional.linear(x_in, W_hat, layer.bias))


def test_sparsepeft_dropout_feeds_only_the_adapter_branch():
    """SparsePEFT with dropout: y = x Wᵀ + dropout(x) Lᵀ; at B = 0 dropout leaves the base path untouched."""
    layer = make_layer("sparsepeft", 0.5, torch.float32)
    with torch.no_grad():
        layer.lora_B.zero_()
    x = torch.randn(64, IN, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(3)
    assert torch.equal(layer(x), layer.base_layer(x))


def test_reference_path_keeps_weights_the_recompute_path_remakes():
    """What the optimisation buys: the recompute path saves no weight-sized tensor for backward."""
    layer = make_layer("sparsepeft", 0.0, torch.float32)
    x = torch.randn(2, IN, requires_grad=True)
    saved = {}
    for path in ("recompute", "reference"):
        layer.path = path
        sizes: list[int] = []

        def pack(t: torch.Tensor, sizes=sizes) -> torch.Tensor:
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            layer(x).sum().backward()
        saved[path] = max(sizes)
    assert saved["recompute"] < OUT * IN <= saved["reference"]
