import json

import pytest

from sqft.cli import main

MC = [{"query": f"Question {i}?", "choices": ["yes", "no"], "gold": i % 2} for i in range(6)]


@pytest.fixture
def val_file(tmp_path):
    p = tmp_path / "val.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in MC))
    return p


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["search", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--strategy",
        "--validation",
        "--budget",
        "--turns",
        "--neighbours",
        "--step",
        "--proxy-samples",
        "--seed",
        "--test-data",
        "--output",
    ):
        assert flag in out


@pytest.mark.parametrize(
    "extra, words",
    [
        ([], "--validation"),  # hill-climbing without validation data
        (["--strategy", "greedy"], "strategy 'greedy'"),
        (["--strategy", "median", "--proxy-samples", "0"], "proxy_samples"),
    ],
)
def test_bad_arguments_fail_fast_without_output(tmp_path, capsys, extra, words):
    out = tmp_path / "out"
    assert main(["search", str(tmp_path / "adapter"), "--base", "x", "--output", str(out), *extra]) == 2
    assert words in capsys.readouterr().err
    assert not out.exists()


def test_validation_equal_to_test_data_is_refused(tmp_path, capsys, val_file):
    out = tmp_path / "out"
    copy = tmp_path / "test.jsonl"
    copy.write_bytes(val_file.read_bytes())
    for test in (val_file, copy):
        args = ["search", str(tmp_path / "adapter"), "--base", "x", "--validation", str(val_file)]
        assert main([*args, "--test-data", str(test), "--output", str(out)]) == 2
        assert "same data" in capsys.readouterr().err
    assert not out.exists()
