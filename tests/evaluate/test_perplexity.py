import math

import pytest

from sqft.errors import SqftError
from sqft.evaluate import evaluate_perplexity
from sqft.evaluate.perplexity import text_windows
from tests.evaluate.helpers import BigramLM


def test_windows_are_non_overlapping_and_cover_the_stream():
    windows = text_windows(list(range(25)), 10)
    assert [len(w) for w in windows] == [10, 10, 5]
    assert sum(windows, []) == list(range(25))
    assert [len(w) for w in text_windows(list(range(21)), 10)] == [10, 10]  # a 1-token tail predicts nothing


def test_perplexity_is_exp_of_token_weighted_nll(tokenizer):
    model = BigramLM()
    text = "the cat sat on the mat."  # 23 characters
    out = evaluate_perplexity(model, tokenizer, [text], seq_len=10, batch_size=2, progress=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    nll = [-model.logprob(w[t - 1], w[t]) for w in text_windows(ids, 10) for t in range(1, len(w))]
    assert out["n_tokens"] == len(nll) == 9 + 9 + 2 and out["n_windows"] == 3
    assert out["nll"] == pytest.approx(sum(nll) / len(nll), rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-5)


def test_batched_equals_unbatched_on_a_transformer(model, tokenizer):
    from tests.conftest import CORPUS

    a = evaluate_perplexity(model, tokenizer, [CORPUS[:700]], seq_len=64, batch_size=1, progress=False)
    b = evaluate_perplexity(model, tokenizer, [CORPUS[:700]], seq_len=64, batch_size=4, progress=False)
    assert a["n_tokens"] == b["n_tokens"] and a["perplexity"] == pytest.approx(b["perplexity"], rel=1e-5)
    assert 1 < a["perplexity"] < 10 * tokenizer.vocab_size  # a random model: near-uniform, not degenerate
    limited = evaluate_perplexity(model, tokenizer, [CORPUS[:700]], seq_len=64, limit=2, progress=False)
    assert limited["n_windows"] == 2 and limited["n_tokens"] == 2 * 63


def test_too_little_text(tokenizer):
    with pytest.raises(SqftError, match="at least 2"):
        evaluate_perplexity(BigramLM(), tokenizer, ["a"], seq_len=8, progress=False)
