import pytest

from sqft.errors import SqftError
from sqft.report.latency import (
    LatencyConfig,
    latency_figures,
    measure_artifact,
    model_source,
    time_generation,
)
from tests.report.helpers import make_artifact

FAST = LatencyConfig(new_tokens=3, warmup=0, repeats=2)  # tiny: the timing path, not the numbers


def test_latency_figures_from_median():
    f = latency_figures([0.5, 0.1, 0.2], new_tokens=10)
    assert f["median_seconds"] == 0.2
    assert f["latency_ms_per_token"] == pytest.approx(20.0)
    assert f["tokens_per_second"] == pytest.approx(50.0)


def test_time_generation_counts_exactly_new_tokens(model, tokenizer):
    cfg = LatencyConfig(new_tokens=2, warmup=1, repeats=2)
    f = time_generation(model, tokenizer, cfg)
    assert f["latency_ms_per_token"] > 0
    # throughput and latency come from the same median over exactly new_tokens tokens
    assert f["tokens_per_second"] * f["latency_ms_per_token"] == pytest.approx(1000.0)
    assert f["median_seconds"] * f["tokens_per_second"] == pytest.approx(cfg.new_tokens)


def test_measure_model_directory(model_dir):
    assert model_source(model_dir) == (str(model_dir), None)
    f = measure_artifact(model_dir, FAST)
    assert f is not None and f["tokens_per_second"] > 0


def test_adapter_artifact_is_timed_on_its_base(model_dir, tmp_path):
    from sqft.adapt import AdaptConfig, inject_adapters, save_adapter
    from sqft.loading import load_model

    m = load_model(model_dir)
    inject_adapters(m, AdaptConfig(adapter="lora", r_max=4, alpha=8.0))
    # the adapter lives in a finetune artifact whose parent is the base model directory
    make_artifact(tmp_path / "ft", "finetune", {"pipeline": "shears"}, model_dir)
    save_adapter(m, tmp_path / "ft" / "adapter", base=None)
    assert model_source(tmp_path / "ft") == (str(model_dir), str(tmp_path / "ft" / "adapter"))
    f = measure_artifact(tmp_path / "ft", FAST)
    assert f is not None and f["latency_ms_per_token"] > 0


def test_artifact_without_weights_gives_none(tmp_path):
    d = make_artifact(tmp_path / "x", "search")
    assert model_source(d) is None and measure_artifact(d, FAST) is None


@pytest.mark.parametrize("kw", [{"new_tokens": 0}, {"repeats": 0}, {"warmup": -1}, {"prompt": ""}])
def test_bad_latency_config(kw):
    with pytest.raises(SqftError):
        LatencyConfig(**kw)
