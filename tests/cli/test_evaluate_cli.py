import json

from sqft.cli import main
from tests.conftest import CORPUS
from tests.tolerance import assert_close


def mc_file(tmp_path, records=None):
    p = tmp_path / "mc.jsonl"
    records = records or [
        {"query": f"Question: {i}?", "choices": ["yes", "no"], "gold": i % 2} for i in range(4)
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in records))
    return p


def test_mc_and_perplexity_write_results(model_dir, tmp_path, capsys):
    txt = tmp_path / "heldout.txt"
    txt.write_text(CORPUS[:300])
    out = tmp_path / "results.json"
    argv = [
        "evaluate",
        str(model_dir),
        "--task",
        "mc",
        "--data",
        str(mc_file(tmp_path)),
        "--perplexity",
        str(txt),
    ]
    rc = main(argv + ["--seq-len", "64", "--limit", "3", "-o", str(out), "-q"])
    assert rc == 0
    results = json.loads(out.read_text())["results"]
    assert results["mc"]["n"] == 3 and 0 <= results["mc"]["acc"] <= 1
    assert results["perplexity"]["n_windows"] == 3 and results["perplexity"]["perplexity"] > 1
    assert "acc_norm" in capsys.readouterr().out
    assert main(argv + ["-o", str(out), "-q"]) == 2  # existing output refused
    assert "already exists" in capsys.readouterr().err


def test_jsonl_perplexity_with_text_field(model_dir, tmp_path, capsys):
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps({"body": CORPUS[:200]}) + "\n")
    assert (
        main(
            [
                "evaluate",
                str(model_dir),
                "--perplexity",
                str(p),
                "--text-field",
                "body",
                "--seq-len",
                "50",
                "-q",
            ]
        )
        == 0
    )
    assert "perplexity" in capsys.readouterr().out


def test_user_errors_are_one_line(model_dir, tmp_path, capsys):
    assert main(["evaluate", str(model_dir), "--task", "nope", "--data", "x.jsonl"]) == 2
    assert "known tasks are gsm8k, math, mc, commonsense-gen, perplexity" in capsys.readouterr().err
    bad = mc_file(tmp_path, [{"query": "q", "choices": ["a", "b"], "gold": 0}, {"query": "q", "gold": 1}])
    out = tmp_path / "r.json"
    assert main(["evaluate", str(model_dir), "--task", "mc", "--data", str(bad), "-o", str(out)]) == 2
    assert "mc.jsonl line 2: missing field 'choices'" in capsys.readouterr().err
    assert not out.exists()
    assert main(["evaluate", str(model_dir)]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    ppl = ["evaluate", str(model_dir), "--perplexity", str(tmp_path / "x.txt")]
    assert main(ppl + ["--backend", "lm-eval"]) == 2
    assert "backend 'lm-eval' runs only the mc task, not 'perplexity'" in capsys.readouterr().err
    assert main(ppl + ["--backend", "harness"]) == 2
    assert "unknown backend 'harness'" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                str(model_dir),
                "--task",
                "mc",
                "--data",
                str(mc_file(tmp_path)),
                "--adapter",
                str(tmp_path / "none"),
            ]
        )
        == 2
    )
    assert "adapter directory" in capsys.readouterr().err


def test_adapter_is_applied(model_dir, tmp_path):
    import torch

    from sqft.adapt import AdaptConfig, adapter_layers, inject_adapters, save_adapter
    from sqft.evaluate import evaluate_perplexity
    from sqft.loading import load_model, load_tokenizer

    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    base_ppl = evaluate_perplexity(model, tokenizer, [CORPUS[:300]], seq_len=64, progress=False)["perplexity"]
    inject_adapters(model, AdaptConfig(adapter="lora", r_max=4, alpha=8.0, dropout=0.0))
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            layer.lora_B.normal_(0, 0.5)
    save_adapter(model, tmp_path / "adapter", base=str(model_dir))
    want = evaluate_perplexity(model.eval(), tokenizer, [CORPUS[:300]], seq_len=64, progress=False)[
        "perplexity"
    ]
    txt = tmp_path / "heldout.txt"
    txt.write_text(CORPUS[:300])
    out = tmp_path / "r.json"
    argv = ["evaluate", str(model_dir), "--adapter", str(tmp_path / "adapter"), "--perplexity", str(txt)]
    assert main(argv + ["--seq-len", "64", "-o", str(out), "-q"]) == 0
    got = json.loads(out.read_text())["results"]["perplexity"]["perplexity"]
    assert_close(got, want, torch.float32, 256)  # exp of a mean over the tokens, summed in another order
    assert abs(got - base_ppl) > 1e-3 * base_ppl
