"""Merge: SparsePEFT keeps every zero and the logits; QA-SparsePEFT gives the INT4 model the training used."""

import pytest
import torch

from sqft.adapt import AdaptConfig, adapter_layers, groups_of, inject_adapters, set_active_ranks
from sqft.adapt.equations import bin_position, quant_codes, snapped_to_bins
from sqft.adapt.export import save_adapter
from sqft.adapt.inject import qa_params_of
from sqft.errors import SqftError
from sqft.merge import (
    EDGE,
    dense_target_linears,
    load_qa_fp16_base,
    merge_adapters,
    prepare_qa_fp16_base,
    require_qa_int4,
    snap_to_int4_bins,
    take_int4_layers,
    take_untargeted_int4_layers,
)
from sqft.modeling.structure import find_target_linears
from sqft.stages.finetune import qa_params_from
from tests.adapt.helpers import (
    ALL_LINEARS,
    nudge_codes_,
    randomize_adapters_,
    sparse_int4_model,
    sparse_model,
    tokens,
)
from tests.conftest import tiny_llama
from tests.tolerance import gamma


def _rel_bound(dtype: torch.dtype, logits: torch.Tensor) -> float:
    """Merged vs unmerged differ only by where W + L is rounded: a few ulps of the logits' scale."""
    return gamma(128, dtype) * float(logits.detach().abs().max())


def _zeros(model):
    return {n: (m.weight == 0) for n, m in find_target_linears(model, ALL_LINEARS).items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sparsepeft_merge_keeps_zeros_and_logits(dtype):
    model = sparse_model().to(dtype)
    zeros = _zeros(model)
    inject_adapters(model, AdaptConfig(sparse_adapter=True))
    randomize_adapters_(model, std=0.2)
    set_active_ranks(model, dict.fromkeys(groups_of(model), 24))
    x = tokens()
    unmerged = model.eval()(x).logits
    merged, report = merge_adapters(model, probe=x)
    assert not adapter_layers(merged)
    for name, z in _zeros(merged).items():
        assert (z | ~zeros[name]).all()  # every pruned weight is still exactly zero
    # eval forward folds W + L exactly as merge does: equal bit for bit
    assert torch.equal(merged(x).logits, unmerged)
    assert report.probe_max_abs_logit_diff == 0.0 <= _rel_bound(dtype, unmerged)
    assert report.checks["zeros_kept"]
    assert report.sparsity >= 0.5  # q,k,v,up,down were pruned to 50% and stay so


@pytest.mark.parametrize("qa_base", ["gptq", "gptq-dither"])
def test_qa_merge_gives_identical_codes_and_logits(qa_base):
    model = sparse_int4_model()
    base_codes = {n: m.codes() for n, m in find_target_linears(model, ALL_LINEARS).items()}
    inject_adapters(model, AdaptConfig(sparse_adapter=True, quantization_aware=True, qa_base=qa_base))
    randomize_adapters_(model, std=0.5)
    set_active_ranks(model, dict.fromkeys(groups_of(model), 16))
    layers = adapter_layers(model)
    eval_codes = {n: layer.merged_codes() for n, layer in layers.items()}
    x = tokens()
    eval_logits = model.eval()(x).logits
    merged, report = merge_adapters(model, probe=x)
    changed = 0
    for name, q in eval_codes.items():
        mq, ms, mz = merged.get_submodule(name).codes()
        bq, bs, bz = base_codes[name]
        assert (
            torch.equal(mq, q) and torch.equal(ms, bs) and torch.equal(mz, bz)
        )  # same (s, z), trained codes
        z_full = bz.repeat_interleave(32, 1)  # (out, in)
        pruned = bq == z_full
        assert torch.equal(mq[pruned], z_full[pruned])  # pruned (and zero-coded) weights stay at z → ŵ = 0
        changed += int((mq != bq).sum())
    assert changed > 0  # the adapter did move weights across grid points
    assert torch.equal(merged(x).logits, eval_logits)
    assert report.codes_equal_eval and report.probe_max_abs_logit_diff == 0.0


@pytest.mark.parametrize("as_merged", [True, False])
def test_qa_on_the_fp16_base_trains_the_model_that_merge_writes(as_merged):
    """qa_base = fp16: with the layers that carry no adapter taken from the INT4 model (what `sqft finetune
    --qa-int4` does), the merged INT4 model computes what the trained model computes in eval mode; with those
    layers left in fp16 it does not (o_proj and gate_proj would be INT4 only after the merge)."""
    model, int4 = sparse_model(), sparse_int4_model()
    cfg = AdaptConfig(sparse_adapter=True, quantization_aware=True, qa_base="fp16")
    if as_merged:
        assert sorted(
            {n.rsplit(".", 1)[1] for n in take_untargeted_int4_layers(model, cfg.targets, int4, "int4")}
        ) == [
            "gate_proj",
            "o_proj",
        ]
    inject_adapters(model, cfg, qa_params_from(int4))
    randomize_adapters_(model, std=0.5)
    x = tokens()
    eval_logits = model.eval()(x).logits
    merged, _ = merge_adapters(model, probe=x)
    take_int4_layers(merged, dense_target_linears(merged), int4, "int4")  # what the merge stage completes
    assert torch.equal(merged(x).logits, eval_logits) == as_merged


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_snapped_weights_keep_the_gptq_codes_in_the_models_dtype(dtype):
    """The snapped weights, cast to the model's dtype, quantize to the INT4 model's codes exactly and lie strictly
    inside their bins (bf16's rounding moves a weight up to 1/16 of a step, beyond EDGE: it must not cross), and
    no further from where fp32 put them than one unit in the last place of the dtype."""
    model, int4 = sparse_model().to(dtype), nudge_codes_(sparse_int4_model())
    targets = ("q_proj", "k_proj", "v_proj", "up_proj", "down_proj")
    sparse_w = {n: m.weight.clone() for n, m in find_target_linears(model, targets).items()}
    snap_to_int4_bins(model, targets, int4, "int4")
    for name, linear in find_target_linears(model, targets).items():
        layer = int4.get_submodule(name)
        q, qa = layer.codes()[0], qa_params_of(layer)
        assert linear.weight.dtype == dtype
        assert torch.equal(quant_codes(linear.weight, qa), q), name
        assert (bin_position(linear.weight, q, qa).abs() < 0.5).all(), name
        want = snapped_to_bins(sparse_w[name].float(), q, qa, EDGE)
        ulp = torch.finfo(dtype).eps * want.abs().clamp_min(torch.finfo(dtype).tiny)
        assert ((linear.weight.float() - want).abs() <= ulp).all(), name


def test_qa_on_gptq_residual_trains_the_model_that_merge_writes():
    """qa_base = gptq-residual, prepared as the finetune, evaluate and merge stages prepare it: merged = eval."""
    model, int4 = _qa_on("gptq-residual", std=0.5)
    x = tokens()
    eval_logits = model(x).logits
    merged, report = merge_adapters(model, probe=x)
    assert dense_target_linears(merged) == []  # the untargeted layers came from the INT4 model already
    assert torch.equal(merged(x).logits, eval_logits) and report.codes_equal_eval


def _qa_on(qa_base: str, std: float = 0.0):
    """The sparse model with a QA adapter on `qa_base`, prepared from a GPTQ-like INT4 model (a quarter of its
    codes one step off round-to-nearest) as `sqft finetune --qa-int4` prepares it; B ~ N(0, std²) (0: untrained)."""
    int4 = nudge_codes_(sparse_int4_model())
    cfg = AdaptConfig(sparse_adapter=True, quantization_aware=True, qa_base=qa_base)
    if qa_base == "gptq":
        model = nudge_codes_(sparse_int4_model())
        inject_adapters(model, cfg)
    else:
        model = sparse_model()
        prepare_qa_fp16_base(model, cfg, int4, "int4")
        inject_adapters(model, cfg, qa_params_from(int4))
    if std:
        randomize_adapters_(model, std=std)
    return model.eval(), int4


def test_gptq_residual_starts_at_the_gptq_model_and_fp16_does_not():
    """B = 0: the QA model on gptq-residual computes the INT4 model's logits bit for bit; on the fp16 base it
    computes round-to-nearest's codes, which differ where GPTQ's do."""
    x = tokens()
    model, int4 = _qa_on("gptq-residual")
    assert torch.equal(model(x).logits, int4(x).logits)
    model, _ = _qa_on("fp16")
    assert not torch.equal(model(x).logits, int4(x).logits)


def test_gptq_residual_moves_codes_at_once_where_a_base_on_the_grid_cannot():
    """A small delta (|L| < s_q/2 everywhere): no code of the gptq base moves, while the residual base, whose
    weights sit inside their bins, already changes codes (its forward learns from the first step)."""
    moved = {}
    for qa_base in ("gptq", "gptq-residual"):
        model, int4 = _qa_on(qa_base, std=1e-3)
        moved[qa_base] = 0
        for name, layer in adapter_layers(model).items():
            L = layer.delta_weight()
            s = layer.qa_scale.repeat_interleave(layer.qa.group_size, 1)
            assert (L.abs() < s / 2).all(), name
            moved[qa_base] += int((layer.merged_codes() != int4.get_submodule(name).codes()[0]).sum())
    assert moved["gptq"] == 0 < moved["gptq-residual"]


@pytest.mark.parametrize("qa_base", ["gptq", "gptq-dither"])
def test_an_adapter_on_the_int4_base_takes_nothing_from_qa_int4(tmp_path, qa_base):
    """`--qa-int4` with a QA adapter trained on the INT4 base changes nothing: its base is the INT4 model."""
    trained = sparse_int4_model()
    inject_adapters(trained, AdaptConfig(sparse_adapter=True, quantization_aware=True, qa_base=qa_base))
    save_adapter(trained, tmp_path / "ad")
    model = sparse_int4_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_qa_fp16_base(model, tmp_path / "ad", "/nonexistent/int4")  # loading it would fail
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(v, after[k]) for k, v in before.items())


def test_qa_int4_without_a_quantization_aware_adapter_is_refused():
    with pytest.raises(SqftError, match="goes with a quantization-aware adapter"):
        require_qa_int4(None, "int4")
    assert require_qa_int4(None, None) == (None, {})


def test_dense_adapter_into_sparse_base_needs_allow_densify():
    model = sparse_model()
    inject_adapters(model, AdaptConfig(adapter="lora"))
    with pytest.raises(SqftError, match="allow-densify"):
        merge_adapters(model)
    randomize_adapters_(model)
    x = tokens()
    want = model.eval()(x).logits
    merged, report = merge_adapters(model, allow_densify=True, probe=x)
    assert report.kind == "dense" and report.probe_max_abs_logit_diff <= _rel_bound(torch.float32, want)


def test_dense_adapter_into_int4_is_refused():
    model = sparse_int4_model()
    inject_adapters(model, AdaptConfig(adapter="lora"))
    with pytest.raises(SqftError, match="precision mismatch"):
        merge_adapters(model)


def test_lora_merge_into_dense_base():
    model = tiny_llama()
    inject_adapters(model, AdaptConfig(adapter="lora", r_max=8, ranks=(8,), alpha=16))
    randomize_adapters_(model)
    x = tokens()
    want = model.eval()(x).logits
    merged, report = merge_adapters(model, probe=x)
    assert report.kind == "dense"
    assert (merged(x).logits - want).abs().max() <= _rel_bound(torch.float32, want)


def test_nonfinite_adapter_is_refused():
    model = sparse_model()
    inject_adapters(model, AdaptConfig(sparse_adapter=True))
    with torch.no_grad():
        next(iter(adapter_layers(model).values())).lora_B.fill_(float("nan"))
    with pytest.raises(SqftError, match="non-finite"):
        merge_adapters(model)


def test_a_merge_that_would_break_an_invariant_raises_even_under_python_O(monkeypatch):
    """The safety checks are errors, not asserts (which `python -O` removes): a SparsePEFT layer whose
    merge fills a pruned weight, and a QA layer whose stored codes would differ, are refused."""
    from sqft.adapt.layer import AdapterLinear

    model = sparse_model()
    inject_adapters(model, AdaptConfig(sparse_adapter=True))
    real_merge = AdapterLinear.merge

    def filling_merge(self):
        merged = real_merge(self)
        with torch.no_grad():
            merged.weight[merged.weight == 0] = 1.0
        return merged

    monkeypatch.setattr(AdapterLinear, "merge", filling_merge)
    with pytest.raises(SqftError, match="filled a pruned weight"):
        merge_adapters(model)
    monkeypatch.undo()
    model = sparse_int4_model()
    inject_adapters(model, AdaptConfig(sparse_adapter=True, quantization_aware=True))
    real_codes, calls = AdapterLinear.merged_codes, []

    def drifting_codes(self):  # the merge itself gets the real codes, the check afterwards others
        calls.append(self)
        q = real_codes(self)
        return q if calls.count(self) == 1 else (q + 1) % 16

    monkeypatch.setattr(AdapterLinear, "merged_codes", drifting_codes)
    with pytest.raises(SqftError, match="stored codes would differ"):
        merge_adapters(model)
