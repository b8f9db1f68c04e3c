import json

import pytest

from sqft.errors import SqftError
from sqft.evaluate.intervals import wilson_interval
from sqft.report.collect import collect_row, collect_rows, lineage, primary_metrics
from tests.report.helpers import ADAPTER_GSM8K, GSM8K_ITEMS, GiB, MiB, make_artifact, pipeline_artifacts


def test_adapter_inherits_sparsity_and_bits_from_its_base(tmp_path):
    a = pipeline_artifacts(tmp_path)
    row = collect_row(a["adapter"])
    assert (row.label, row.stage, row.pipeline) == ("adapter", "finetune", "shears")
    assert row.sparsity == 0.5012 and row.bits == 16
    assert row.size_bytes == 50 * MiB + 2 * GiB  # adapter-only: its base is needed to run it
    assert (row.trainable_parameters, row.train_seconds, row.train_peak_memory_bytes) == (
        1234567,
        3600.0,
        8 * GiB,
    )
    assert row.tasks == {"gsm8k": {"flexible_match": 0.525}, "mc": {"acc": 0.32, "acc_norm": 0.34}}
    assert row.n == {"gsm8k": 40, "mc": 50}
    # none stored: Wilson from value and n (results written before intervals were)
    assert row.intervals == {
        "gsm8k": {"flexible_match": wilson_interval(21, 40)},
        "mc": {"acc": wilson_interval(16, 50), "acc_norm": wilson_interval(17, 50)},
    }
    assert row.outcomes == {
        "gsm8k": {"correct": {"flexible_match": ADAPTER_GSM8K}, "items_sha256": GSM8K_ITEMS}
    }


def test_merged_model_inherits_finetuning_cost_not_base_stage_time(tmp_path):
    a = pipeline_artifacts(tmp_path)
    merged, sparse = collect_row(a["merged"]), collect_row(a["sparse"])
    assert merged.pipeline == "sqft-sparsepeft" and merged.size_bytes == 2 * GiB
    assert merged.train_seconds == 3600.0 and merged.trainable_parameters == 1234567
    assert merged.tasks["wiki"] == {"perplexity": 12.3456}
    assert merged.intervals == {"gsm8k": {"flexible_match": (0.352, 0.648)}}  # the stored one; none for ppl
    assert merged.n == {"gsm8k": 40, "wiki": 1000}
    # the sparsify stage's own 12 s is not a fine-tuning time
    assert sparse.train_seconds is None and sparse.train_peak_memory_bytes is None


def test_search_artifact_has_rank_config_and_space(tmp_path):
    row = collect_row(pipeline_artifacts(tmp_path)["search"])
    assert row.rank_config == {f"model.layers.{i}.self_attn": r for i, r in enumerate([32, 24, 16, 24])}
    assert row.rank_space is not None and set(row.rank_space) == set(row.rank_config)
    assert row.pipeline == "shears" and row.train_seconds == 3600.0


def test_missing_fields_stay_none(tmp_path):
    bare = pipeline_artifacts(tmp_path)["bare"]
    row = collect_row(bare)
    assert row.stage is None and row.tasks == {}
    assert [row.sparsity, row.bits, row.trainable_parameters, row.train_seconds] == [None] * 4
    # a plain checkpoint has no recorded size: it is measured
    assert row.size_bytes == (bare / "config.json").stat().st_size == 23
    assert collect_row(make_artifact(tmp_path / "s", "search")).size_bytes is None


def test_finetune_stage_generic_figures_count_as_training(tmp_path):
    d = make_artifact(tmp_path / "ft", "finetune", figures={"seconds": 42.0, "peak_memory_bytes": 7})
    row = collect_row(d)
    assert (row.train_seconds, row.train_peak_memory_bytes) == (42.0, 7)


def test_lineage_stops_at_cycles_and_hub_ids(tmp_path):
    a = make_artifact(tmp_path / "a", "finetune", parent=tmp_path / "b")
    make_artifact(tmp_path / "b", "sparsify", parent=tmp_path / "a")
    assert [x.path.name for x in lineage(a)] == ["a", "b"]
    hub = make_artifact(tmp_path / "h", "sparsify", parent="meta-llama/Meta-Llama-3-8B")
    assert len(lineage(hub)) == 1


def test_primary_metric_choice():
    assert primary_metrics({"strict_match": 0.1, "flexible_match": 0.2, "n": 3}) == {"flexible_match": 0.2}
    assert primary_metrics({"accuracy": 0.7, "n": 3}) == {"accuracy": 0.7}
    assert primary_metrics({"perplexity": 9.5, "nll": 2.25}) == {"perplexity": 9.5}
    assert primary_metrics({"n": 3, "outputs": []}) == {}


def test_results_wrapper_optional_and_merged(tmp_path):
    d = make_artifact(
        tmp_path / "m",
        "merge",
        files={
            "results.json": {"results": {"a": {"acc": 0.5}}},
            "results_math.json": {"b": {"accuracy": 0.25}},
        },
    )
    assert collect_row(d).tasks == {"a": {"acc": 0.5}, "b": {"accuracy": 0.25}}


def test_labels_disambiguate_equal_directory_names(tmp_path):
    x = make_artifact(tmp_path / "run1" / "final", "merge")
    y = make_artifact(tmp_path / "run2" / "final", "merge")
    assert [r.label for r in collect_rows([x, y])] == ["run1/final", "run2/final"]


@pytest.mark.parametrize("kind", ["missing", "file", "empty_dir"])
def test_non_artifact_is_a_clear_error(tmp_path, kind):
    p = tmp_path / "x"
    if kind == "file":
        p.write_text("hello")
    elif kind == "empty_dir":
        p.mkdir()
        (p / "notes.txt").write_text("hi")
    with pytest.raises(SqftError, match="does not exist|not an artifact"):
        collect_rows([p])


def test_damaged_manifest_is_a_clear_error(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "sqft.json").write_text("{not json")
    with pytest.raises(SqftError, match="not valid JSON"):
        collect_rows([d])
    (d / "sqft.json").write_text(json.dumps([1, 2]))
    with pytest.raises(SqftError, match="JSON object"):
        collect_rows([d])
