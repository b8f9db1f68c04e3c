"""AdapterLinear: LoRA math, elastic ranks, SparsePEFT / QA-SparsePEFT forward and gradients."""

import shutil

import pytest
import torch
from torch import nn

from sqft.adapt import AdaptConfig, adapter_layers, groups_of, inject_adapters, set_active_ranks
from sqft.adapt.equations import (
    QAParams,
    dither_offsets,
    fake_quant_groups,
    masked_delta,
    pack_mask,
    quant_codes,
    unpack_mask,
)
from sqft.adapt.inject import qa_params_of
from sqft.adapt.layer import AdapterLinear
from sqft.adapt.recompute import FloatBase, adapted_linear, float_merged, float_split, int4_merged_t
from sqft.errors import SqftError
from sqft.quantize.qlinear import QuantLinear
from sqft.quantize.rtn import rtn_quantize
from tests.adapt.helpers import randomize_adapters_, sparse_int4_model, sparse_model, tokens
from tests.tolerance import assert_close

needs_compiler = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("g++") is None,
    reason="torch.compile on CPU needs a C++ compiler",
)


def _ref_grads(x, xd, A, B, W, M, s):
    """Plain autograd reference: y = x Wᵀ + xd ((B A) ⊙ M · s)ᵀ."""
    L = (B @ A) * s * M
    y = x @ W.T + xd @ L.T
    return y


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=needs_compiler)])
@pytest.mark.parametrize("dropout_on", [False, True])
def test_masked_linear_matches_autograd_reference(dropout_on, fused):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(12, 16, generator=g, dtype=torch.float64)
    W[W.abs() < 0.6] = 0
    M = W != 0
    A = torch.randn(4, 16, generator=g, dtype=torch.float64, requires_grad=True)
    B = torch.randn(12, 4, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 5, 16, generator=g, dtype=torch.float64, requires_grad=True)
    xd = torch.randn(3, 5, 16, generator=g, dtype=torch.float64, requires_grad=True) if dropout_on else None
    y = adapted_linear(x, A, B, 0.5, FloatBase(lambda: W, pack_mask(M), None, fused), x_drop=xd)
    y_ref = _ref_grads(x, xd if dropout_on else x, A, B, W, M, 0.5)
    up = torch.randn(y.shape, generator=g, dtype=torch.float64)
    inputs = [x, A, B] + ([xd] if dropout_on else [])
    got = torch.autograd.grad(y, inputs, up)
    want = torch.autograd.grad(y_ref, inputs, up)
    # the layer forms W and L in fp32 (one rounding each, then a GEMM of depth 16 in fp64)
    assert_close(y, y_ref, torch.float32, 4)
    for a, b in zip(got, want):
        assert_close(a, b, torch.float32, 4)
    # gradient of A and B only flows through kept positions: a fully-masked row gets no B gradient
    assert got[2][~M.any(dim=1)].abs().sum() == 0
    assert not any(f.failed for f in (float_merged, float_split, int4_merged_t))  # fused really ran compiled


def test_lora_forward_is_base_plus_scaled_low_rank():
    base = nn.Linear(16, 8, bias=True)
    layer = AdapterLinear(base, r_max=4, alpha=8, generator=torch.Generator().manual_seed(0)).eval()
    assert torch.equal(layer.lora_B, torch.zeros(8, 4))  # B = 0: starts at the base model
    x = torch.randn(2, 16)
    assert torch.equal(layer(x), base(x))
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.set_active_rank(2)
    want = base(x) + 2.0 * (x @ layer.lora_A[:2].T) @ layer.lora_B[:, :2].T  # s = α / r_max = 2 at every rank
    assert_close(layer(x), want, torch.float32, 16)  # the sums of depth 16 and 2 in another order


def test_default_grouping_shares_qkv_per_layer_and_fixes_mlp():
    model = sparse_model()
    inject_adapters(model, AdaptConfig())
    groups = groups_of(model)
    assert list(groups) == ["model.layers.0.qkv", "model.layers.1.qkv"]
    assert [n.rsplit(".", 1)[-1] for n in groups["model.layers.0.qkv"]] == ["q_proj", "k_proj", "v_proj"]
    set_active_ranks(model, {"model.layers.0.qkv": 16, "model.layers.1.qkv": 24})
    ranks = {n: m.active_rank for n, m in adapter_layers(model).items()}
    assert ranks["model.layers.0.self_attn.k_proj"] == 16 and ranks["model.layers.1.self_attn.q_proj"] == 24
    assert ranks["model.layers.0.mlp.up_proj"] == ranks["model.layers.1.mlp.down_proj"] == 32
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A" in n or ".lora_B" in n for n in trainable)
    with pytest.raises(SqftError, match="not in its search space"):
        set_active_ranks(model, {"model.layers.0.qkv": 20, "model.layers.1.qkv": 24})


@pytest.mark.parametrize("grouping,n", [("module", 10), ("layer", 2)])
def test_other_groupings(grouping, n):
    model = sparse_model()
    inject_adapters(model, AdaptConfig(grouping=grouping))
    assert len(groups_of(model)) == n


def test_qa_forward_starts_exactly_at_the_gptq_model():
    model = sparse_int4_model()
    x = tokens()
    want = model(x).logits
    inject_adapters(model, AdaptConfig(sparse_adapter=True, quantization_aware=True, qa_base="gptq"))
    assert torch.equal(model.eval()(x).logits, want)  # B = 0: Q(Ŵ_gptq) = q exactly


def test_dithered_qa_starts_at_the_gptq_codes_and_moves_them_at_once():
    """qa_base = gptq-dither: B = 0 gives the GPTQ model exactly; a delta far below half a step moves no code of the
    plain gptq base but about |L| / s_q of the dithered codes (E_u[round(u + L/s)] = L/s), never a pruned one."""
    x = tokens()
    models = {}
    for qa_base in ("gptq", "gptq-dither"):
        model = sparse_int4_model()
        want = model(x).logits
        inject_adapters(model, AdaptConfig(sparse_adapter=True, quantization_aware=True, qa_base=qa_base))
        assert torch.equal(model.eval()(x).logits, want)
        models[qa_base] = model
    moved = {}
    for qa_base, model in models.items():
        n_moved = expected = 0.0
        for layer in adapter_layers(model).values():
            q, scale, zero = layer.base_layer.codes()  # (out, in), (out, G)
            s_full = scale.repeat_interleave(q.shape[1] // scale.shape[1], 1)
            with (
                torch.no_grad()
            ):  # L = 0.1 s_q on every kept weight: no weight crosses half a step on its own
                layer.lora_A.zero_()[0].fill_(1.0)
                layer.lora_B.zero_()[:, 0].fill_(0.1 * float(s_full.min()) / layer.scaling)
            L = layer.delta_weight().detach()
            assert float((L / s_full).abs().max()) <= 0.1 + 1e-6
            Q = layer.merged_codes()
            pruned = layer.mask.logical_not()
            assert torch.equal(Q[pruned], q[pruned])  # pruned codes stay at z
            n_moved += float((Q != q).sum())
            expected += float((L / s_full).abs().sum())  # Σ |L| / s_q: the expected count of moved codes
        moved[qa_base] = (n_moved, expected)
    assert moved["gptq"][0] == 0  # frozen: round(L / s) = 0 everywhere
    n, e = moved["gptq-dither"]
    assert 0.8 * e < n < 1.2 * e, (n, e)


def test_dither_offsets_are_reproducible_and_in_the_bin():
    u = dither_offsets((64, 96), seed=7)
    assert torch.equal(u, dither_offsets((64, 96), seed=7)) and not torch.equal(
        u, dither_offsets((64, 96), 8)
    )
    assert float(u.min()) >= -0.5 and float(u.max()) < 0.5 and torch.equal(u.round(), torch.zeros_like(u))
    assert abs(float(u.mean())) < 0.01


def test_qa_gradient_is_straight_through_to_the_adapter():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(8, 32, generator=g)
    scale = torch.full((8, 1), 0.25)
    zero = torch.full((8, 1), 8.0)
    qa = QAParams(scale, zero, 4, 32)
    A = torch.randn(2, 32, generator=g, requires_grad=True)
    B = torch.randn(8, 2, generator=g, requires_grad=True)
    x = torch.randn(5, 32, generator=g)
    y = adapted_linear(x, A, B, 1.0, FloatBase(lambda: W, None, qa))
    assert torch.equal(y, x @ fake_quant_groups(W + masked_delta(A, B, 1.0, None), qa).T)
    y.sum().backward()
    gL = torch.ones(5, 8).T @ x  # ∂Σy/∂Ŵ, passed straight through to L
    assert_close(A.grad, B.detach().T @ gL, torch.float32, 8)  # depth-5 and depth-8 sums in another order


def test_qa_base_auto_resolves_by_the_base_and_the_model_keeps_the_concrete_one(caplog):
    from sqft.adapt.api import resolve_qa_base
    from sqft.adapt.inject import adapter_config_of

    cfg = AdaptConfig(sparse_adapter=True, quantization_aware=True)
    assert cfg.qa_base == "auto" and AdaptConfig().resolved_qa_base(True).qa_base == "auto"  # not QA: as is
    assert cfg.resolved_qa_base(int4_base=True).qa_base == "gptq-dither"
    assert cfg.resolved_qa_base(int4_base=False).qa_base == "fp16"
    assert cfg.with_(qa_base="gptq").resolved_qa_base(True).qa_base == "gptq"  # an explicit choice stays
    int4 = sparse_int4_model()
    inject_adapters(int4, cfg)
    assert adapter_config_of(int4).qa_base == "gptq-dither"  # what save_adapter records
    assert all(m.dither_seed is not None for m in adapter_layers(int4).values())
    dense = sparse_model()
    qa = {n: qa_params_of(m) for n, m in sparse_int4_model().named_modules() if hasattr(m, "codes")}
    inject_adapters(dense, cfg, qa)
    assert adapter_config_of(dense).qa_base == "fp16"
    with caplog.at_level("INFO", logger="sqft.adapt.api"):
        assert resolve_qa_base(cfg, fp16_parent=False).qa_base == "gptq-dither"
        assert resolve_qa_base(cfg, fp16_parent=True).qa_base == "gptq-residual"
    assert "would freeze the forward" in caplog.text and "moved into the bin of its GPTQ code" in caplog.text


def test_config_validation():
    with pytest.raises(SqftError, match="maximum 24"):
        AdaptConfig(r_max=32, ranks=(24, 16))
    with pytest.raises(SqftError, match="positive"):
        AdaptConfig(ranks=(32, 0))
    with pytest.raises(SqftError, match="r_max"):
        AdaptConfig(r_max=0)
    assert AdaptConfig(adapter="lora").ranks == (32,)
    assert AdaptConfig.for_pipeline("sqft-qa-sparsepeft").variant == "qa-sparsepeft"


def test_qa_on_dense_base_and_sparse_on_int4_are_refused():
    with pytest.raises(SqftError, match="INT4"):
        inject_adapters(sparse_model(), AdaptConfig(sparse_adapter=True, quantization_aware=True))
    with pytest.raises(SqftError, match="quantization-aware"):
        inject_adapters(sparse_int4_model(), AdaptConfig(sparse_adapter=True))


def test_unknown_target_is_refused():
    with pytest.raises(SqftError, match="match no linear"):
        inject_adapters(sparse_model(), AdaptConfig(targets=("q_prj",)))


def test_adapted_model_output_changes_with_rank():
    model = sparse_model()
    inject_adapters(model, AdaptConfig(sparse_adapter=True))
    randomize_adapters_(model)
    x = tokens()
    a = model.eval()(x).logits
    set_active_ranks(model, dict.fromkeys(groups_of(model), 16))
    b = model(x).logits
    set_active_ranks(model, dict.fromkeys(groups_of(model), 32))
    assert not torch.equal(a, b) and torch.equal(model(x).logits, a)


@pytest.mark.parametrize("n_in", [1, 7, 8, 64, 100])
def test_mask_is_stored_as_one_bit_per_weight_and_round_trips(n_in):
    M = torch.rand(5, n_in, generator=torch.Generator().manual_seed(n_in)) < 0.5
    P = pack_mask(M)
    assert P.dtype == torch.uint8 and P.shape == (5, -(-n_in // 8))
    assert torch.equal(unpack_mask(P, n_in), M)
    base = nn.Linear(n_in, 5, bias=False)
    base.weight.data *= M  # pruned where M is False
    layer = AdapterLinear(base, 4, 8, sparse=True)
    assert layer.mask_bits.numel() == 5 * -(-n_in // 8)  # 1/8 of a bool buffer
    assert torch.equal(layer.mask, M)


def _int4_layer(sparse: bool = True, dropout: float = 0.0, out: int = 24, n_in: int = 96, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(out, n_in, generator=g)
    W[W.abs() < 0.7] = 0  # about half pruned
    q, scale, zero = rtn_quantize(W, 4, 32, min_zero=1)
    base = QuantLinear.from_codes(q, scale, zero, 4, 32, False)
    layer = AdapterLinear(base, 4, 8, dropout, sparse=sparse, qa=qa_params_of(base), generator=g)
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.3)  # moves many codes
    return layer, base


@pytest.mark.parametrize("sparse", [True, False])
def test_int4_qa_is_eq3_in_integer_form(sparse):
    """On the INT4 base, Q = clamp(q + round(L / s_q), 0, 15) equals eq. 3 on W = s_q (q − z) + L."""
    layer, base = _int4_layer(sparse)
    W = base.dequantize()
    M = W != 0
    assert layer.mask_bits is None and (torch.equal(layer.mask, M) if sparse else layer.mask is None)
    L = masked_delta(layer.lora_A, layer.lora_B, layer.scaling, M if sparse else None)
    want = quant_codes(W + L, layer._qa())  # the SPEC formula through the fp32 weight
    got = layer.merged_codes()
    assert torch.equal(got, want) and not torch.equal(got, base.codes()[0])  # the adapter moved codes
    if sparse:
        assert torch.equal(got[~M], base.codes()[2].repeat_interleave(32, dim=1)[~M])  # pruned: Q = z
    assert torch.equal(layer.merged_weight(), fake_quant_groups(W + L, layer._qa()))


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=needs_compiler)])
def test_int4_qa_forward_and_gradients_match_the_fp32_weight_reference(fused):
    """The INT4-code path (eager, or compiled into fused kernels) and the dense-weight path (qa_base = fp16 on
    the same weight) agree in value and gradient."""
    layer, base = _int4_layer()
    W = base.dequantize()
    ref = FloatBase(lambda: W, pack_mask(W != 0), layer._qa())
    x = torch.randn(3, 5, 96, generator=torch.Generator().manual_seed(1), requires_grad=True)
    A, B = layer.lora_A, layer.lora_B
    got = adapted_linear(x, A, B, layer.scaling, layer._weight_base(fused))
    want = adapted_linear(x, A, B, layer.scaling, ref)
    assert torch.equal(got, want)
    up = torch.randn(got.shape, generator=torch.Generator().manual_seed(2))
    for a, b in zip(torch.autograd.grad(got, [x, A, B], up), torch.autograd.grad(want, [x, A, B], up)):
        assert_close(a, b, torch.float32, 15)  # same math; the token sum (15) in another GEMM layout
    assert not any(f.failed for f in (float_merged, float_split, int4_merged_t))  # fused really ran compiled


@needs_compiler
def test_one_compiled_kernel_serves_every_layer_shape():
    """Dynamo's recompile limit is 8 per function: a kernel per weight shape would fall back to eager at 9."""
    g = torch.Generator().manual_seed(0)
    for out, n_in in [(8 * k, 8 * (k + 1)) for k in range(1, 11)]:  # 10 shapes
        W = nn.Parameter(torch.randn(out, n_in, generator=g), requires_grad=False)
        M = W != 0
        A, B = torch.randn(2, n_in, generator=g), torch.randn(out, 2, generator=g)
        fused = FloatBase(lambda W=W: W, pack_mask(M), None, fused=True)
        got, _ = fused.merged(A, B, 0.5, torch.float32)
        assert torch.equal(got, W + masked_delta(A, B, 0.5, M)) and not float_merged.failed
