import math

import pytest
import torch

from sqft.evaluate.lm import encode_pair, greedy_generate, loglikelihoods, shared_forward_groups
from tests.evaluate.helpers import BigramLM, by_hand


def test_encode_pair_moves_trailing_space_to_continuation(tokenizer):
    ctx, cont = encode_pair(tokenizer, "Q?\nAnswer: ", "yes")
    assert tokenizer.decode(ctx) == "Q?\nAnswer:" and tokenizer.decode(cont) == " yes"
    ctx, cont = encode_pair(tokenizer, "", "hi")
    assert ctx == [tokenizer.eos_token_id]  # an empty context is preceded by EOS
    ctx, _ = encode_pair(tokenizer, "a", "b", add_bos=True)
    assert ctx[0] == tokenizer.bos_token_id


def test_loglikelihood_equals_hand_sum(tokenizer):
    model = BigramLM()
    pairs = [("Question: sky?\nAnswer: ", "blue"), ("The cat", " sat on the mat"), ("x", "y")]
    got = loglikelihoods(model, tokenizer, pairs, batch_size=2, progress=False)
    for (ctx, cont), (ll, _) in zip(pairs, got, strict=True):
        assert ll == pytest.approx(by_hand(model, tokenizer, ctx, cont), abs=1e-4)


def test_loglikelihood_is_greedy_flag(tokenizer):
    model = BigramLM()
    ctx_ids = tokenizer("ab", add_special_tokens=False)["input_ids"]
    best = int(model.table[ctx_ids[-1]].argmax())
    worst = int(model.table[ctx_ids[-1]].argmin())
    (_, greedy), (_, not_greedy) = loglikelihoods(
        model,
        tokenizer,
        [("ab", tokenizer.decode([best])), ("ab", tokenizer.decode([worst]))],
        progress=False,
    )
    assert greedy and not not_greedy


def test_batched_equals_unbatched_on_a_transformer(model, tokenizer):
    pairs = [
        ("Question: 2+2?\nAnswer: ", "4"),
        ("Natalia sold", " 48 clips in April and May."),
        ("A", " b c"),
    ]
    one = loglikelihoods(model, tokenizer, pairs, batch_size=1, progress=False)
    many = loglikelihoods(model, tokenizer, pairs, batch_size=3, progress=False)
    for (a, _), (b, _) in zip(one, many, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
    # and the unbatched score is the hand-computed sum of token log-probs of one full forward
    ctx, cont = encode_pair(tokenizer, *pairs[1])
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = model(ids).logits[0].log_softmax(-1)
    hand = sum(logp[t - 1, ids[0, t]].item() for t in range(len(ctx), ids.shape[1]))
    assert one[1][0] == pytest.approx(hand, abs=1e-4)
    assert math.isfinite(hand) and hand < 0


def test_generation_batched_equals_unbatched_and_stops(model, tokenizer):
    prompts = ["Question: What is 2+2?\nAnswer:", "Hi", "Natalia sold clips to 48 of her friends"]
    one = greedy_generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=1, progress=False)
    many = greedy_generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=3, progress=False)
    assert one == many
    assert all(len(t) <= 8 for t in one)  # char tokenizer: at most one character per new token
    stop = one[0][2:4]
    cut = greedy_generate(model, tokenizer, prompts[:1], max_new_tokens=8, stop=[stop], progress=False)
    assert cut == [one[0][: one[0].find(stop)]]


def test_shared_forward_groups_join_only_last_token_variants():
    enc = [
        ([1, 2], [7, 8, 3]),
        ([1, 2], [7, 8, 4]),
        ([1, 2], [7, 9, 3]),
        ([1, 5], [7, 8, 3]),
        ([1, 2], [7, 8, 5]),
    ]
    assert shared_forward_groups(enc) == [[0, 1, 4], [2], [3]]


def test_shared_forward_scores_equal_separate_sequences(model, tokenizer):
    """Choices that differ only in their last token are scored from one sequence; each score is still the
    hand sum of its own full forward, and the greedy flag belongs to each choice."""
    ctx = "Question: which?\nAnswer:"
    digits = [" the answer is 1", " the answer is 2", " the answer is 3"]
    pairs = [(ctx, d) for d in digits] + [("Natalia sold", " 48 clips")]
    encoded = [encode_pair(tokenizer, c, x) for c, x in pairs]
    assert shared_forward_groups(encoded)[0] == [0, 1, 2]  # the tokenizer splits off the digit
    got = loglikelihoods(model, tokenizer, pairs, batch_size=2, progress=False)
    for (c_ids, x_ids), (ll, greedy) in zip(encoded, got, strict=True):
        ids = torch.tensor([c_ids + x_ids])
        with torch.no_grad():
            logp = model(ids).logits[0].float().log_softmax(-1)
        steps = range(len(c_ids), ids.shape[1])
        hand = sum(logp[t - 1, ids[0, t]].item() for t in steps)
        assert ll == pytest.approx(hand, abs=1e-4)
        assert greedy == all(int(logp[t - 1].argmax()) == int(ids[0, t]) for t in steps)
    assert len({round(ll, 6) for ll, _ in got[:3]}) == 3  # three different scores, not one copied
