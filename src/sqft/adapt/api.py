"""Adapt-stage decisions that are plain configuration: what `qa_base='auto'` means for a run.

The stages that fine-tune, extract and merge (loading and writing artifacts) are in `sqft.stages`.
"""

from __future__ import annotations

import logging

from sqft.adapt.config import AdaptConfig

__all__ = ["resolve_qa_base"]

log = logging.getLogger(__name__)


def resolve_qa_base(adapt: AdaptConfig, fp16_parent: bool) -> AdaptConfig:
    """`qa_base='auto'` for a fine-tuning run: gptq-residual when the fp16 sparse model is the base (`fp16_parent`:
    the INT4 model is given alongside for its codes, s_q and z), else gptq-dither on the INT4 model; logged with
    the reason (README, benchmarks/qa_curves.py: the measured held-out loss curves)."""
    if not adapt.quantization_aware or adapt.qa_base != "auto":
        return adapt
    if fp16_parent:
        log.info(
            "qa_base=auto -> gptq-residual: the fp16 sparse weights, each moved into the bin of its GPTQ code, are "
            "the base (it starts at the GPTQ model and its codes move from the first step)"
        )
        return adapt.with_(qa_base="gptq-residual")
    log.info(
        "qa_base=auto -> gptq-dither: only the INT4 model is given, so QA trains on its codes with a seeded in-bin "
        "offset (a plain gptq base lies on the grid and would freeze the forward for the first steps); to train on "
        "the fp16 sparse weights, pass the fp16 sparse model as MODEL and the INT4 model as --qa-int4"
    )
    return adapt.with_(qa_base="gptq-dither")
