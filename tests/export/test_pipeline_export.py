"""A recipe's `export:` section: the merged model is exported as the pipeline's last stage, and re-runs skip it."""

from __future__ import annotations

import pytest
import yaml

from sqft.artifacts import read_manifest
from sqft.errors import SqftError
from sqft.pipeline import run_recipe
from sqft.recipe import load_recipe
from tests.export.helpers import save_bpe_llama
from tests.test_pipeline import _recipe

pytest.importorskip("gguf")


@pytest.fixture
def bpe_model_dir(tmp_path):
    return save_bpe_llama(tmp_path / "tiny-bpe")


def test_qa_pipeline_ends_with_a_gguf_of_the_merged_int4_model(tmp_path, bpe_model_dir):
    recipe = _recipe(tmp_path, bpe_model_dir, "sqft-qa-sparsepeft")
    recipe.export = {"format": "gguf", "float_type": "q8_0"}
    recipe.validate()
    assert recipe.stages[-2:] == ("evaluate", "export")
    state = run_recipe(recipe, tmp_path / "run", quiet=True)
    manifest = read_manifest(state.dirs["export"])
    assert manifest["parent"] == str(tmp_path.joinpath("run", state.dirs["merge"]).resolve())
    assert manifest["figures"]["tensor_types"] == {"Q8_0": 2, "F32": 5, "Q4_1": 14}
    again = run_recipe(recipe, tmp_path / "run", quiet=True)
    assert "export" in again.skipped and again.dirs["export"] == state.dirs["export"]


def test_export_section_is_validated(tmp_path, bpe_model_dir):
    recipe = _recipe(tmp_path, bpe_model_dir, "sqft-qa-sparsepeft")
    data = yaml.safe_load(open(recipe.source))
    for patch, message in [
        ({"export": {"formt": "gguf"}}, "export: unknown key(s) 'formt' (did you mean 'format'?)"),
        ({"export": {"format": "onnx"}}, "unknown export format 'onnx'"),
        ({"pipeline": "sqft", "export": {"format": "gguf"}}, "ends with a base + adapter"),
    ]:
        p = tmp_path / "bad.yaml"
        p.write_text(yaml.safe_dump({**data, **patch}))
        with pytest.raises(SqftError) as e:
            load_recipe(p)
        assert message in str(e.value)
