"""The search over real sqft adapters on a tiny Llama: ranks switch in place and change the score."""

import pytest
import torch

from sqft.data import TrainingExample
from sqft.evaluate.proxy import make_score_fn, mean_token_loss
from sqft.search.hill_climbing import CachedScorer, HillClimbingConfig, hill_climb
from sqft.search.space import SearchSpace
from tests.conftest import CORPUS

adapt = pytest.importorskip("sqft.adapt.inject")


@pytest.fixture
def elastic(model):
    from sqft.adapt.config import AdaptConfig

    cfg = AdaptConfig(adapter="nls", r_max=8, ranks=(8, 6, 4, 2), alpha=16.0, dropout=0.0)
    adapt.inject_adapters(model, cfg, seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a "trained" adapter: B ≠ 0 so every rank gives a different model
        for layer in adapt.adapter_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * 0.05)
    spaces = {g: list(cfg.ranks) for g in adapt.groups_of(model)}
    return model.eval(), SearchSpace(spaces)


def test_rank_switching_changes_the_loss_and_is_reversible(elastic, tokenizer):
    model, space = elastic
    proxy = [TrainingExample("", line) for line in CORPUS.splitlines()[:2]]
    score = make_score_fn(model, tokenizer, proxy, "loss", adapt.set_active_ranks)
    a, b = score(space.maximal()), score(space.minimal())
    assert a != b
    assert score(space.maximal()) == a  # switching back gives exactly the same model
    assert -a == pytest.approx(mean_token_loss(model, tokenizer, proxy))


def test_hill_climbing_on_a_tiny_model_is_never_worse_than_median(elastic, tokenizer):
    model, space = elastic
    proxy = [TrainingExample("", line) for line in CORPUS.splitlines()[:2]]
    scorer = CachedScorer(space, make_score_fn(model, tokenizer, proxy, "loss", adapt.set_active_ranks))
    res = hill_climb(
        space, scorer, HillClimbingConfig(turns=3, neighbours=2, step=1, budget=6, seed=0), quiet=True
    )
    assert scorer.calls == len(res.evaluations) <= 6
    assert res.evaluations[0].config == space.median()
    assert res.best_score == max(e.score for e in res.evaluations) >= res.start_score


def _save_trained_adapter(model, directory):
    """Inject an NLS adapter, make B ≠ 0 (as if trained), save it with made-up NLS statistics."""
    from sqft.adapt import AdaptConfig, save_adapter
    from sqft.adapt.nls import NLSStats

    cfg = AdaptConfig(adapter="nls", r_max=8, ranks=(8, 6, 4, 2), alpha=16.0, dropout=0.0)
    adapt.inject_adapters(model, cfg, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in adapt.adapter_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * 0.05)
    spaces = {g: list(cfg.ranks) for g in adapt.groups_of(model)}
    stats = NLSStats(spaces)
    stats.record({g: 4 for g in spaces}, 1.0)
    save_adapter(model, directory, stats=stats)
    return SearchSpace(spaces)


def test_cli_search_end_to_end(tmp_path, model_dir, tokenizer):
    import json

    from sqft.adapt import load_adapter
    from sqft.cli import main
    from sqft.loading import load_model
    from sqft.search.space import load_config

    space = _save_trained_adapter(load_model(model_dir), tmp_path / "adapter")
    val = tmp_path / "val.jsonl"
    val.write_text(
        "".join(json.dumps({"question": q, "answer": f"{q} #### 1"}) + "\n" for q in CORPUS.split(". ")[:6])
    )
    out = tmp_path / "search"
    args = ["search", str(tmp_path / "adapter"), "--base", str(model_dir), "--validation", str(val), "-q"]
    args += ["--budget", "5", "--turns", "3", "--neighbours", "2"]
    args += ["--proxy-samples", "4", "--output", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "search.json").read_text())
    config = load_config(out / "configuration.json", space)
    assert summary["metric"] == "loss" and len(summary["validation"]["proxy_indices"]) == 4
    assert summary["evaluations"][0]["config"] == space.median() and len(summary["evaluations"]) == 5
    assert summary["score"] == max(e["score"] for e in summary["evaluations"]) >= summary["start_score"]
    assert (out / "sqft.json").is_file() and (out / "rank_distribution.png").is_file()
    # the extracted sub-adapter, loaded on a fresh base, computes exactly the searched configuration's score
    sub = load_adapter(load_model(model_dir), out / "adapter")
    from sqft.search.validation import load_validation

    _, items = load_validation(val)
    proxy = [items[i] for i in summary["validation"]["proxy_indices"]]
    assert -mean_token_loss(sub, tokenizer, proxy) == pytest.approx(summary["score"], abs=1e-5)
    assert {n: layer.r_max for n, layer in adapt.adapter_layers(sub).items() if "q_proj" in n} == {
        f"model.layers.{i}.self_attn.q_proj": config[f"model.layers.{i}.qkv"] for i in range(2)
    }
    # like `sqft extract`'s, the sub-adapter's manifest names the super-adapter and the configuration
    manifest = json.loads((out / "adapter" / "sqft.json").read_text())
    assert manifest["parent"] == str(tmp_path / "adapter") and manifest["config"]["configuration"] == config
    # heuristics from the saved statistics, no validation: the configuration only
    out2 = tmp_path / "mf"
    args = ["search", str(tmp_path / "adapter"), "--base", str(model_dir), "--strategy", "most-frequent"]
    assert main(args + ["--no-extract", "-q", "--output", str(out2)]) == 0
    assert load_config(out2 / "configuration.json", space) == {g: 4 for g in space.groups}


def test_sparse_adapter_search_writes_the_merged_model(tmp_path, tokenizer):
    """SparsePEFT: the merged model of the chosen configuration is written, stays sparse, and scores the same."""
    import json

    from sqft.adapt import AdaptConfig, save_adapter
    from sqft.cli import main
    from sqft.loading import load_model
    from sqft.search.validation import load_validation
    from tests.conftest import tiny_llama

    base = tiny_llama()
    with torch.no_grad():  # 50% sparse targets
        for name, p in base.named_parameters():
            if "layers" in name and p.dim() == 2:
                p.mul_(torch.rand(p.shape, generator=torch.Generator().manual_seed(2)) > 0.5)
    base.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    model = load_model(tmp_path / "base")
    cfg = AdaptConfig(adapter="nls", r_max=8, ranks=(8, 4), alpha=16.0, dropout=0.0, sparse_adapter=True)
    adapt.inject_adapters(model, cfg, seed=0)
    with torch.no_grad():
        for layer in adapt.adapter_layers(model).values():
            layer.lora_B.normal_(0, 0.05, generator=torch.Generator().manual_seed(3))
    save_adapter(model, tmp_path / "adapter")
    val = tmp_path / "val.jsonl"
    val.write_text(
        "".join(json.dumps({"question": q, "answer": "#### 1"}) + "\n" for q in CORPUS.split(". ")[:3])
    )
    out = tmp_path / "out"
    args = ["search", str(tmp_path / "adapter"), "--base", str(tmp_path / "base"), "--strategy", "minimal"]
    assert main([*args, "--validation", str(val), "-q", "--output", str(out)]) == 0
    summary = json.loads((out / "search.json").read_text())
    merged = load_model(out / "merged")
    _, proxy = load_validation(val)
    assert -mean_token_loss(merged, tokenizer, proxy) == pytest.approx(summary["score"], abs=1e-4)
    for name, p in merged.named_parameters():  # every pruned weight is still zero
        if "layers" in name and "proj" in name:
            b = dict(base.named_parameters())[name]
            assert torch.equal(p[b == 0], torch.zeros_like(p[b == 0]))
