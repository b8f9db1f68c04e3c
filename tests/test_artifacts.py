"""Artifacts: manifests name their parent so that the lineage resolves from any working directory."""

import json
import os
import subprocess
import sys

import pytest

from sqft.artifacts import MANIFEST, atomic_output, check_output, write_manifest
from sqft.errors import OutputExistsError
from sqft.report.collect import lineage


def test_a_local_parent_is_recorded_absolute_and_a_hub_id_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "merge").mkdir(parents=True)
    out = tmp_path / "runs" / "evaluate"
    out.mkdir()
    assert write_manifest(out, "evaluate", {}, "runs/merge", {})["parent"] == str(tmp_path / "runs" / "merge")
    hub = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert write_manifest(out, "evaluate", {}, hub, {})["parent"] == hub
    assert write_manifest(out, "evaluate", {}, None, {})["parent"] is None


def test_lineage_from_another_working_directory(tmp_path, monkeypatch):
    """What `sqft demo` / `sqft evaluate runs/...` write is read back by `sqft report` run elsewhere."""
    (tmp_path / "work" / "runs" / "merge").mkdir(parents=True)
    (tmp_path / "work" / "runs" / "eval").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    write_manifest("runs/merge", "merge", {}, None, {"target_sparsity_after": 0.5})
    write_manifest("runs/eval", "evaluate", {}, "runs/merge", {})
    monkeypatch.chdir(tmp_path)
    assert [a.path.name for a in lineage("work/runs/eval")] == ["eval", "merge"]


def test_lineage_reads_an_older_parent_relative_to_the_working_directory(tmp_path, monkeypatch):
    """Before parents were stored absolute, `sqft evaluate` wrote the model path as given."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "merge").mkdir(parents=True)
    (tmp_path / "runs" / "eval").mkdir()
    write_manifest("runs/merge", "merge", {}, None, {})
    manifest = {"stage": "evaluate", "config": {}, "parent": "runs/merge", "figures": {}}
    (tmp_path / "runs" / "eval" / MANIFEST).write_text(json.dumps(manifest))
    assert [a.path.name for a in lineage("runs/eval")] == ["eval", "merge"]


def test_a_killed_runs_temporary_directory_is_removed_by_the_next_run(tmp_path):
    """kill -9 while the new output is written leaves `.NAME.tmp-PID-*`; the next run on NAME removes it."""
    dead = _dead_pid()
    stale = tmp_path / f".out.tmp-{dead}-abc123"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    with atomic_output(tmp_path / "out") as tmp:
        (tmp / "a").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_run_killed_between_the_two_renames_gets_its_old_output_back(tmp_path):
    """The old output was moved aside to `.NAME.old-PID` and the run died before moving the new one in:
    OUTPUT is missing, so the next run restores it first (and then refuses to overwrite without the flag)."""
    old = tmp_path / f".out.old-{_dead_pid()}"
    old.mkdir()
    (old / MANIFEST).write_text("{}")
    with pytest.raises(OutputExistsError):
        check_output(tmp_path / "out")
    assert (tmp_path / "out" / MANIFEST).is_file() and not old.exists()


def test_siblings_of_a_live_run_and_of_other_outputs_are_left_alone(tmp_path):
    live = tmp_path / f".out.tmp-{os.getpid()}-abc"
    other = tmp_path / f".out2.tmp-{_dead_pid()}-abc"
    live.mkdir(), other.mkdir()
    check_output(tmp_path / "out")
    assert live.is_dir() and other.is_dir()


def _dead_pid() -> int:
    """The PID of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
