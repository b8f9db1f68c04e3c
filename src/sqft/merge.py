"""Merge an adapter into its base (SPEC §5): SparsePEFT → one sparse model, QA-SparsePEFT → one INT4 model.

Refuses what would silently change the artifact's kind: a dense adapter into a sparse base (densifies it,
needs `allow_densify`) and a dense adapter into an INT4 base (precision mismatch: keep base + adapter, or
train with quantization awareness). Before anything is written the merged layers are checked: finite,
every zero of the sparse base still zero, QA codes equal to the codes the trained model used in eval, and the
logits of a probe batch equal to the unmerged model's.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sqft.adapt.config import AdaptConfig
from sqft.adapt.equations import QAParams, bin_position, quant_codes, snapped_to_bins
from sqft.adapt.export import read_adapt_config, read_elastic_config, weight_dtype
from sqft.adapt.inject import adapter_config_of, adapter_layers, codes_and_qa_params
from sqft.adapt.layer import AdapterLinear, base_weight_fp32, is_quant_linear
from sqft.adapt.provenance import check_base, check_qa_int4
from sqft.errors import SqftError
from sqft.loading import load_model
from sqft.modeling.structure import DEFAULT_TARGETS, find_target_linears
from sqft.quantize.format import replace_module

log = logging.getLogger(__name__)

__all__ = [
    "take_untargeted_int4_layers",
    "snap_to_int4_bins",
    "prepare_qa_fp16_base",
    "require_qa_int4",
    "check_adapter_inputs",
    "load_qa_fp16_base",
    "MergeReport",
    "SPARSE_BASE_MIN_ZEROS",
    "check_mergeable",
    "dense_target_linears",
    "take_int4_layers",
    "merge_adapters",
    "merge_layer",
    "report_figures",
]

# A base whose targets hold at least this fraction of exact zeros counts as sparse.
SPARSE_BASE_MIN_ZEROS = 0.01
# gptq-residual: how far inside its bin's edge a snapped weight lies at least (in fp32), in quantization steps s_q
EDGE = 2.0**-6


@dataclass
class MergeReport:
    kind: str
    """'dense', 'sparse' or 'int4': what the merged model is."""
    layers: int = 0
    zeros_before: int = 0
    zeros_after: int = 0
    target_weights: int = 0
    codes_equal_eval: bool | None = None
    probe_max_abs_logit_diff: float | None = None
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        return self.zeros_after / max(self.target_weights, 1)


def _zero_fraction(layers: dict[str, AdapterLinear]) -> float:
    zeros = total = 0
    for layer in layers.values():
        W = base_weight_fp32(layer.base_layer)
        zeros += int((W == 0).sum())
        total += W.numel()
    return zeros / max(total, 1)


def check_mergeable(model: nn.Module, allow_densify: bool = False) -> str:
    """The kind of model a merge would produce; SqftError for merges that would silently change its kind."""
    cfg = adapter_config_of(model)
    layers = adapter_layers(model)
    int4 = any(is_quant_linear(m.base_layer) for m in layers.values())
    if cfg.quantization_aware:
        return "int4"
    if int4:
        raise SqftError(
            "cannot merge a dense adapter into an INT4 base: the merged weight is not on the INT4 grid "
            "(precision mismatch). Keep base + adapter (pipeline sqft), or fine-tune with --quantization-aware "
            "(pipeline sqft-qa-sparsepeft), whose adapter merges exactly into INT4"
        )
    if cfg.sparse_adapter:
        return "sparse"
    zf = _zero_fraction(layers)
    if zf >= SPARSE_BASE_MIN_ZEROS and not allow_densify:
        raise SqftError(
            f"the base is sparse ({zf:.1%} zeros in the targets) and the adapter is dense: merging would fill "
            "the zeros. Keep base + adapter (pipeline shears), train with --sparse-adapter, or pass "
            "--allow-densify to merge anyway"
        )
    return "dense"


def merge_layer(layer: AdapterLinear, report: MergeReport) -> nn.Module:
    """The merged module of one adapter layer, checked (finite, zeros kept, QA codes = eval codes)."""
    merged = layer.merge()
    W_base = base_weight_fp32(layer.base_layer)
    W_new = base_weight_fp32(merged)
    name = getattr(layer, "name", "layer")
    if not torch.isfinite(W_new).all():
        raise SqftError(
            f"merging '{name}' gives non-finite weights: the adapter is broken (NaN/Inf); nothing written"
        )
    zero_base = W_base == 0
    report.layers += 1
    report.target_weights += W_new.numel()
    report.zeros_before += int(zero_base.sum())
    report.zeros_after += int((W_new == 0).sum())
    if layer.sparse:
        kept = bool((W_new[layer.mask.logical_not()] == 0).all())
        report.checks["zeros_kept"] = report.checks.get("zeros_kept", True) and kept
        if not kept:
            raise SqftError(
                f"SparsePEFT merge of '{name}' filled a pruned weight (the adapter's mask is not the base's "
                "zeros): nothing written; pass the sparse base the adapter was trained on"
            )
    if layer.qa is not None:
        q, _, _ = merged.codes()
        equal = torch.equal(q, layer.merged_codes())
        report.codes_equal_eval = (report.codes_equal_eval is not False) and equal
        if not equal:
            raise SqftError(
                f"QA merge of '{name}': the stored codes would differ from what the trained model computes "
                "in eval mode; nothing written (a bug: please report it with the adapter's sqft.json)"
            )
        same_w = torch.equal(merged.dequantize(torch.float32), layer.merged_weight())
        report.checks["int4_weight_equals_eval_weight"] = (
            report.checks.get("int4_weight_equals_eval_weight", True) and same_w
        )
    return merged


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


@torch.no_grad()
def merge_adapters(
    model: nn.Module, allow_densify: bool = False, probe: torch.Tensor | None = None
) -> tuple[nn.Module, MergeReport]:
    """Merge every adapter layer into its base, in place; returns the plain (or INT4) model and its report.

    `probe` (token ids (B, T)) compares the logits of the unmerged model in eval mode with the merged one's.
    """
    kind = check_mergeable(model, allow_densify)
    report = MergeReport(kind=kind)
    model.eval()
    before = model(probe).logits.float() if probe is not None else None
    layers = adapter_layers(model)
    merged = {}
    for name, layer in layers.items():
        layer.name = name
        merged[name] = merge_layer(layer, report)
    for name, m in merged.items():
        _replace(model, name, m)
    if before is not None:
        after = model(probe).logits.float()
        if not torch.isfinite(after).all():
            raise SqftError("the merged model gives non-finite logits on the probe batch; nothing written")
        report.probe_max_abs_logit_diff = float((after - before).abs().max())
    delattr(model, "sqft_adapt_config")
    return model, report


def report_figures(report: MergeReport) -> dict[str, Any]:
    return {
        "kind": report.kind,
        "layers": report.layers,
        "target_sparsity_before": report.zeros_before / max(report.target_weights, 1),
        "target_sparsity_after": report.sparsity,
        "codes_equal_eval": report.codes_equal_eval,
        "probe_max_abs_logit_diff": report.probe_max_abs_logit_diff,
        "checks": report.checks,
    }


def dense_target_linears(model: nn.Module) -> list[str]:
    """Decoder target linears still dense after a QA merge (they carried no adapter: o_proj, gate_proj, ...)."""
    return [n for n, m in find_target_linears(model, DEFAULT_TARGETS).items() if isinstance(m, nn.Linear)]


def take_int4_layers(model: nn.Module, names: list[str], int4: nn.Module, where: str) -> None:
    """Replace the linears `names` by the INT4 model's layers of the same name (`where`: for the message)."""
    for name in names:
        layer = int4.get_submodule(name)
        if not is_quant_linear(layer):
            raise SqftError(
                f"'{where}' has no INT4 layer '{name}': pass the INT4 model the adapter was trained with"
            )
        replace_module(model, name, layer)


def take_untargeted_int4_layers(
    model: nn.Module, targets: tuple[str, ...], int4: nn.Module, where: str
) -> list[str]:
    """QA-SparsePEFT on the fp16 base: the decoder linears that carry no adapter (o_proj, gate_proj, ...) take
    the INT4 model's layers, as the merged model will (`merge` writes them from the same INT4 model), so training
    sees the model that merge writes, not fp16 layers that the INT4 artifact does not have. Returns their names."""
    adapted = set(find_target_linears(model, targets))
    frozen = [n for n in find_target_linears(model, DEFAULT_TARGETS) if n not in adapted]
    take_int4_layers(model, frozen, int4, where)
    return frozen


def _snapped_in_dtype(W: torch.Tensor, q: torch.Tensor, qa: QAParams) -> torch.Tensor:
    """`snapped_to_bins(W)` cast to W's dtype, every weight strictly inside its bin: the cast rounds a weight by up
    to half a unit in the last place, which in bf16 can reach 1/16 of a step (|W_g| ≤ 2^b s_q), more than EDGE;
    one it took onto or across its bin's edge goes one representable value back toward the bin's centre."""
    W_g = snapped_to_bins(W.float(), q, qa, EDGE).to(W.dtype)
    centre = None
    for _ in range(4):  # one step is enough (the fp32 value lay inside); a few, to be safe
        out = bin_position(W_g, q, qa).abs_() >= 0.5
        if not out.any():
            break
        if centre is None:  # u clamped to 0: s_q (q − z)
            centre = snapped_to_bins(W.float(), q, qa, 0.5).to(W.dtype)
        W_g[out] = torch.nextafter(W_g[out], centre[out])
    assert (bin_position(W_g, q, qa).abs_() < 0.5).all(), "a snapped weight on its bin's edge"
    return W_g


@torch.no_grad()
def snap_to_int4_bins(model: nn.Module, targets: tuple[str, ...], int4: nn.Module, where: str) -> None:
    """qa_base = gptq-residual: move each target weight W of the fp16 sparse model into the bin of its code in the
    INT4 model (`equations.snapped_to_bins`), in place, in the model's dtype, each strictly inside its bin, so the
    codes are exactly the INT4 model's (`_snapped_in_dtype`)."""
    int4_layers = dict(int4.named_modules())
    for name, linear in find_target_linears(model, targets).items():
        layer = int4_layers.get(name)
        if layer is None or not is_quant_linear(layer):
            raise SqftError(f"'{where}' has no INT4 layer '{name}': pass the INT4 model of this sparse model")
        q, qa = codes_and_qa_params(layer)
        W = linear.weight
        if q.shape != W.shape:
            raise SqftError(
                f"'{where}': layer '{name}' is {tuple(q.shape)}, the sparse model's {tuple(W.shape)}"
            )
        W_g = _snapped_in_dtype(W, q, qa)
        if not torch.equal(W_g == 0, W == 0):
            raise SqftError(
                f"'{where}': the codes of '{name}' do not keep the sparse model's zeros: pass the INT4 model "
                "quantized from this sparse model (sqft quantize keeps every zero)"
            )
        assert torch.equal(quant_codes(W_g, qa), q), f"{name}: snapped weights off their GPTQ codes"
        W.copy_(W_g)


def prepare_qa_fp16_base(model: nn.Module, adapt: AdaptConfig, int4: nn.Module, where: str) -> None:
    """The fp16 sparse model as a QA adapter on it trains, runs unmerged and merges: the layers without adapter
    taken from the INT4 model (`take_untargeted_int4_layers`); with qa_base = gptq-residual the targets moved into
    their GPTQ bins (`snap_to_int4_bins`). In place, before the adapter wraps the targets."""
    take_untargeted_int4_layers(model, adapt.targets, int4, where)
    if adapt.qa_base == "gptq-residual":
        snap_to_int4_bins(model, adapt.targets, int4, where)


def require_qa_int4(
    adapter_dir: str | os.PathLike | None, qa_int4: str | os.PathLike | None, force: bool = False
) -> tuple[AdaptConfig | None, dict[str, Any]]:
    """`qa_int4` (the `--qa-int4` of evaluate, merge, search, generate) checked against the adapter, before
    anything is loaded: given only with a quantization-aware adapter; required by one trained on gptq-residual,
    whose base exists only with the INT4 model's codes (an fp16 one without it runs its layers without adapter in
    fp16, as before); for an adapter on the fp16 base, the INT4 model it trained with (`check_qa_int4`, refused
    otherwise unless `force`). Returns the adapter's configuration (None without adapter) and that check's
    provenance record ({} where it does not apply)."""
    if adapter_dir is None:
        if qa_int4 is not None:
            raise SqftError("--qa-int4 goes with a quantization-aware adapter trained on the fp16 base")
        return None, {}
    adapt = read_adapt_config(adapter_dir)
    if qa_int4 is not None and not adapt.quantization_aware:
        raise SqftError(f"--qa-int4 goes with a quantization-aware adapter; '{adapter_dir}' is not one")
    if qa_int4 is None and adapt.qa_base == "gptq-residual":
        raise SqftError(
            f"adapter '{adapter_dir}' was trained on the sparse model moved into its INT4 model's bins "
            "(qa_base=gptq-residual): pass that INT4 model as --qa-int4"
        )
    if qa_int4 is None or not adapt.on_fp16_base:
        return adapt, {}
    return adapt, check_qa_int4(read_elastic_config(adapter_dir), adapter_dir, qa_int4, force)


def check_adapter_inputs(
    adapter_dir: str | os.PathLike | None,
    base: str | os.PathLike,
    qa_int4: str | os.PathLike | None,
    force: bool = False,
) -> tuple[AdaptConfig | None, dict[str, Any]]:
    """Before anything is loaded (evaluate, merge, search, generate): the adapter was trained on `base`
    (`provenance.check_base`) and `qa_int4` goes with it (`require_qa_int4`); refused otherwise unless `force`.
    Returns the adapter's configuration and the provenance record for the manifest (None and {} without one)."""
    if adapter_dir is None:
        return require_qa_int4(None, qa_int4)
    provenance = check_base(read_elastic_config(adapter_dir), adapter_dir, base, force)
    adapt, qa_provenance = require_qa_int4(adapter_dir, qa_int4, force)
    return adapt, provenance | qa_provenance


def load_qa_fp16_base(
    model: nn.Module,
    adapter_dir: str | os.PathLike | None,
    qa_int4: str | os.PathLike | None,
    dtype: str | torch.dtype | None = "auto",
    device: str = "cpu",
) -> None:
    """For an adapter trained on the fp16 base and its INT4 model `qa_int4` (checked by `require_qa_int4`): the
    base it trained on, made from the INT4 model loaded in `dtype` (`prepare_qa_fp16_base`). In place, before the
    adapter wraps the targets; nothing for any other adapter.

    The gptq-residual base is the sparse weights moved into their bins in the model's dtype, so a dtype other than
    training's gives a base a few weights apart (one unit in the last place); that is logged."""
    adapt = read_adapt_config(adapter_dir) if adapter_dir is not None else None
    if adapt is None or qa_int4 is None:
        return
    if not adapt.on_fp16_base:
        log.info("--qa-int4 not used: adapter '%s' was trained on the INT4 model itself", adapter_dir)
        return
    prepare_qa_fp16_base(model, adapt, load_model(qa_int4, dtype, device), str(qa_int4))
    trained_in = read_elastic_config(adapter_dir).get("base_dtype")
    first = next(iter(find_target_linears(model, adapt.targets).values()), None)
    here = None if first is None else weight_dtype(first)
    if adapt.qa_base == "gptq-residual" and trained_in is not None and here not in (None, trained_in):
        log.warning(
            "adapter '%s' was trained on its base in %s, which is loaded here in %s: the base moved into the INT4 "
            "bins differs from training's by one unit in the last place on a few weights; pass --dtype %s to run "
            "or merge exactly the trained model",
            adapter_dir,
            trained_in,
            here,
            trained_in,
        )
