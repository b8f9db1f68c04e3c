"""The evaluate stage is the one path of `sqft evaluate` and of a pipeline's evaluate stage."""

import json

import pytest

from sqft.artifacts import read_manifest
from sqft.cli import main
from sqft.errors import OutputExistsError
from sqft.evaluate.api import TaskSpec
from sqft.stages.evaluate import EvaluateOptions, run_evaluate


def _specs(calib_file):
    return {"perplexity": TaskSpec(task="perplexity", data=str(calib_file), seq_len=64, limit=2)}


def test_artifact_and_results_file_hold_the_same_results(model_dir, calib_file, tmp_path):
    ev = run_evaluate(str(model_dir), _specs(calib_file), tmp_path / "eval", EvaluateOptions(quiet=True))
    assert ev.results["perplexity"]["perplexity"] > 1 and ev.provenance is None and ev.load_seconds > 0
    stored = json.loads((tmp_path / "eval" / "results.json").read_text())
    manifest = read_manifest(tmp_path / "eval")
    assert manifest["stage"] == "evaluate" and manifest["figures"]["results"] == stored
    argv = ["evaluate", str(model_dir), "--perplexity", str(calib_file), "--seq-len", "64", "--limit", "2"]
    assert main([*argv, "-q", "--output", str(tmp_path / "r.json")]) == 0
    cli = json.loads((tmp_path / "r.json").read_text())["results"]["perplexity"]
    assert cli["perplexity"] == stored["perplexity"]["perplexity"]


def test_an_existing_output_is_refused_before_the_model_loads(model_dir, calib_file, tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "x").write_text("keep")
    with pytest.raises(OutputExistsError, match="already exists"):
        run_evaluate("no-such-model-dir/x", _specs(calib_file), tmp_path / "eval")
    assert (tmp_path / "eval" / "x").read_text() == "keep"
