import json

import pytest
import torch
from safetensors.torch import load_file

from sqft.cli import main
from sqft.loading import load_model
from sqft.quantize import QuantLinear
from tests.cli.helpers import run_calibrated_stage


def _quantize(model_dir, out, *extra, calib=None):
    return run_calibrated_stage("quantize", model_dir, out, *extra, calib=calib)


def test_quantize_writes_gptq_artifact_with_manifest(model_dir, calib_file, tmp_path, capsys):
    out = tmp_path / "int4"
    assert _quantize(model_dir, out, "--group-size", "32", calib=calib_file) == 0
    assert "gptq 4-bit: 14 layers" in capsys.readouterr().out
    manifest = json.loads((out / "sqft.json").read_text())
    assert manifest["stage"] == "quantize" and manifest["parent"] == str(model_dir.resolve())
    assert manifest["config"]["method"] == "gptq" and manifest["config"]["group_size"] == 32
    fig = manifest["figures"]
    assert fig["sparsity_after"] >= fig["sparsity_before"] and fig["size_on_disk_bytes"] > 0
    assert fig["peak_memory_bytes"] > 0 and fig["calibration"]["windows"] == [4, 32]
    assert all(0 < f["relative_output_error"] < 0.05 for f in fig["layers"].values())
    sd = load_file(out / "model.safetensors")
    assert sd["model.layers.0.mlp.down_proj.qweight"].shape == (128 * 4 // 32, 64)
    assert "model.layers.0.mlp.down_proj.weight" not in sd
    model = load_model(out)  # through sqft.loading, which reads INT4 checkpoints
    assert isinstance(model.model.layers[1].self_attn.o_proj, QuantLinear)
    assert torch.isfinite(model(torch.tensor([[5, 6, 7]])).logits).all()


def test_rtn_needs_no_calibration_and_overwrite_replaces(model_dir, tmp_path):
    out = tmp_path / "rtn"
    assert _quantize(model_dir, out, "--method", "rtn", "--group-size", "-1", "--bits", "8") == 0
    assert json.loads((out / "config.json").read_text())["quantization_config"]["group_size"] == -1
    assert _quantize(model_dir, out, "--method", "rtn", "--group-size", "64", "--sym", "--overwrite") == 0
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["group_size"] == 64 and qc["sym"] is True and qc["bits"] == 4


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--bits", "5"], "bits=5 is not supported"),
        (
            ["--method", "rtn", "--group-size", "48"],
            "group size 48 does not divide in_features=64 of model.layers.0.self_attn.q_proj",
        ),
        (["--group-size", "32", "--calibration", "nothing.txt"], "does not exist"),
        (["--group-size", "32"], "needs calibration data: pass --calibration FILE"),
        (["--method", "awq"], "unknown quantize method 'awq'"),
    ],
)
def test_bad_arguments_fail_cleanly(model_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert _quantize(model_dir, out, *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_existing_output_is_refused_before_work(model_dir, tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    assert _quantize(model_dir, out, "--method", "rtn") == 2
    assert "already exists" in capsys.readouterr().err


def test_sparse_then_int4_inspect_counts_zeros_of_dequantized_weights(
    model_dir, calib_file, tmp_path, capsys
):
    sparse, int4 = tmp_path / "sparse", tmp_path / "int4"
    args = ["--quiet", "--n-samples", "4", "--seq-len", "32", "--calibration", str(calib_file)]
    assert main(["sparsify", str(model_dir), "--output", str(sparse), *args]) == 0
    assert _quantize(sparse, int4, "--group-size", "32", calib=calib_file) == 0
    capsys.readouterr()
    assert main(["inspect", str(int4), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bits"] == 4 and info["group_size"] == 32
    # every pruned zero survives; rounding may add a few more, never remove one
    before = json.loads((sparse / "sqft.json").read_text())["figures"]["sparsity"]["zeros"]
    assert info["sparsity"]["zeros"] >= before and info["sparsity"]["total"] >= 0.5
    assert (
        info["size_on_disk_bytes"]
        < 0.5 * json.loads((sparse / "sqft.json").read_text())["figures"]["size_on_disk_bytes"]
    )
