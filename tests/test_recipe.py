from pathlib import Path

import pytest
import yaml

from sqft.errors import SqftError
from sqft.recipe import PIPELINE_STAGES, load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_is_a_recipe_for_every_pipeline():
    assert {load_recipe(p).pipeline for p in RECIPES} == set(PIPELINE_STAGES)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.stages[-1] == ("export" if recipe.export else "evaluate")


def _write(tmp_path, data) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"pipelin": "lora"}, "unknown key(s) 'pipelin' (did you mean 'pipeline'?)"),
        ({"pipeline": "qlora"}, "unknown pipeline 'qlora'"),
        ({"sparsify": {"method": "wanda", "sparsty": 0.5}}, "'sparsty' (did you mean 'sparsity'?)"),
        (
            {"finetune": {"data": {"source": "x"}, "adapter": {"rank": 8}}},
            "finetune.adapter: unknown key(s) 'rank'",
        ),
        ({"finetune": {"data": {"source": "x"}, "train": {"lr": 1}}}, "finetune.train: unknown key(s) 'lr'"),
        ({"evaluate": {"x": {"task": "gsm9k", "data": "d"}}}, "unknown task 'gsm9k'"),
        ({"sparsify": None}, "needs a 'sparsify:' section"),
    ],
)
def test_typos_and_bad_values_are_errors(tmp_path, patch, message):
    base = yaml.safe_load((RECIPES[0].parent / "sqft-sparsepeft-llama3-8b-gsm8k.yaml").read_text())
    if "pipelin" in patch:
        del base["pipeline"]
    base.update(patch)
    with pytest.raises(SqftError) as e:
        load_recipe(_write(tmp_path, base))
    assert message in str(e.value)
