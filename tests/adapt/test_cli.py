"""`sqft finetune` → `sqft extract` → `sqft merge` end to end on tiny offline models, and refusals (exit 2)."""

import json
import logging

import pytest
import torch

from sqft.cli import main
from sqft.loading import load_model
from sqft.quantize.format import save_gptq_model
from tests.adapt.helpers import sparse_int4_model, sparse_model, tokens
from tests.conftest import CORPUS, char_tokenizer

FAST = (
    "--max-steps 3 --batch-size 2 --micro-batch-size 2 --warmup-steps 0 --cutoff 96 --r-max 8 --ranks 8 4 "
    "--alpha 16 --lr 1e-2 -q"
).split()


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text(
        "".join(json.dumps({"question": s[:30], "answer": s[30:80]}) + "\n" for s in CORPUS.split(". ")[:8])
    )
    return p


@pytest.fixture
def sparse_dir(tmp_path):
    d = tmp_path / "sparse"
    sparse_model().save_pretrained(d)
    char_tokenizer().save_pretrained(d)
    return d


@pytest.fixture
def int4_dir(tmp_path):
    d = tmp_path / "int4"
    save_gptq_model(sparse_int4_model(), char_tokenizer(), d)
    return d


def test_sparsepeft_finetune_extract_merge(tmp_path, data, sparse_dir):
    ad, sub, merged = tmp_path / "ad", tmp_path / "sub", tmp_path / "merged"
    assert (
        main(
            ["finetune", str(sparse_dir), "--data", str(data), "--sparse-adapter", "--output", str(ad)] + FAST
        )
        == 0
    )
    stats = json.loads((ad / "nls_stats.json").read_text())
    assert stats["steps"] == 3 and all(sum(c.values()) == 3 for c in stats["counts"].values())
    assert main(["extract", str(ad), "--config", "minimal", "--output", str(sub)]) == 0
    assert json.loads((sub / "configuration.json").read_text()) == {
        f"model.layers.{i}.qkv": 4 for i in range(2)
    }
    assert main(["merge", str(sparse_dir), str(ad), "--config", "minimal", "--output", str(merged)]) == 0
    fig = json.loads((merged / "sqft.json").read_text())["figures"]
    assert fig["kind"] == "sparse" and fig["probe_max_abs_logit_diff"] == 0.0 and fig["checks"]["zeros_kept"]
    base, out = load_model(sparse_dir), load_model(merged)
    for (n, p), q in zip(base.named_parameters(), out.parameters()):
        if "layers" in n and p.dim() == 2:
            assert (q[p == 0] == 0).all(), n
    # merged from the sub-adapter == merged from the super-adapter at the same configuration
    merged2 = tmp_path / "merged2"
    assert main(["merge", str(sparse_dir), str(sub), "--output", str(merged2)]) == 0
    x = tokens()
    assert torch.equal(load_model(merged2)(x).logits, out(x).logits)


@pytest.mark.slow
def test_qa_finetune_merge_to_int4(tmp_path, data, int4_dir):
    ad, merged = tmp_path / "ad", tmp_path / "merged"
    args = [
        "finetune",
        str(int4_dir),
        "--data",
        str(data),
        "--pipeline",
        "sqft-qa-sparsepeft",
        "--output",
        str(ad),
    ]
    assert main(args + FAST) == 0
    assert main(["merge", str(int4_dir), str(ad), "--output", str(merged), "--config", "maximal"]) == 0
    fig = json.loads((merged / "sqft.json").read_text())["figures"]
    assert fig["kind"] == "int4" and fig["codes_equal_eval"] and fig["probe_max_abs_logit_diff"] == 0.0
    from sqft.adapt import load_adapter

    trained = load_adapter(load_model(int4_dir), ad)  # default merge config "maximal" = all at r_max
    x = tokens()
    assert torch.equal(load_model(merged)(x).logits, trained(x).logits)


def _qa_adapter_on_fp16_base(tmp_path, data, sparse_dir, qa_base: str):
    """A QA adapter trained on the fp16 sparse model with a GPTQ-like INT4 model (codes that depart from
    round-to-nearest); returns the adapter and the INT4 model directories."""
    from tests.adapt.helpers import nudge_codes_

    int4_dir, ad = tmp_path / "int4", tmp_path / "ad"
    save_gptq_model(nudge_codes_(sparse_int4_model()), char_tokenizer(), int4_dir)
    qa = ["--pipeline", "sqft-qa-sparsepeft", "--qa-base", qa_base, "--qa-int4", str(int4_dir)]
    assert main(["finetune", str(sparse_dir), "--data", str(data), "--output", str(ad)] + qa + FAST) == 0
    return ad, int4_dir


@pytest.mark.parametrize("qa_base", ["fp16", "gptq-residual"])
def test_qa_on_the_fp16_base_merges_into_the_int4_model(tmp_path, data, sparse_dir, qa_base):
    """qa_base fp16 / gptq-residual: train on the fp16 sparse weights (gptq-residual: moved into the bins of the
    INT4 model's codes) with the INT4 model's (s, z); merge gives one INT4 model = the trained model."""
    from sqft.adapt import load_adapter
    from sqft.adapt.export import read_adapt_config
    from sqft.inference import load_for_inference
    from sqft.merge import prepare_qa_fp16_base
    from sqft.modeling.structure import find_target_linears
    from tests.adapt.helpers import ALL_LINEARS

    ad, int4_dir = _qa_adapter_on_fp16_base(tmp_path, data, sparse_dir, qa_base)
    merged, other_int4 = tmp_path / "merged", tmp_path / "other-int4"
    assert main(["merge", str(sparse_dir), str(ad), "--output", str(merged)]) == 2  # no INT4 model
    save_gptq_model(sparse_int4_model(), char_tokenizer(), other_int4)  # not the one it trained with
    assert (
        main(["merge", str(sparse_dir), str(ad), "--qa-int4", str(other_int4), "--output", str(merged)]) == 2
    )
    assert not merged.exists()
    args = ["merge", str(sparse_dir), str(ad), "--qa-int4", str(int4_dir), "--config", "maximal"]
    assert main(args + ["--output", str(merged)]) == 0
    fig = json.loads((merged / "sqft.json").read_text())["figures"]
    assert fig["kind"] == "int4" and fig["codes_equal_eval"] and fig["probe_max_abs_logit_diff"] == 0.0
    assert fig["provenance"]["qa_int4_checked"]
    out, int4 = load_model(merged), load_model(int4_dir)
    sparse_w = {n: m.weight for n, m in find_target_linears(load_model(sparse_dir), ALL_LINEARS).items()}
    for name, layer in find_target_linears(out, ALL_LINEARS).items():
        q, s, z = layer.codes()
        q4, s4, z4 = int4.get_submodule(name).codes()
        assert torch.equal(s, s4) and torch.equal(z, z4), name  # the INT4 model's grid, unchanged
        if name.endswith(("o_proj", "gate_proj")):  # no adapter: the INT4 model's codes themselves
            assert torch.equal(q, q4), name
        z_full = z.repeat_interleave(q.shape[1] // z.shape[1], 1)
        pruned = sparse_w[name] == 0
        assert torch.equal(q[pruned], z_full[pruned]), name  # every pruned weight dequantizes to exactly 0
    # the merged model = the trained model's eval forward, on the base prepared from the INT4 model
    trained = load_model(sparse_dir)
    prepare_qa_fp16_base(trained, read_adapt_config(ad), int4, str(int4_dir))
    trained = load_adapter(trained, ad)
    x = tokens()
    assert torch.equal(out(x).logits, trained.eval()(x).logits)
    # and so does `generate` / `bench`'s loader, given the INT4 model (the exact path, without the bf16 kernels)
    lm = load_for_inference(sparse_dir, ad, int4_kernels=False, qa_int4=int4_dir)
    assert torch.equal(out(x).logits, lm.model(x).logits)


def test_a_gptq_residual_adapter_runs_only_with_its_int4_model(tmp_path, data, sparse_dir, caplog):
    """Its base exists only with the INT4 model's codes: evaluate, generate and search refuse to run it without
    --qa-int4, and run it with; search's merge of the maximal configuration is the trained model."""
    from sqft.inference import load_for_inference

    ad, int4_dir = _qa_adapter_on_fp16_base(tmp_path, data, sparse_dir, "gptq-residual")
    text, ev_out, found = tmp_path / "text.txt", tmp_path / "ev", tmp_path / "search"
    text.write_text("the cat sat on the mat. " * 8)
    ev = ["evaluate", str(sparse_dir), "--adapter", str(ad), "--task", "perplexity", "--data", str(text)]
    gen = ["generate", str(sparse_dir), "--adapter", str(ad), "--prompt", "ab", "--max-new-tokens", "3", "-q"]
    search = ["search", str(ad), "--base", str(sparse_dir), "--strategy", "maximal", "-q"]
    with_int4 = ["--qa-int4", str(int4_dir)]
    assert main(ev + ["--output", str(ev_out)]) == 2 and main(ev + with_int4 + ["--output", str(ev_out)]) == 0
    assert main(gen) == 2 and main(gen + with_int4) == 0
    assert main(search + ["--output", str(found)]) == 2 and not found.exists()
    assert main(search + with_int4 + ["--output", str(found)]) == 0
    x = tokens()
    trained = load_for_inference(sparse_dir, ad, int4_kernels=False, qa_int4=int4_dir).model
    assert torch.equal(load_model(found / "merged")(x).logits, trained(x).logits)
    # its base was moved into the bins in fp32: another dtype runs a base a few ulps apart, and says so
    assert json.loads((ad / "elastic_adapter_config.json").read_text())["base_dtype"] == "float32"
    with caplog.at_level(logging.WARNING, logger="sqft.merge"):
        load_for_inference(sparse_dir, ad, dtype="bfloat16", int4_kernels=False, qa_int4=int4_dir)
    assert "trained on its base in float32, which is loaded here in bfloat16" in caplog.text


@pytest.mark.parametrize("command", ["evaluate", "generate"])
def test_qa_int4_without_an_adapter_is_refused(tmp_path, sparse_dir, int4_dir, command, capsys):
    out = tmp_path / "out"
    args = {
        "evaluate": ["--task", "perplexity", "--data", str(sparse_dir / "config.json"), "--output", str(out)],
        "generate": ["--prompt", "ab", "--max-new-tokens", "2"],
    }[command]
    assert main([command, str(sparse_dir), "--qa-int4", str(int4_dir)] + args) == 2
    assert "goes with a quantization-aware adapter" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    "extra,msg",
    [
        (["--ranks", "16", "8", "--r-max", "32"], "maximum 16"),  # --r-max defaults to max(--ranks)
        (["--r-max", "0"], "positive"),
        (["--targets", "q_prj"], "match no linear"),
        (["--quantization-aware", "--sparse-adapter"], "INT4"),
        (["--format", "custom"], "template is needed"),
        (["--format", "mc"], "line 1: missing field 'query'"),
    ],
)
def test_finetune_refusals_exit_2(tmp_path, data, sparse_dir, extra, msg, capsys):
    args = [
        "finetune",
        str(sparse_dir),
        "--data",
        str(data),
        "--output",
        str(tmp_path / "o"),
        "-q",
        "--max-steps",
        "1",
    ]
    assert main(args + extra) == 2
    assert msg in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_existing_output_and_merge_refusals(tmp_path, data, sparse_dir, int4_dir, capsys):
    (tmp_path / "o").mkdir()
    assert main(["finetune", str(sparse_dir), "--data", str(data), "--output", str(tmp_path / "o")]) == 2
    assert "already exists" in capsys.readouterr().err
    ad = tmp_path / "dense_ad"
    assert (
        main(
            ["finetune", str(sparse_dir), "--data", str(data), "--adapter", "lora", "--output", str(ad)]
            + FAST
        )
        == 0
    )
    assert main(["merge", str(sparse_dir), str(ad), "--output", str(tmp_path / "m")]) == 2
    assert "--allow-densify" in capsys.readouterr().err
    assert main(["merge", str(int4_dir), str(ad), "--output", str(tmp_path / "m")]) == 2
    assert "was trained on" in capsys.readouterr().err  # provenance: not this base
    assert main(["merge", str(int4_dir), str(ad), "--output", str(tmp_path / "m"), "--force"]) == 2
    assert "precision mismatch" in capsys.readouterr().err
    assert main(["merge", str(sparse_dir), str(ad), "--output", str(tmp_path / "m"), "--allow-densify"]) == 0


def test_finetune_custom_templates_limit_and_mask_prompt(tmp_path, sparse_dir, capsys, caplog):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n" + json.dumps({"prompt": "p2"}) + "\n")
    out = ["--output", str(tmp_path / "o"), "-q"]
    assert main(["finetune", str(sparse_dir), "--data", str(bad)] + out) == 2
    assert "bad.jsonl line 2: missing field 'response'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    custom = tmp_path / "c.jsonl"
    custom.write_text(
        "".join(json.dumps({"q": s[:30], "a": s[30:60]}) + "\n" for s in CORPUS.split(". ")[:6])
    )
    ad = tmp_path / "ad"
    args = ["finetune", str(sparse_dir), "--data", str(custom), "--template", "User: {q}\nBot:"]
    args += [
        "--response-template",
        " {a}",
        "--data-limit",
        "4",
        "--mask-prompt",
        "--output",
        str(ad),
        "--fsdp",
    ]
    assert main(args + FAST) == 0
    assert "accelerate runs FSDP on GPUs only" in caplog.text  # one CPU process: nothing to shard
    manifest = json.loads((ad / "sqft.json").read_text())
    assert manifest["figures"]["examples"] == 4 and manifest["figures"]["steps"] == 3
    assert manifest["figures"]["distributed"] == "none" and manifest["config"]["train"]["fsdp"] is True
    assert manifest["config"]["train"]["mask_prompt"] is True and manifest["config"]["data_format"] == "auto"
