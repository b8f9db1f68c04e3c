"""kill -9 at several points of every stage that writes: no partial artifact is left (OUTPUT absent, or the old
one intact), the next run cleans what the killed one left beside OUTPUT, and it produces the same result as an
uninterrupted run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sqft.artifacts import check_output
from sqft.cli import main
from tests.reliability.conftest import Env, copy_dir
from tests.reliability.helpers import env_with_src, siblings, snapshot
from tests.tolerance import assert_close

CALIB = ["--n-samples", "2", "--seq-len", "32", "-q"]


def killed(point: str, n: int, *argv: str) -> None:
    """Run `sqft ARGV` in a subprocess that SIGKILLs itself at the N-th POINT (see killer.py)."""
    cmd = [sys.executable, "-m", "tests.reliability.killer", point, str(n), *argv]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env_with_src(), timeout=180)
    assert r.returncode == -9, (point, r.returncode, r.stderr[-2000:])


def weights(d: Path) -> dict[str, str | None]:
    """The artifact's files except its manifest (whose time and paths differ between runs)."""
    return {Path(k).name: v for k, v in snapshot(d).items() if Path(k).name != "sqft.json"}


def _sparsify(e: Env, out: Path) -> list[str]:
    return ["sparsify", str(e.dense), "--calibration", str(e.calib), "-o", str(out), *CALIB]


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted runs of every stage the kill tests interrupt."""
    root = tmp_path_factory.mktemp("reference")
    refs = {k: root / k for k in ("sparsify", "quantize", "merge")}
    assert main(_sparsify(env, refs["sparsify"])) == 0
    assert (
        main(
            [
                "quantize",
                str(env.sparse),
                "--calibration",
                str(env.calib),
                "-o",
                str(refs["quantize"]),
                *CALIB,
            ]
        )
        == 0
    )
    assert main(["merge", str(env.sparse), str(env.adapter), "-o", str(refs["merge"]), "-q"]) == 0
    return refs


@pytest.mark.parametrize("point", ["tmpdir", "manifest", "commit"])
def test_sparsify_killed_leaves_nothing_and_a_rerun_gives_the_same_model(env, reference, tmp_path, point):
    out = tmp_path / "out"
    killed(point, 1, *_sparsify(env, out))
    assert not out.exists()
    assert main(_sparsify(env, out)) == 0
    assert weights(out) == weights(reference["sparsify"])
    assert siblings(out) == []  # what the killed run left beside OUTPUT is gone


def test_overwrite_killed_between_the_renames_keeps_the_old_output(env, reference, tmp_path):
    out = copy_dir(reference["sparsify"], tmp_path / "out")
    old = snapshot(out)
    args = ["sparsify", str(env.dense), "--method", "magnitude", "-o", str(out), "--overwrite", "-q"]
    killed("swap", 1, *args)
    assert not out.exists() and len(siblings(out)) == 2  # old output moved aside, new one not yet in
    # the next run on this output first puts the old one back (nothing lost) and removes the unfinished one
    check_output(out, overwrite=True)
    assert snapshot(out) == old and siblings(out) == []
    assert main(args) == 0 and json.loads((out / "sqft.json").read_text())["config"]["method"] == "magnitude"


@pytest.mark.parametrize("point", ["commit"])
def test_quantize_killed_leaves_nothing(env, reference, tmp_path, point):
    out = tmp_path / "out"
    argv = ["quantize", str(env.sparse), "--calibration", str(env.calib), "-o", str(out), *CALIB]
    killed(point, 1, *argv)
    assert not out.exists()
    assert main(argv) == 0 and weights(out) == weights(reference["quantize"])


@pytest.mark.parametrize("point", ["tmpdir"])
def test_merge_killed_leaves_nothing(env, reference, tmp_path, point):
    out = tmp_path / "out"
    argv = ["merge", str(env.sparse), str(env.adapter), "-o", str(out), "-q"]
    killed(point, 1, *argv)
    assert not out.exists()
    assert main(argv) == 0 and weights(out) == weights(reference["merge"]) and siblings(out) == []


def test_evaluate_killed_before_the_results_are_in_place(env, tmp_path):
    out = tmp_path / "results.json"
    argv = [
        "evaluate",
        str(env.sparse),
        "--perplexity",
        str(env.calib),
        "--seq-len",
        "64",
        "-o",
        str(out),
        "-q",
    ]
    killed("commit", 1, *argv)
    assert not out.exists()
    assert main(argv) == 0
    assert json.loads(out.read_text())["results"]["perplexity"]["perplexity"] > 1
    assert siblings(out) == []


def test_finetune_killed_while_checkpointing_resumes_to_the_same_adapter(env, tmp_path):
    """A kill in the middle of the second checkpoint: the rerun drops the half-written one, resumes from the
    first, and ends with the adapter an uninterrupted run gives."""
    from safetensors.torch import load_file

    base = ["finetune", str(env.sparse), "--data", str(env.train), "--ranks", "8", "4", "--alpha", "16"]
    base += ["--batch-size", "2", "--micro-batch-size", "2", "--warmup-steps", "0", "--cutoff", "64", "-q"]
    base += ["--max-steps", "4", "--save-steps", "2", "--lr", "1e-2", "--dropout", "0"]
    whole, out = tmp_path / "whole", tmp_path / "out"
    assert main(base + ["-o", str(whole)]) == 0
    killed("checkpoint", 2, *base, "-o", str(out))
    assert not out.exists()
    ckpts = tmp_path / ".out.checkpoints"
    assert (ckpts / "checkpoint-2" / "sqft_checkpoint_done").is_file()
    assert not (ckpts / "checkpoint-4" / "sqft_checkpoint_done").exists()  # interrupted mid-save
    assert main(base + ["-o", str(out)]) == 0
    manifest = json.loads((out / "sqft.json").read_text())
    assert manifest["figures"]["resumed_from"].endswith("checkpoint-2")
    a, b = load_file(whole / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert_close(a[k], b[k], torch.float32, 64, msg=k)  # resumed: the same sums in another order
    assert json.loads((out / "nls_stats.json").read_text()) == json.loads(
        (whole / "nls_stats.json").read_text()
    )


@pytest.mark.parametrize("point", ["tmpdir", "commit"])
def test_export_killed_leaves_nothing_and_a_rerun_gives_the_same_files(env, tmp_path, point):
    pytest.importorskip("compressed_tensors")
    out, ref = tmp_path / "out", tmp_path / "ref"
    argv = ["export", str(env.sparse), "--format", "compressed-tensors", "-q"]
    assert main([*argv, "--output", str(ref)]) == 0
    killed(point, 1, *argv, "--output", str(out))
    assert not out.exists()
    assert main([*argv, "--output", str(out)]) == 0
    assert weights(out) == weights(ref) and siblings(out) == []
