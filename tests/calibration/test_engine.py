import torch

from sqft.calibration import Hessian, InputSqNorm, calibration_windows, run_layerwise
from sqft.errors import SqftError
from tests.conftest import CORPUS
from tests.tolerance import assert_close


def test_layerwise_matches_full_forward_when_nothing_changes(model, windows):
    captured = {}
    last = model.model.layers[-1]
    h = last.register_forward_hook(lambda m, a, out: captured.setdefault("x", []).append(out))
    with torch.no_grad():
        for ids in windows:
            model(ids.unsqueeze(0), use_cache=False)
    h.remove()
    result = run_layerwise(
        model, windows, process=lambda n, lin, s: None, make_accumulator=None, quiet=True, batch_size=3
    )
    assert len(result.hidden) == len(windows)
    for got, want in zip(result.hidden, captured["x"]):
        assert_close(got, want, torch.float32, 64)  # batched vs one window at a time


def test_accumulators_see_every_token(model, windows):
    seen = {}

    def process(name, lin, stat):
        seen[name] = stat

    run_layerwise(model, windows, process, lambda lin: InputSqNorm(lin.in_features), quiet=True)
    assert len(seen) == 2 * 7
    assert all(s.n_tokens == windows.numel() for s in seen.values())


def test_hessian_is_two_over_n_xxt():
    torch.manual_seed(0)
    x = torch.randn(5, 7, 6)
    acc = Hessian(6)
    for chunk in x:
        acc.add_batch(chunk)
    X = x.reshape(-1, 6)
    assert_close(acc.H, 2 / X.shape[0] * X.T @ X, torch.float32, X.shape[0])  # sums of 35 products


def test_windows_are_seeded_and_sized(tokenizer):
    a = calibration_windows(tokenizer, [CORPUS], n_samples=4, seq_len=32, seed=1)
    b = calibration_windows(tokenizer, [CORPUS], n_samples=4, seq_len=32, seed=1)
    c = calibration_windows(tokenizer, [CORPUS], n_samples=4, seq_len=32, seed=2)
    assert a.shape == (4, 32) and torch.equal(a, b) and not torch.equal(a, c)


def test_too_short_text_says_how_many_windows(tokenizer):
    try:
        calibration_windows(tokenizer, ["short text " * 10], n_samples=4, seq_len=64)
    except SqftError as e:
        assert "only 1 window" in str(e)
    else:
        raise AssertionError("expected SqftError")
