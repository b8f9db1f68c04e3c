"""--overwrite replaces only sqft's own artifacts; adapters are used only on the base they were trained on
(unless --force, which is recorded); a resumed fine-tuning must be the same run (unless --restart)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from sqft.cli import main
from tests.reliability.conftest import FAST_FINETUNE, copy_dir
from tests.reliability.helpers import siblings, snapshot


def _refused(argv: list[str], expect: str, watched: list[Path], capsys, also: str = "") -> None:
    before = snapshot(*watched)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expect in err and also in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert snapshot(*watched) == before


def test_overwrite_of_a_folder_sqft_did_not_write_is_refused(env, tmp_path, capsys):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"\xff\xd8 precious")
    argv = ["sparsify", str(env.dense), "--method", "magnitude", "-o", str(mine), "--overwrite", "-q"]
    _refused(argv, "has no sqft.json", [mine], capsys)


def test_overwrite_of_the_input_is_refused(env, tmp_path, capsys):
    model = copy_dir(env.sparse_other, tmp_path / "model")  # an sqft artifact: it has sqft.json
    argv = ["sparsify", str(model), "--method", "magnitude", "-o", str(model), "--overwrite", "-q"]
    _refused(argv, "is or contains the input", [model], capsys)


def test_overwrite_of_a_parent_of_the_input_is_refused(env, tmp_path, capsys):
    """A search output holds its sub-adapter: extracting from it into the search directory would delete it."""
    search = copy_dir(env.sparse_other, tmp_path / "search")
    adapter = copy_dir(env.adapter, search / "adapter")
    argv = ["extract", str(adapter), "-o", str(search), "--overwrite"]
    _refused(argv, "is or contains the input", [search], capsys)
    argv = ["merge", str(env.sparse), str(adapter), "-o", str(search), "--overwrite", "-q"]
    _refused(argv, "is or contains the input", [search, env.sparse], capsys)


def test_overwrite_of_an_sqft_artifact_replaces_it(env, tmp_path):
    out = copy_dir(env.sparse_other, tmp_path / "out")
    assert (
        main(["sparsify", str(env.dense), "--method", "magnitude", "-o", str(out), "--overwrite", "-q"]) == 0
    )
    assert json.loads((out / "sqft.json").read_text())["config"]["pattern"] is None and siblings(out) == []


def test_merge_on_the_training_base_records_a_checked_provenance(env, tmp_path):
    out = tmp_path / "merged"
    assert main(["merge", str(env.sparse), str(env.adapter), "-o", str(out), "-q"]) == 0
    manifest = json.loads((out / "sqft.json").read_text())
    prov = manifest["figures"]["provenance"]
    assert prov["checked"] and prov["mask_checked"] and not prov["forced"] and manifest["parent_fingerprint"]
    meta = json.loads((env.adapter / "elastic_adapter_config.json").read_text())
    assert meta["base_fingerprint"] == prov["base_fingerprint"] and meta["mask_fingerprint"]


def test_force_merges_into_another_base_and_says_so(env, tmp_path):
    out = tmp_path / "merged"
    assert main(["merge", str(env.sparse_other), str(env.adapter), "-o", str(out), "--force", "-q"]) == 0
    manifest = json.loads((out / "sqft.json").read_text())
    assert manifest["config"]["force"] is True and manifest["figures"]["provenance"]["forced"] is True


def test_the_mask_check_catches_a_base_with_the_same_fingerprint_record_stripped(env, tmp_path, capsys):
    """An adapter without a base fingerprint (older sqft) is still checked by its mask on a differently
    pruned base, and accepted (check skipped, logged) when it has neither record."""
    adapter = copy_dir(env.adapter, tmp_path / "adapter")
    meta_path = adapter / "elastic_adapter_config.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "base_fingerprint": None}))
    argv = ["merge", str(env.sparse_other), str(adapter), "-o", str(tmp_path / "m"), "-q"]
    _refused(argv, "another sparsity mask", [adapter, env.sparse_other], capsys)
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if "fingerprint" not in k}))
    assert main(["merge", str(env.sparse), str(adapter), "-o", str(tmp_path / "m"), "-q"]) == 0


def test_extract_refuses_a_configuration_searched_on_another_adapter(env, tmp_path, capsys):
    search = tmp_path / "search"
    assert (
        main(
            [
                "search",
                str(env.adapter),
                "--base",
                str(env.sparse),
                "--strategy",
                "minimal",
                "-o",
                str(search),
            ]
        )
        == 0
    )
    other = copy_dir(env.adapter, tmp_path / "other")
    tensors = load_file(other / "adapter_model.safetensors")
    save_file({k: v * 2 for k, v in tensors.items()}, str(other / "adapter_model.safetensors"))
    config = str(search / "configuration.json")
    argv = ["extract", str(other), "--config", config, "-o", str(tmp_path / "sub")]
    _refused(argv, "was chosen by a search on another adapter", [other, search], capsys)
    assert main(["extract", str(env.adapter), "--config", config, "-o", str(tmp_path / "sub")]) == 0
    assert main(argv[:-2] + ["-o", str(tmp_path / "sub2"), "--force"]) == 0
    assert json.loads((tmp_path / "sub2" / "sqft.json").read_text())["config"]["force"] is True


def test_a_resume_with_other_settings_is_refused_naming_them(env, tmp_path, capsys, monkeypatch):
    import sqft.stages.finetune as api

    argv = ["finetune", str(env.sparse), "--data", str(env.train), "-o", str(tmp_path / "out")]
    argv += FAST_FINETUNE + ["--save-steps", "1"]

    def interrupted(*args, **kwargs):  # the run dies after training, before its output is written
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(api, "atomic_output", interrupted)
        assert main(argv) == 130
    ckpts = tmp_path / ".out.checkpoints"
    assert (ckpts / "checkpoint-2" / "sqft_checkpoint_done").is_file() and not (tmp_path / "out").exists()
    changed = [("--lr", "5e-3", "learning_rate"), ("--data", str(env.test), "data")]
    for flag, value, key in changed:
        bad = list(argv)
        bad[bad.index(flag) + 1] = value
        _refused(bad, f"{key}:", [ckpts], capsys, also="pass --restart")
    bad = list(argv)
    bad[bad.index("--lr") + 1] = "5e-3"
    assert main(bad + ["--restart"]) == 0  # starts over with the new settings
    manifest = json.loads((tmp_path / "out" / "sqft.json").read_text())
    assert (
        manifest["figures"]["resumed_from"] is None and manifest["config"]["train"]["learning_rate"] == 5e-3
    )
