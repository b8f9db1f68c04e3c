import json
import math

import pytest
from safetensors.torch import load_file

from sqft.cli import main
from tests.cli.helpers import run_calibrated_stage
from tests.conftest import CORPUS


def _sparsify(model_dir, out, *extra, calib=None):
    return run_calibrated_stage("sparsify", model_dir, out, *extra, calib=calib)


def test_sparsify_writes_artifact_with_manifest(model_dir, calib_file, tmp_path, capsys):
    out = tmp_path / "sparse"
    assert _sparsify(model_dir, out, "--sparsity", "0.5", calib=calib_file) == 0
    manifest = json.loads((out / "sqft.json").read_text())
    assert manifest["stage"] == "sparsify" and manifest["config"]["method"] == "wanda"
    assert manifest["figures"]["sparsity"]["total"] == pytest.approx(0.5)
    assert manifest["figures"]["size_on_disk_bytes"] > 0
    sd = load_file(out / "model.safetensors")
    q = sd["model.layers.0.self_attn.q_proj.weight"]
    assert ((q == 0).sum(1) == math.floor(q.shape[1] * 0.5)).all()
    assert (out / "tokenizer.json").is_file()
    assert main(["inspect", str(out)]) == 0
    assert "50.00%" in capsys.readouterr().out


def test_magnitude_needs_no_calibration(model_dir, tmp_path):
    assert _sparsify(model_dir, tmp_path / "m", "--method", "magnitude", "--pattern", "2:4") == 0


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "obs"], "unknown sparsify method 'obs'"),
        (["--sparsity", "1.2"], "outside [0, 1)"),
        (["--pattern", "4:2"], "0 < N < M"),
        (["--pattern", "2:3"], "does not divide in_features"),
    ],
)
def test_bad_arguments_fail_cleanly(model_dir, calib_file, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert _sparsify(model_dir, out, *extra, calib=calib_file) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_bad_inputs_fail_cleanly(model_dir, tmp_path, capsys):
    garbled = tmp_path / "garbled"
    garbled.mkdir()
    (garbled / "config.json").write_text("{not json")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    short = tmp_path / "short.txt"
    short.write_text(CORPUS[:100])
    existing = tmp_path / "exists"
    existing.mkdir()
    cases = [
        (tmp_path / "nope", None, tmp_path / "o1", "does not exist"),
        (garbled, None, tmp_path / "o2", "not valid JSON"),
        (model_dir, tmp_path / "missing.txt", tmp_path / "o3", "does not exist"),
        (model_dir, empty, tmp_path / "o4", "is empty"),
        (model_dir, short, tmp_path / "o5", "only 3 window(s) of seq_len=32"),
        (model_dir, None, tmp_path / "o6", "needs calibration data"),
        (model_dir, short, existing, "already exists"),
    ]
    for model, calib, out, message in cases:
        assert _sparsify(model, out, calib=calib) == 2, message
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (message, err)
        assert out == existing or not out.exists()


def test_overwrite_replaces_an_sqft_artifact(model_dir, tmp_path):
    out = tmp_path / "o"
    assert _sparsify(model_dir, out, "--method", "magnitude", "--sparsity", "0.25") == 0
    (out / "old.txt").write_text("old")
    assert _sparsify(model_dir, out, "--method", "magnitude", "--overwrite") == 0
    assert not (out / "old.txt").exists()
    assert json.loads((out / "sqft.json").read_text())["config"]["sparsity"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "tiny"]  # no temporary sibling left


def _tree(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target", ["unrelated", "input", "parent of input"])
def test_overwrite_refuses_what_sqft_did_not_write_and_the_input(model_dir, tmp_path, capsys, target):
    """`--overwrite` pointed at a folder of the user's files, at the input, or at a folder holding the input
    (made to look like an artifact, so that only the input rule can refuse it) deletes nothing."""
    if target == "unrelated":
        out = tmp_path / "mine"
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
        message = "has no sqft.json, so sqft did not write it"
    else:
        out = model_dir if target == "input" else tmp_path
        (out / "sqft.json").write_text("{}")
        message = "is or contains the input"
    before = _tree(tmp_path)
    assert _sparsify(model_dir, out, "--method", "magnitude", "--overwrite") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert _tree(tmp_path) == before


def test_interrupted_save_leaves_nothing(tmp_path):
    from sqft.artifacts import atomic_output

    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(out) as tmp:
            (tmp / "model.safetensors").write_bytes(b"partial")
            raise KeyboardInterrupt
    assert not out.exists() and list(tmp_path.iterdir()) == []
