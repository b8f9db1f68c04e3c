import pytest
import torch

from sqft.data import MCExample
from sqft.evaluate import evaluate_multiple_choice
from sqft.evaluate.intervals import items_digest, wilson_interval
from sqft.evaluate.multiple_choice import choose, item_key
from tests.evaluate.helpers import BigramLM, by_hand


def sky_model(tokenizer) -> BigramLM:
    """A bigram model that has 'learned' the path ' blue' (and nothing else)."""
    model = BigramLM()
    with torch.no_grad():
        model.table.zero_()
        ids = tokenizer(": blue", add_special_tokens=False)["input_ids"]
        for a, b in zip(ids[:-1], ids[1:], strict=True):
            model.table[a, b] = 8.0
    return model


def test_picks_the_learned_answer(tokenizer):
    model = sky_model(tokenizer)
    right = MCExample("Question: What colour is the sky?", ("red", "blue", "green"), 1)
    wrong = MCExample("Question: What colour is the sky?", ("red", "blue", "green"), 0)
    one = evaluate_multiple_choice(model, tokenizer, [right], progress=False)
    assert {k: one[k] for k in ("acc", "acc_norm", "n")} == {"acc": 1.0, "acc_norm": 1.0, "n": 1}
    out = evaluate_multiple_choice(model, tokenizer, [right, wrong], progress=False)
    assert {k: out[k] for k in ("acc", "acc_norm", "n")} == {"acc": 0.5, "acc_norm": 0.5, "n": 2}
    assert out["correct"] == {"acc": "10", "acc_norm": "10"}
    assert out["acc_ci95"] == out["acc_norm_ci95"] == list(wilson_interval(1, 2))
    assert out["items_sha256"] == items_digest([item_key(right), item_key(wrong)]) != one["items_sha256"]


def test_scores_match_hand_computation_and_norm_divides_by_characters(tokenizer):
    model = BigramLM(seed=3)
    examples = [
        MCExample("Question: pick one", ("a", "a longer answer here", "mid size"), 0),
        MCExample("The dog", ("barked.", "sat", "ran off into the woods"), 2),
        MCExample(
            "", ("Ann thanked Bo because Ann", "Ann thanked Bo because Bo"), 1, continuation="was kind."
        ),
    ]
    out = evaluate_multiple_choice(
        model, tokenizer, examples, delimiter=None, batch_size=4, return_scores=True, progress=False
    )
    acc = acc_norm = 0
    for ex, scores in zip(examples, out["scores"], strict=True):
        reqs = ex.requests(None)
        hand = [by_hand(model, tokenizer, c, x) for c, x in reqs]
        assert scores == pytest.approx(hand, abs=1e-4)
        best = max(range(len(hand)), key=hand.__getitem__)
        best_norm = max(range(len(hand)), key=lambda i: hand[i] / len(reqs[i][1]))
        acc += best == ex.gold
        acc_norm += best_norm == ex.gold
    assert out["acc"] == acc / 3 and out["acc_norm"] == acc_norm / 3 and out["n"] == 3


def test_choose_acc_vs_acc_norm():
    # the long choice has the lower total but the higher per-character log-likelihood
    assert choose([-2.0, -5.0], ["ab", "abcdefghij"]) == (0, 1)


def test_batched_equals_unbatched_and_limit(model, tokenizer):
    examples = [MCExample(f"Question: item {i}?", ("yes", "no", "maybe so"), i % 3) for i in range(5)]
    one = evaluate_multiple_choice(
        model, tokenizer, examples, batch_size=1, limit=4, return_scores=True, progress=False
    )
    many = evaluate_multiple_choice(
        model, tokenizer, examples, batch_size=7, limit=4, return_scores=True, progress=False
    )
    assert one["n"] == many["n"] == 4
    assert (one["acc"], one["acc_norm"]) == (many["acc"], many["acc_norm"])
    for a, b in zip(one["scores"], many["scores"], strict=True):
        assert a == pytest.approx(b, abs=1e-4)
