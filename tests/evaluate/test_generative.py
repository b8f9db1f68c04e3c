import pytest

import sqft.evaluate.gsm8k as gsm8k_mod
import sqft.evaluate.instructions as instr_mod
from sqft.data import GSM8KExample, InstructionExample
from sqft.errors import SqftError
from sqft.evaluate import evaluate_commonsense_gen, evaluate_gsm8k, evaluate_math
from sqft.evaluate.gsm8k import item_key, pick_fewshot
from sqft.evaluate.intervals import items_digest, wilson_interval


def canned(outputs, seen):
    def fake_generate(model, tokenizer, prompts, max_new_tokens, stop, *args, **kwargs):
        seen.extend(prompts)
        seen.append(tuple(stop))
        return outputs[: len(prompts)]

    return fake_generate


def test_gsm8k_scoring_and_prompt(monkeypatch):
    tests = [GSM8KExample(f"Q{i}?", f"work\n#### {t}") for i, t in enumerate(["72", "10", "6", "1,000"])]
    pool = tests + [GSM8KExample(f"S{i}?", f"s{i}\n#### {i}") for i in range(5)]
    outputs = ["so 72.\n#### 72", "she earned $10.", "#### 5", "It is 1,000"]
    seen: list = []
    monkeypatch.setattr(gsm8k_mod, "greedy_generate", canned(outputs, seen))
    out = evaluate_gsm8k(None, None, tests, pool, n_shot=5, progress=False)
    assert out == {
        "strict_match": 0.25,
        "flexible_match": 0.75,
        "n": 4,
        "n_shot": 5,
        "strict_match_ci95": list(wilson_interval(1, 4)),
        "flexible_match_ci95": list(wilson_interval(3, 4)),
        "correct": {"strict_match": "1000", "flexible_match": "1101"},  # "#### 5" is wrong either way
        "items_sha256": items_digest([item_key(ex) for ex in tests]),
    }
    prompt = seen[0]
    assert prompt.count("Question:") == 6 and prompt.endswith("Question: Q0?\nAnswer:")
    assert "Q1?" not in prompt  # no evaluated item among the shots
    assert "Answer: s" in prompt and "\n\nQuestion: Q0?" in prompt
    assert "Question:" in seen[-1] and "\n\n" in seen[-1]


def test_fewshot_never_from_evaluated_items():
    tests = [GSM8KExample(f"Q{i}?", "#### 1") for i in range(3)]
    pool = tests + [GSM8KExample("S?", "#### 2")]
    assert pick_fewshot(pool, 1, exclude=tests) == [pool[-1]]
    with pytest.raises(SqftError, match="outside the evaluated items"):
        pick_fewshot(pool, 2, exclude=tests)
    assert pick_fewshot(pool, 2, seed=1) == pick_fewshot(pool, 2, seed=1)


def test_math_numbers_and_letters(monkeypatch):
    nums = [
        InstructionExample("a?", "1.8333333333333335"),
        InstructionExample("b?", "-4"),
        InstructionExample("c?", "1000"),
    ]
    monkeypatch.setattr(
        instr_mod, "greedy_generate", canned(["it is 1.8333", "The answer is -4.", "100 or so"], [])
    )
    out = evaluate_math(None, None, nums, progress=False)
    assert {k: out[k] for k in ("accuracy", "n", "answer_type")} == {
        "accuracy": 2 / 3,
        "n": 3,
        "answer_type": "number",
    }
    assert out["correct"] == {"accuracy": "110"} and out["accuracy_ci95"] == list(wilson_interval(2, 3))
    letters = [InstructionExample("q (A) 1 (B) 2", "B"), InstructionExample("q", "A")]
    monkeypatch.setattr(instr_mod, "greedy_generate", canned(["The answer is (B).", "Answer: C"], []))
    assert evaluate_math(None, None, letters, progress=False)["accuracy"] == 0.5


def test_commonsense_gen(monkeypatch):
    fmt = "\n\nAnswer format: solution1/solution2"
    examples = [InstructionExample("q1" + fmt, "solution1"), InstructionExample("q2" + fmt, "solution2")]
    seen: list = []
    monkeypatch.setattr(
        instr_mod, "greedy_generate", canned(["the correct answer is solution1", "solution1"], seen)
    )
    out = evaluate_commonsense_gen(None, None, examples, progress=False)
    assert (out["accuracy"], out["n"], out["correct"], out["accuracy_ci95"]) == (
        0.5,
        2,
        {"accuracy": "10"},
        list(wilson_interval(1, 2)),
    )
    # a different item order is a different item list: it cannot be paired with this one
    swapped = evaluate_commonsense_gen(None, None, examples[::-1], progress=False)
    assert swapped["items_sha256"] != out["items_sha256"]
    assert seen[0].startswith("Below is an instruction") and seen[0].endswith("### Response:\n")


def test_gsm8k_runs_on_a_real_model(model, tokenizer):
    tests = [GSM8KExample("What is 2+2?", "2+2=4\n#### 4")]
    shots = [GSM8KExample("What is 1+1?", "1+1=2\n#### 2")]
    out = evaluate_gsm8k(
        model, tokenizer, tests, shots, n_shot=1, max_new_tokens=8, return_outputs=True, progress=False
    )
    assert out["n"] == 1 and 0 <= out["strict_match"] <= out["n"] and len(out["outputs"][0]) <= 8
