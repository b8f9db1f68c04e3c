"""`sqft.loading.load_model` reads dense and INT4 checkpoints; `sqft.modeling` (below quantize) only dense ones."""

import pytest
import torch

from sqft.errors import SqftError
from sqft.loading import load_model
from sqft.modeling import io
from sqft.quantize import QuantLinear
from sqft.quantize.api import QuantizeConfig
from sqft.stages import StageIO, run_quantize


def test_int4_through_loading_and_a_clear_refusal_from_modeling(model_dir, tmp_path):
    out = tmp_path / "int4"
    run_quantize(StageIO(str(model_dir), str(out), quiet=True), QuantizeConfig(method="rtn", group_size=32))
    int4 = load_model(out)
    assert isinstance(int4.model.layers[0].mlp.down_proj, QuantLinear)
    dense = load_model(model_dir)
    assert isinstance(dense.model.layers[0].mlp.down_proj, torch.nn.Linear)
    with pytest.raises(SqftError, match="INT4 \\(GPTQ\\) checkpoint: load it with sqft.loading.load_model"):
        io.load_model(out)
