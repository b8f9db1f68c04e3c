"""sqft.fused: a failed compile falls back to the eager function (once, with a warning); the switch."""

import logging

import torch

from sqft.fused import Fusable, set_fused
from tests.adapt.helpers import sparse_int4_model


def _data_dependent(x: torch.Tensor) -> torch.Tensor:
    if x.sum() > 0:  # data-dependent control flow: cannot be one graph (fullgraph=True refuses it)
        return x * 2
    return x - 1


def test_a_failed_compile_warns_once_and_runs_eagerly(caplog):
    f = Fusable(_data_dependent)
    x = torch.arange(4.0)
    with caplog.at_level(logging.WARNING, logger="sqft.fused"):
        assert torch.equal(f.fused(x), x * 2) and torch.equal(f.fused(-x - 1), -x - 2)
    assert caplog.text.count("could not compile _data_dependent") == 1 and f.failed
    assert torch.equal(f(x), x * 2)  # the plain call is always eager


def test_set_fused_switches_every_int4_layer():
    model = sparse_int4_model()
    n = set_fused(model, True)
    assert n == 2 * 7  # 2 decoder layers × 7 INT4 linears
    assert all(m.fused for m in model.modules() if hasattr(m, "qweight"))
    assert set_fused(model, False) == n and not any(getattr(m, "fused", False) for m in model.modules())
