"""The whole pipeline on a tiny model, in seconds: every stage, then resume after a stage is deleted."""

import json
import shutil

import pytest
import yaml

from sqft.artifacts import read_manifest
from sqft.data.synthetic import generate_splits, write_jsonl
from sqft.errors import SqftError
from sqft.pipeline import run_recipe
from sqft.recipe import load_recipe
from tests.conftest import CORPUS


def _recipe(tmp_path, model_dir, pipeline: str):
    train, test = generate_splits(24, 6, seed=0)
    write_jsonl(train, tmp_path / "train.jsonl")
    write_jsonl(test, tmp_path / "test.jsonl")
    (tmp_path / "calib.txt").write_text(CORPUS)
    data = {
        "name": f"tiny-{pipeline}",
        "model": str(model_dir),
        "pipeline": pipeline,
        "sparsify": {
            "method": "wanda",
            "sparsity": 0.5,
            "calibration": str(tmp_path / "calib.txt"),
            "n_samples": 4,
            "seq_len": 32,
        },
        "quantize": {"method": "gptq", "bits": 4, "group_size": 32, "n_samples": 4, "seq_len": 32},
        "finetune": {
            "data": {"source": str(tmp_path / "train.jsonl"), "format": "gsm8k"},
            "adapter": {"adapter": "nls", "ranks": [8, 4], "r_max": 8, "alpha": 16, "dropout": 0.0},
            "train": {
                "max_steps": 3,
                "batch_size": 4,
                "micro_batch_size": 2,
                "cutoff": 256,
                "warmup_steps": 0,
                "learning_rate": 1e-3,
            },
        },
        "evaluate": {
            "gsm8k": {
                "task": "gsm8k",
                "data": str(tmp_path / "test.jsonl"),
                "n_shot": 0,
                "limit": 3,
                "max_new_tokens": 4,
            },
            "ppl": {"task": "perplexity", "data": str(tmp_path / "calib.txt"), "seq_len": 64},
        },
    }
    if pipeline not in ("sqft", "sqft-qa-sparsepeft"):
        del data["quantize"]
    if pipeline == "lora":
        del data["sparsify"]
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(data))
    return load_recipe(p)


@pytest.mark.parametrize("pipeline", ["sqft-qa-sparsepeft", "shears"])
def test_pipeline_runs_and_resumes(tmp_path, model_dir, pipeline):
    recipe = _recipe(tmp_path, model_dir, pipeline)
    root = tmp_path / "run"
    state = run_recipe(recipe, root, quiet=True)
    assert list(state.dirs) == list(recipe.stages) and not state.skipped
    assert set(state.results) == {"gsm8k", "ppl"} and state.results["gsm8k"]["n"] == 3
    assert state.results["ppl"]["perplexity"] > 1
    summary = json.loads((root / f"{recipe.name}.json").read_text())
    assert summary["stages"] == state.dirs
    if pipeline == "sqft-qa-sparsepeft":
        merged = read_manifest(state.dirs["merge"])
        assert merged["stage"] == "merge" and merged["figures"]["kind"] == "int4"
        # qa_base auto in a pipeline: trained on the fp16 sparse model moved into the INT4 model's bins
        tuned = read_manifest(state.dirs["finetune"])
        assert (
            tuned["config"]["adapt"]["qa_base"] == "gptq-residual"
            and tuned["config"]["qa_int4"] == state.dirs["quantize"]
        )
        assert state.adapter_base == state.dirs["sparsify"] and merged["figures"]["codes_equal_eval"]
    again = run_recipe(recipe, root, quiet=True)
    assert again.skipped == list(recipe.stages) and again.results == state.results
    shutil.rmtree(state.dirs["finetune"])
    third = run_recipe(recipe, root, quiet=True)
    assert "finetune" not in third.skipped and third.dirs == state.dirs


def test_until_stops_after_a_stage_and_the_full_run_reuses_it(tmp_path, model_dir):
    recipe = _recipe(tmp_path, model_dir, "sqft-qa-sparsepeft")
    root = tmp_path / "run"
    shared = run_recipe(recipe, root, quiet=True, until="quantize")
    assert list(shared.dirs) == ["sparsify", "quantize"] and shared.int4 == shared.dirs["quantize"]
    assert shared.sparse == shared.dirs["sparsify"] and not (root / f"{recipe.name}.json").exists()
    with pytest.raises(SqftError, match="until='extract' is not a stage"):
        run_recipe(recipe, root, quiet=True, until="extract")
    ft_only = run_recipe(recipe, root, quiet=True, until="finetune")
    assert ft_only.skipped == ["sparsify", "quantize"] and list(ft_only.dirs)[-1] == "finetune"


def test_an_evaluation_is_cached_per_adapter_not_per_directory_name(tmp_path):
    """Two sqft artifacts both called `adapter` (say, two searches' sub-adapters) are two parents: their
    evaluations get two cache directories. A stage directory (`<stage>-<hash>`) is keyed by its name, so a
    moved root keeps its cache."""
    from sqft.pipeline import evaluate_section, stage_dir

    tasks = {"t": {"task": "perplexity", "data": "x.txt"}}
    dirs = []
    for where in (
        "search-a/adapter",
        "search-b/adapter",
        "root1/finetune-0123456789",
        "root2/finetune-0123456789",
    ):
        d = tmp_path / where
        d.mkdir(parents=True)
        (d / "sqft.json").write_text("{}")
        dirs.append(stage_dir(tmp_path, "evaluate", evaluate_section(tasks, str(d)), "model"))
    assert dirs[0] != dirs[1] and dirs[2] == dirs[3]


def test_a_stage_whose_parent_changed_in_place_is_refused_not_reused(tmp_path, model_dir):
    """The model a cached stage was made from is overwritten in place: the stage is not silently reused; the
    error names the stage directory, and once it is deleted the run makes it again."""
    import torch

    from sqft.loading import load_model

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    recipe = _recipe(tmp_path, model, "sqft-sparsepeft")
    root = tmp_path / "run"
    first = run_recipe(recipe, root, quiet=True, until="sparsify")
    changed = load_model(model)
    with torch.no_grad():
        for p in changed.parameters():
            p.mul_(1.5)
    changed.save_pretrained(model)
    with pytest.raises(SqftError, match="has changed since") as refused:
        run_recipe(recipe, root, quiet=True, until="sparsify")
    assert first.dirs["sparsify"] in str(refused.value)
    shutil.rmtree(first.dirs["sparsify"])
    assert run_recipe(recipe, root, quiet=True, until="sparsify").skipped == []
