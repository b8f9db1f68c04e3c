"""Configuration of the adapt stage: which adapter, on which modules, trained how (SPEC §3).

`AdaptConfig` describes the adapter (LoRA or elastic NLS ranks, SparsePEFT mask, quantization awareness);
`TrainConfig` the fine-tuning run. The five pipelines of SPEC §0 are `AdaptConfig.for_pipeline(name, ...)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from sqft.errors import SqftError
from sqft.typecheck import check_field_types

__all__ = [
    "ADAPT_TARGETS",
    "FP16_QA_BASES",
    "GROUPINGS",
    "PIPELINES",
    "QA_BASES",
    "AdaptConfig",
    "TrainConfig",
]

# SPEC §3 default targets: attention q, k, v and the MLP up/down projections.
ADAPT_TARGETS = ("q_proj", "k_proj", "v_proj", "up_proj", "down_proj")

# layer_qkv: one elastic rank per decoder layer shared by q,k,v (up/down fixed at r_max) — the paper's default;
# module: one group per target module; layer: one group per decoder layer for all its targets.
GROUPINGS = ("layer_qkv", "module", "layer")

# W_base of QA-SparsePEFT (see AdaptConfig.qa_base)
QA_BASES = ("auto", "fp16", "gptq-residual", "gptq", "gptq-dither")
# ... of those, the ones trained on the fp16 sparse model (with the INT4 model's s_q, z and untargeted layers)
FP16_QA_BASES = ("fp16", "gptq-residual")

# pipeline name → (sparse_adapter, quantization_aware); the base model decides sparse / INT4 (SPEC §0).
PIPELINES: dict[str, tuple[bool, bool]] = {
    "lora": (False, False),
    "shears": (False, False),
    "sqft": (False, False),
    "sqft-sparsepeft": (True, False),
    "sqft-qa-sparsepeft": (True, True),
}


@dataclass(frozen=True)
class AdaptConfig:
    """The adapter put on every target linear: `y = base(x) + s · dropout(x) Aᵀ Bᵀ`, `s = alpha / r_max`."""

    adapter: str = "nls"
    """'lora' (fixed rank r_max) or 'nls' (elastic ranks from `ranks`, trained by sampling)."""
    r_max: int | None = None
    """The adapter's allocated rank; None: the largest of `ranks` (32 with the default space)."""
    ranks: tuple[int, ...] = (32, 24, 16)
    """NLS search space per group; its maximum must be r_max. Ignored (set to (r_max,)) for 'lora'."""
    alpha: float = 64.0
    dropout: float = 0.1
    targets: tuple[str, ...] = ADAPT_TARGETS
    grouping: str = "layer_qkv"
    sparse_adapter: bool = False
    """SparsePEFT: the delta is masked by the base weight's non-zeros, so merging keeps the sparsity."""
    quantization_aware: bool = False
    """QA-SparsePEFT: the merged weight is fake-quantized with the INT4 base's frozen scales and zeros."""
    qa_base: str = "auto"
    """'fp16': W_base is the fp16 sparse weight (the paper's; needs the INT4 model's s_q, z); 'gptq-residual': the
    fp16 sparse weight moved into the bin of its GPTQ code (`equations.snapped_to_bins`: it starts at the GPTQ
    model's codes and keeps its in-bin position, so codes move from the first step); 'gptq': the INT4 base
    dequantized on the fly (no fp16 copy, but it lies on the grid: no code moves until |L| > s_q/2); 'gptq-dither':
    the INT4 base plus a fixed seeded offset s_q·u, u ~ U[−½, ½) per weight, regenerated from the module name (no
    memory): it starts at the GPTQ codes and, like an fp16 weight, anywhere inside its bin. 'auto' (default):
    gptq-residual when training on the fp16 sparse model with the INT4 model (`adapt.api.resolve_qa_base`),
    gptq-dither on an INT4 model alone, fp16 on a float model given only s_q, z — the order of the measured
    held-out loss curves (README, benchmarks/qa_curves.py: gptq-residual < fp16 < gptq-dither ≪ gptq)."""

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.adapter not in ("lora", "nls"):
            raise SqftError(f"adapter '{self.adapter}' is unknown: use 'lora' or 'nls'")
        if not self.ranks:
            raise SqftError("ranks is empty: give the NLS search space, e.g. --ranks 32 24 16")
        if self.r_max is None:
            object.__setattr__(self, "r_max", max(int(r) for r in self.ranks))
        if not isinstance(self.r_max, int) or self.r_max <= 0:
            raise SqftError(f"r_max={self.r_max} must be a positive integer (the paper uses 32)")
        ranks = (self.r_max,) if self.adapter == "lora" else tuple(int(r) for r in self.ranks)
        if not ranks or any(r <= 0 for r in ranks):
            raise SqftError(f"ranks {list(ranks)} must all be positive integers, e.g. --ranks 32 24 16")
        if max(ranks) != self.r_max:
            raise SqftError(
                f"the NLS search space {list(ranks)} has maximum {max(ranks)}, but r_max is {self.r_max}: "
                "the largest rank of the space must be r_max (e.g. --ranks 32 24 16 with r_max 32)"
            )
        object.__setattr__(self, "ranks", tuple(sorted(set(ranks), reverse=True)))
        if self.alpha <= 0:
            raise SqftError(f"alpha={self.alpha} must be positive (the paper uses 64)")
        if not 0.0 <= self.dropout < 1.0:
            raise SqftError(f"dropout={self.dropout} must be in [0, 1)")
        if not self.targets:
            raise SqftError("no target modules given: name at least one, e.g. q_proj")
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.grouping not in GROUPINGS:
            raise SqftError(f"grouping '{self.grouping}' is unknown: use one of {', '.join(GROUPINGS)}")
        if self.qa_base not in QA_BASES:
            raise SqftError(f"qa_base '{self.qa_base}' is unknown: use one of {', '.join(QA_BASES)}")

    @property
    def scaling(self) -> float:
        """s = α / r_max, the same for every active rank (SPEC §3)."""
        return self.alpha / self.r_max

    @property
    def elastic(self) -> bool:
        return self.adapter == "nls" and len(self.ranks) > 1

    @property
    def on_fp16_base(self) -> bool:
        """A QA adapter trained on the fp16 sparse model (qa_base fp16 or gptq-residual): it needs the INT4 model
        alongside (`--qa-int4`) to train, to run unmerged and to merge."""
        return self.quantization_aware and self.qa_base in FP16_QA_BASES

    @property
    def variant(self) -> str:
        if self.quantization_aware:
            return "qa-sparsepeft" if self.sparse_adapter else "qa-lora"
        return "sparsepeft" if self.sparse_adapter else "lora"

    @classmethod
    def for_pipeline(cls, pipeline: str, **overrides: Any) -> AdaptConfig:
        """The adapter of one of SPEC §0's pipelines (lora, shears, sqft, sqft-sparsepeft, sqft-qa-sparsepeft)."""
        if pipeline not in PIPELINES:
            raise SqftError(f"pipeline '{pipeline}' is unknown: use one of {', '.join(PIPELINES)}")
        sparse, qa = PIPELINES[pipeline]
        return cls(**{"sparse_adapter": sparse, "quantization_aware": qa, **overrides})

    def with_(self, **changes: Any) -> AdaptConfig:
        return replace(self, **changes)

    def resolved_qa_base(self, int4_base: bool) -> AdaptConfig:
        """`qa_base='auto'` made concrete for a base: 'gptq-dither' on an INT4 model, else 'fp16' (a float model
        given only the INT4 model's s_q, z; `resolve_qa_base` has already chosen gptq-residual when its codes are
        there too)."""
        if not self.quantization_aware or self.qa_base != "auto":
            return self
        return self.with_(qa_base="gptq-dither" if int4_base else "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning hyper-parameters; None means the paper's default for the pipeline (see `resolved`)."""

    learning_rate: float | None = None
    """3e-4; 1e-4 for a dense adapter on an INT4 base (the `sqft` pipeline)."""
    epochs: float | None = None
    """3; 4 for quantization-aware training."""
    batch_size: int = 16
    """Global batch (all processes, after gradient accumulation)."""
    micro_batch_size: int = 4
    """Per-process batch of one forward pass."""
    warmup_steps: int = 100
    cutoff: int = 256
    max_steps: int = -1
    seed: int = 0
    nls_seed: int = 0
    gradient_checkpointing: bool = False
    fused: bool | None = None
    """Build the per-step weights (SparsePEFT, QA, INT4 bases) with compiled kernels; None: on with CUDA."""
    fsdp: bool = False
    """Shard the model with FSDP2 across the processes of `torchrun` / `accelerate launch` (DDP otherwise)."""
    mixed_precision: str = "no"
    """'no', 'bf16' or 'fp16'."""
    mask_prompt: bool = False
    """Loss on the response only; the paper trains on the whole sequence (prompt + response)."""
    add_bos: bool = False
    """Prefix the tokenizer's BOS token. Off by default, like evaluation (lm-eval's default), so the model
    is trained on the same kind of sequence it is scored on."""
    save_steps: int = 100
    """Save a resumable checkpoint (adapter + optimizer state, the last two kept) every N optimizer steps (0: none)."""
    logging_steps: int = 10
    weight_decay: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("batch_size", "micro_batch_size", "cutoff"):
            if getattr(self, name) <= 0:
                raise SqftError(f"{name}={getattr(self, name)} must be a positive integer")
        if self.batch_size % self.micro_batch_size:
            raise SqftError(
                f"batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size}"
            )
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise SqftError(f"learning_rate={self.learning_rate} must be positive")
        if self.epochs is not None and self.epochs <= 0:
            raise SqftError(f"epochs={self.epochs} must be positive")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise SqftError(f"mixed_precision '{self.mixed_precision}' is unknown: use no, bf16 or fp16")
        if self.warmup_steps < 0 or self.save_steps < 0:
            raise SqftError("warmup_steps and save_steps must be >= 0")
        if self.max_steps == 0 or self.max_steps < -1:
            raise SqftError(
                f"max_steps={self.max_steps} would not train as asked: give a positive number of optimizer "
                "steps, or -1 to train for the epochs"
            )
        if self.logging_steps < 1:
            raise SqftError(f"logging_steps={self.logging_steps} must be a positive integer")

    def resolved(self, adapt: AdaptConfig, int4_base: bool) -> TrainConfig:
        """Fill the paper's defaults: lr 3e-4 (1e-4 for a dense adapter on INT4), 3 epochs (4 for QA)."""
        lr = self.learning_rate
        if lr is None:
            lr = 1e-4 if int4_base and not adapt.quantization_aware else 3e-4
        epochs = self.epochs if self.epochs is not None else (4.0 if adapt.quantization_aware else 3.0)
        return replace(self, learning_rate=lr, epochs=epochs)
