"""`sqft generate` and the library under it: greedy replies equal transformers' own greedy generation, streamed
pieces add up to the reply, chat templates are used, and bad input is one line."""

import io

import pytest
import torch

from sqft.cli import main
from sqft.errors import SqftError
from sqft.inference import GenerateConfig, generate_reply, load_for_inference
from sqft.inference.generate import prompt_ids
from tests.cli.helpers import run_calibrated_stage

TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"


def test_greedy_reply_is_transformers_greedy_and_streams_in_pieces(model, tokenizer):
    cfg = GenerateConfig(max_new_tokens=12)
    pieces = []
    reply = generate_reply(model.eval(), tokenizer, [{"role": "user", "content": "abc"}], cfg, pieces.append)
    ids = tokenizer("abc", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    assert reply == tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert "".join(pieces) == reply and len(reply) > 0


def test_sampling_is_seeded(model, tokenizer):
    msgs = [{"role": "user", "content": "abc"}]
    a, b, c = (
        generate_reply(model.eval(), tokenizer, msgs, GenerateConfig(20, temperature=1.5, seed=s))
        for s in (1, 1, 2)
    )
    assert a == b and a != c


def test_the_chat_template_is_used_when_the_tokenizer_has_one(tokenizer):
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "ok"},
    ]
    plain = prompt_ids(tokenizer, msgs)
    assert torch.equal(
        plain, tokenizer("User: hi\nAssistant: yo\nUser: ok\nAssistant:", return_tensors="pt").input_ids
    )
    tokenizer.chat_template = TEMPLATE
    templated = prompt_ids(tokenizer, msgs)
    want = tokenizer(
        "<user>hi<assistant>yo<user>ok<assistant>", add_special_tokens=False, return_tensors="pt"
    )
    assert torch.equal(templated, want.input_ids)


@pytest.mark.parametrize(
    "kw", [{"max_new_tokens": 0}, {"max_new_tokens": 2.5}, {"temperature": -1}, {"top_p": 0}]
)
def test_bad_generate_config(kw):
    with pytest.raises(SqftError):
        GenerateConfig(**kw)


def test_cli_prompt_on_dense_and_int4(model_dir, tmp_path, capsys):
    assert main(["generate", str(model_dir), "--prompt", "abc", "--max-new-tokens", "6", "-q"]) == 0
    assert capsys.readouterr().out.strip()
    int4 = tmp_path / "int4"
    assert run_calibrated_stage("quantize", model_dir, int4, "--method", "rtn", "--group-size", "32") == 0
    lm = load_for_inference(int4)
    assert lm.packing is not None and len(lm.packing.packed) == 14 and not lm.packing.fallback
    capsys.readouterr()
    assert main(["generate", str(int4), "--prompt", "abc", "--max-new-tokens", "6", "-q"]) == 0
    assert capsys.readouterr().out.strip()


def test_cli_chat_ends_on_an_empty_line_and_on_eof(model_dir, capsys, monkeypatch):
    for stdin in ("ab\ncd\n\n", "ab\n"):
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        assert main(["generate", str(model_dir), "--chat", "--max-new-tokens", "4", "-q"]) == 0
        captured = capsys.readouterr()
        assert captured.out.count("> ") == stdin.count("\n") + (0 if stdin.endswith("\n\n") else 1)


def _adapter(base_dir, out):
    from sqft.adapt import AdaptConfig, inject_adapters, save_adapter
    from sqft.loading import load_model

    m = load_model(base_dir)
    inject_adapters(m, AdaptConfig(adapter="lora", r_max=4, alpha=8.0))
    save_adapter(m, out, base=str(base_dir))
    return out


def test_cli_base_plus_adapter(model_dir, tmp_path, capsys):
    adapter = _adapter(model_dir, tmp_path / "adapter")
    assert (
        main(
            ["generate", str(model_dir), "--adapter", str(adapter), "--prompt", "ab", "--max-new-tokens", "4"]
        )
        == 0
    )


def test_cli_bad_input_is_one_line(model_dir, tmp_path, capsys):
    from tests.conftest import char_tokenizer, tiny_llama

    other = tmp_path / "other"
    tiny_llama(num_layers=1, hidden=32, intermediate=64).save_pretrained(other)
    char_tokenizer().save_pretrained(other)
    adapter = _adapter(other, tmp_path / "adapter")
    capsys.readouterr()  # the progress bars of saving, when they are on
    cases = [
        ([str(tmp_path / "missing"), "--prompt", "a"], "does not exist"),
        ([str(adapter), "--prompt", "a"], "is an adapter, not a model"),
        ([str(model_dir), "--adapter", str(adapter), "--prompt", "a"], "was trained on"),
        ([str(model_dir), "--adapter", str(tmp_path / "nope"), "--prompt", "a"], "adapter"),
        ([str(model_dir), "--prompt", "a", "--max-new-tokens", "0"], "must be a positive integer"),
        ([str(model_dir), "--prompt", "a", "--device", "tpu7"], "unknown device 'tpu7'"),
    ]
    for args, message in cases:
        assert main(["generate", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)


def test_cli_refuses_an_adapter_trained_on_another_base_unless_forced(model_dir, tmp_path, capsys):
    """The same shapes, other weights: the adapter's recorded base fingerprint differs, so generate refuses it
    as evaluate and merge do, and runs it with --force."""
    from sqft.loading import load_model
    from tests.conftest import char_tokenizer

    other = tmp_path / "other"
    model = load_model(model_dir)
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)
    model.save_pretrained(other)
    char_tokenizer().save_pretrained(other)
    adapter = _adapter(model_dir, tmp_path / "adapter")
    argv = ["generate", str(other), "--adapter", str(adapter), "--prompt", "ab", "--max-new-tokens", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"was trained on '{model_dir}'" in err and "Traceback" not in err
    assert main(argv + ["--force"]) == 0
