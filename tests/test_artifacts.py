"""Artifacts: manifests name their parent so that the lineage resolves from any working directory."""

import json

from sqft.artifacts import MANIFEST, write_manifest
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
