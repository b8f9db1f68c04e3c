"""sqft's multiple-choice scores agree with lm-evaluation-harness's on the same model and data."""

import json
import socket

import pytest
import torch

from sqft.cli import main
from sqft.data import load_multiple_choice
from sqft.errors import SqftError
from sqft.evaluate import TaskSpec, evaluate, evaluate_multiple_choice, evaluate_multiple_choice_lm_eval
from tests.evaluate.helpers import BigramLM
from tests.tolerance import gamma

pytest.importorskip("lm_eval")

ITEMS = [  # 12 items, 2-4 choices of different lengths; some queries end in "Answer:" (auto delimiter " ")
    ("Question: What colour is the sky?", ["blue", "green", "a deep shade of red"], 0),
    ("Question: Which is a fruit?", ["apple", "carrot"], 0),
    ("Question: How many legs has a spider?\nAnswer:", ["8", "six", "four", "twelve legs"], 0),
    ("The dog", ["barked.", "sat", "ran off into the woods"], 2),
    ("Question: Is ice cold?", ["yes", "no"], 0),
    ("Passage: Tom has 3 apples.\nQuestion: How many apples?\nAnswer:", ["3", "three apples", "5"], 1),
    ("Question: Pick the longest.", ["a", "bb", "ccc", "dddddddddd"], 3),
    ("Goal: open a jar.", ["twist the lid", "hit it with a hammer until it breaks"], 0),
    ("Question: 2+2?", ["4", "22"], 0),
    ("Question: Capital of France?", ["Paris", "Lyon", "Marseille is the capital"], 0),
    ("She opened the door and", ["smiled.", "the sky fell", "walked in slowly"], 2),
    ("Question: Opposite of up?\nAnswer:", ["down", "sideways, mostly"], 0),
]
WINOGRANDE = [
    (["Sarah was a better surgeon than Maria so Sarah", "Sarah was a better surgeon than Maria so Maria"],
     "always got the easier cases.", 1),
    (["The trophy did not fit the suitcase because the trophy", "The trophy did not fit the suitcase because the suitcase"],
     "was too big.", 0),
    (["Ann thanked Bo because Ann", "Ann thanked Bo because Bo"], "was kind.", 1),
    (["The cat chased the mouse until the cat", "The cat chased the mouse until the mouse"], "was tired.", 0),
]  # fmt: skip


def assert_same_scores(ours: list[list[float]], theirs: list[list[float]]) -> None:
    """Equal up to float32 rounding: 64 ulps of each summed log-likelihood's magnitude."""
    assert [len(x) for x in ours] == [len(y) for y in theirs]
    for x, y in zip(ours, theirs, strict=True):
        for a, b in zip(x, y, strict=True):
            assert abs(a - b) <= gamma(128, torch.float32) * max(1.0, abs(a)), (x, y)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def mc_file(tmp_path):
    return write_jsonl(tmp_path / "mc.jsonl", [{"query": q, "choices": c, "gold": g} for q, c, g in ITEMS])


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access during an offline evaluation")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_scores_acc_and_acc_norm_agree_offline(model, tokenizer, mc_file, no_network):
    ours = evaluate_multiple_choice(
        model,
        tokenizer,
        load_multiple_choice(mc_file),
        None,
        batch_size=5,
        return_scores=True,
        progress=False,
    )
    theirs = evaluate_multiple_choice_lm_eval(
        model, tokenizer, mc_file, delimiter=None, batch_size=5, return_scores=True
    )
    assert (theirs["acc"], theirs["acc_norm"], theirs["n"]) == (ours["acc"], ours["acc_norm"], ours["n"])
    assert ours["acc"] != ours["acc_norm"]  # the data tells the two metrics apart
    # the same per-item outcomes on the same items (so the two scorers' results pair), and the same intervals
    assert theirs["correct"] == ours["correct"] and theirs["items_sha256"] == ours["items_sha256"]
    assert (theirs["acc_ci95"], theirs["acc_norm_ci95"]) == (ours["acc_ci95"], ours["acc_norm_ci95"])
    assert_same_scores(ours["scores"], theirs["scores"])
    # the check is sharp: a delimiter without its trailing space scores other tokens, and fails it
    shifted = evaluate_multiple_choice(
        model,
        tokenizer,
        load_multiple_choice(mc_file),
        delimiter="\nAnswer:",
        return_scores=True,
        progress=False,
    )
    with pytest.raises(AssertionError):
        assert_same_scores(shifted["scores"], theirs["scores"])


def test_limit_and_explicit_delimiter(model, tokenizer, mc_file):
    ours = evaluate_multiple_choice(
        model, tokenizer, load_multiple_choice(mc_file), " ", limit=5, return_scores=True, progress=False
    )
    theirs = evaluate_multiple_choice_lm_eval(
        model, tokenizer, mc_file, delimiter=" ", limit=5, return_scores=True
    )
    assert theirs["n"] == ours["n"] == 5
    assert (theirs["acc"], theirs["acc_norm"]) == (ours["acc"], ours["acc_norm"])
    assert_same_scores(ours["scores"], theirs["scores"])


def test_winogrande_layout(model, tokenizer, tmp_path):
    path = write_jsonl(
        tmp_path / "wg.jsonl",
        [{"context_options": o, "continuation": c, "gold": g} for o, c, g in WINOGRANDE],
    )
    examples = load_multiple_choice(path)
    ours = evaluate_multiple_choice(model, tokenizer, examples, return_scores=True, progress=False)
    theirs = evaluate_multiple_choice_lm_eval(model, tokenizer, examples, return_scores=True)
    assert theirs["acc"] == ours["acc"] and theirs["n"] == ours["n"] == 4
    assert_same_scores(ours["scores"], theirs["scores"])
    # lm-eval's acc_norm divides by the lengths of the options (the contexts), sqft's by the continuation's
    by_context = [
        max(range(2), key=lambda i: s[i] / len(ex.choices[i])) == ex.gold
        for ex, s in zip(examples, ours["scores"], strict=True)
    ]
    assert theirs["acc_norm"] == sum(by_context) / 4 and ours["acc_norm"] == ours["acc"]


def test_cli_backend_flag_and_results_record_it(model, tokenizer, model_dir, mc_file, tmp_path):
    out = tmp_path / "results.json"
    argv = ["evaluate", str(model_dir), "--task", "mc", "--data", str(mc_file), "--limit", "4"]
    assert main(argv + ["--backend", "lm-eval", "-o", str(out), "-q"]) == 0
    payload = json.loads(out.read_text())
    got = payload["results"]["mc"]
    assert got["backend"] == payload["tasks"]["mc"]["backend"] == "lm-eval"
    want = evaluate(model, tokenizer, {"mc": TaskSpec("mc", str(mc_file), limit=4)}, progress=False)["mc"]
    assert want["backend"] == "sqft"
    assert (got["acc"], got["acc_norm"], got["n"]) == (want["acc"], want["acc_norm"], want["n"])


def test_refuses_a_plain_module_and_mixed_layouts(tokenizer, tmp_path):
    with pytest.raises(SqftError, match="PreTrainedModel, got BigramLM"):
        evaluate_multiple_choice_lm_eval(
            BigramLM(),
            tokenizer,
            load_multiple_choice(
                write_jsonl(tmp_path / "a.jsonl", [{"query": "Q?", "choices": ["a", "b"], "gold": 0}])
            ),
        )
    mixed = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"query": "Q?", "choices": ["a", "b"], "gold": 0},
            {"context_options": ["x a", "x b"], "continuation": "y", "gold": 1},
        ],
    )
    with pytest.raises(SqftError, match="one layout per file"):
        evaluate_multiple_choice_lm_eval(BigramLM(), tokenizer, mixed)
