import json
import sys

import pytest

from sqft.data import MCExample
from sqft.errors import OutputExistsError, SqftError
from sqft.evaluate import TaskSpec, evaluate, evaluate_multiple_choice_lm_eval, format_table, write_results
from tests.conftest import CORPUS


def test_unknown_task_lists_known_tasks():
    with pytest.raises(
        SqftError, match="unknown task 'gsm9k': known tasks are gsm8k, math, mc, commonsense-gen, perplexity"
    ):
        TaskSpec("gsm9k", "x.jsonl")
    with pytest.raises(SqftError, match="limit must be a positive"):
        TaskSpec("mc", "x.jsonl", limit=0)


def test_backend_is_known_and_only_for_mc():
    with pytest.raises(SqftError, match="unknown backend 'lm_eval': known backends are sqft, lm-eval"):
        TaskSpec("mc", "x.jsonl", backend="lm_eval")
    with pytest.raises(SqftError, match="backend 'lm-eval' runs only the mc task, not 'perplexity'"):
        TaskSpec("perplexity", "x.txt", backend="lm-eval")
    assert TaskSpec("mc", "x.jsonl", backend="lm-eval").backend == "lm-eval"
    assert TaskSpec("perplexity", "x.txt").backend == "sqft"


def test_lm_eval_backend_names_the_extra_when_missing(model, tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` now raises ImportError
    with pytest.raises(SqftError, match=r"pip install 'sqft\[lm-eval\]'"):
        evaluate_multiple_choice_lm_eval(model, tokenizer, [MCExample("Q?", ("a", "b"), 0)])


def test_gsm8k_file_without_fewshot_source_is_refused(tmp_path):
    f = tmp_path / "test.jsonl"
    f.write_text("")
    with pytest.raises(SqftError, match="--fewshot-data"):
        TaskSpec("gsm8k", str(f))
    assert TaskSpec("gsm8k", str(f), n_shot=0).max_new_tokens == 256


def test_dispatcher_runs_each_task(model, tokenizer, tmp_path):
    mc = tmp_path / "mc.jsonl"
    mc.write_text(
        "".join(
            json.dumps({"query": f"Question: {i}?", "choices": ["a", "b"], "gold": i % 2}) + "\n"
            for i in range(6)
        )
    )
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text(
        "".join(json.dumps({"question": f"{i}+1?", "answer": f"#### {i + 1}"}) + "\n" for i in range(3))
    )
    shots = tmp_path / "shots.jsonl"
    shots.write_text(json.dumps({"question": "5+5?", "answer": "5+5=10\n#### 10"}) + "\n")
    math = tmp_path / "math.json"
    math.write_text(json.dumps([{"instruction": "2+2?", "input": "", "output": "", "answer": "4"}]))
    txt = tmp_path / "heldout.txt"
    txt.write_text(CORPUS[:500])
    specs = {
        "mc": TaskSpec("mc", str(mc), limit=4),
        "gsm8k": TaskSpec("gsm8k", str(gsm), fewshot_data=str(shots), n_shot=1, max_new_tokens=4),
        "math": TaskSpec("math", str(math), max_new_tokens=4),
        "ppl": TaskSpec("perplexity", str(txt), seq_len=64),
    }
    out = evaluate(model, tokenizer, specs, progress=False)
    assert out["mc"]["n"] == 4 and set(out["mc"]) >= {"acc", "acc_norm", "seconds"}
    assert out["gsm8k"]["n"] == 3 and set(out["gsm8k"]) >= {"strict_match", "flexible_match"}
    assert out["math"]["n"] == 1
    assert out["ppl"]["n_tokens"] == 500 - 8  # 8 windows of 64 characters: the first of each is not predicted
    table = format_table(out)
    assert "acc_norm" in table and "perplexity" in table
    lines = {tuple(line.split()[:2]): line for line in table.splitlines()}
    lo, hi = out["mc"]["acc_ci95"]
    assert lines[("mc", "acc")].split()[2:] == [f"{out['mc']['acc']:.4f}", f"[{lo:.4f},", f"{hi:.4f}]", "4"]
    assert lines[("ppl", "perplexity")].split()[-1] == str(out["ppl"]["n_tokens"])  # no interval, n tokens
    assert "[" not in lines[("ppl", "perplexity")]


def test_write_results_atomic_and_refuses_overwrite(tmp_path):
    p = tmp_path / "r.json"
    write_results({"mc": {"acc": 0.5, "n": 2}}, p, meta={"model": "m"})
    assert json.loads(p.read_text()) == {"results": {"mc": {"acc": 0.5, "n": 2}}, "model": "m"}
    with pytest.raises(OutputExistsError):
        write_results({}, p)
    write_results({"x": {}}, p, overwrite=True)
    assert json.loads(p.read_text())["results"] == {"x": {}}
    assert [q.name for q in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind
    with pytest.raises(SqftError, match="does not exist"):
        write_results({}, tmp_path / "no" / "r.json")


def test_overwrite_replaces_only_a_results_file(tmp_path):
    p = tmp_path / "config.json"
    p.write_text('{"hidden_size": 64}')
    with pytest.raises(SqftError, match="not a results file"):
        write_results({}, p, overwrite=True)
    assert p.read_text() == '{"hidden_size": 64}'
