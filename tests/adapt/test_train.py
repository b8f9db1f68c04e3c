"""Training with HF Trainer: each pipeline learns, NLS statistics, resume, gradient checkpointing."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from sqft.adapt import AdaptConfig, TrainConfig, adapter_layers
from sqft.adapt.recompute import float_merged, int4_merged_t
from sqft.adapt.train import CHECKPOINT_FILE, finetune
from sqft.data import TrainingExample
from sqft.errors import SqftError
from sqft.quantize.qlinear import dequantize_t
from tests.adapt.helpers import sparse_int4_model, sparse_model
from tests.conftest import CORPUS, char_tokenizer, tiny_llama
from tests.tolerance import assert_close

RECORDS = [(f"Q: {s[:30]}\nA:", s[30:90]) for s in CORPUS.split(". ")[:16]]


def _train(make, tmp_path, steps=6, examples=RECORDS, **kw):
    adapt = AdaptConfig.for_pipeline(
        kw.pop("pipeline", "lora"), r_max=8, ranks=(8, 6, 4), alpha=16, dropout=0.0
    )
    train = TrainConfig(
        batch_size=4,
        micro_batch_size=2,
        warmup_steps=0,
        max_steps=steps,
        learning_rate=2e-2,
        logging_steps=1,
        cutoff=48,
        **kw,
    )
    return finetune(make(), char_tokenizer(), examples, adapt, train, tmp_path / "work", progress=False)


@pytest.mark.parametrize(
    "make,pipeline",
    [
        (tiny_llama, "lora"),
        (sparse_model, "shears"),
        (sparse_int4_model, "sqft"),
        (sparse_model, "sqft-sparsepeft"),
        (sparse_int4_model, "sqft-qa-sparsepeft"),
    ],
)
def test_every_pipeline_lowers_the_training_loss(tmp_path, make, pipeline):
    res = _train(make, tmp_path, pipeline=pipeline)
    f = res.figures
    assert f["steps"] == 6 and f["loss_last_logged"] < f["loss_first_logged"] - 0.3, f
    assert res.stats.steps == 6
    for g, c in res.stats.to_json()["counts"].items():
        assert sum(c.values()) == 6, g
    trained = [m for m in adapter_layers(res.model).values() if m.lora_B.abs().sum() > 0]
    assert len(trained) == 10


def test_training_is_reproducible_and_resumes_exactly(tmp_path):
    a = _train(tiny_llama, tmp_path / "a", steps=4)
    b = _train(tiny_llama, tmp_path / "c", steps=4, save_steps=2)  # same run, with checkpoints
    for (n, la), lb in zip(adapter_layers(a.model).items(), adapter_layers(b.model).values()):
        assert torch.equal(la.lora_B, lb.lora_B), n
    assert a.stats.to_json() == b.stats.to_json()
    ckpt = tmp_path / "c" / "work" / "checkpoint-4"
    assert ckpt.is_dir() and json.loads((ckpt / "nls_stats.json").read_text())["steps"] == 4
    # adapter-only checkpoints: the A/B tensors of every adapter layer, and no copy of the frozen base
    saved = load_file(ckpt / CHECKPOINT_FILE)
    assert set(saved) == {f"{n}.{w}" for n in adapter_layers(b.model) for w in ("lora_A", "lora_B")}
    assert not list(ckpt.glob("model*.safetensors")) and not list(ckpt.glob("*.bin"))
    shutil.rmtree(ckpt)  # as if interrupted after checkpoint-2
    c = _train(tiny_llama, tmp_path / "c", steps=4, save_steps=2)
    assert c.figures["resumed_from"].endswith("checkpoint-2")
    for (n, la), lc in zip(adapter_layers(a.model).items(), adapter_layers(c.model).values()):
        assert_close(la.lora_B, lc.lora_B, torch.float32, 64, msg=n)
    assert c.stats.to_json()["counts"] == a.stats.to_json()["counts"]


@pytest.mark.slow
def test_gradient_checkpointing_training_matches(tmp_path):
    a = _train(sparse_model, tmp_path / "a", steps=3, pipeline="sqft-sparsepeft")
    b = _train(sparse_model, tmp_path / "b", steps=3, pipeline="sqft-sparsepeft", gradient_checkpointing=True)
    for (n, la), lb in zip(adapter_layers(a.model).items(), adapter_layers(b.model).values()):
        assert_close(la.lora_B, lb.lora_B, torch.float32, 64, msg=n)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("g++") is None, reason="needs a C++ compiler")
@pytest.mark.parametrize(
    "make,pipeline,n_fusable",
    [(sparse_int4_model, "sqft-qa-sparsepeft", 10 + 14), (sparse_model, "sqft-sparsepeft", 10)],
)
def test_fused_kernels_train_the_same_adapter(tmp_path, make, pipeline, n_fusable):
    a = _train(make, tmp_path / "a", steps=3, pipeline=pipeline, fused=False)
    b = _train(make, tmp_path / "b", steps=3, pipeline=pipeline, fused=True)
    assert (a.figures["fused_layers"], b.figures["fused_layers"]) == (
        0,
        n_fusable,
    )  # adapters (+ INT4 layers)
    fusable = [m for m in b.model.modules() if hasattr(m, "fused")]
    assert len(fusable) == n_fusable and not any(m.fused for m in fusable)  # switched back after training
    assert not any(
        f.failed for f in (float_merged, int4_merged_t, dequantize_t)
    )  # every layer shape ran compiled
    for (n, la), lb in zip(adapter_layers(a.model).items(), adapter_layers(b.model).values()):
        assert_close(la.lora_B, lb.lora_B, torch.float32, 64, msg=n)
        assert la.lora_B.abs().sum() > 0, n


def test_bf16_mixed_precision_trains(tmp_path):
    res = _train(sparse_model, tmp_path, steps=4, pipeline="sqft-sparsepeft", mixed_precision="bf16")
    assert res.figures["loss_last_logged"] < res.figures["loss_first_logged"]
    assert all(m.lora_A.dtype == torch.float32 for m in adapter_layers(res.model).values())  # fp32 master


def test_whole_sequence_loss_by_default_and_data_errors_leave_the_model_untouched(tmp_path):
    assert TrainConfig().mask_prompt is False  # the paper trains on prompt + response
    prompt_only = [TrainingExample("x" * 60, "y"), "a plain text example", ("Q: 2+2?\nA:", " 4")]
    res = _train(tiny_llama, tmp_path / "a", steps=2, examples=prompt_only)  # cutoff 48 < the first prompt
    assert res.figures["steps"] == 2 and res.train.mask_prompt is False
    model = tiny_llama()
    adapt = AdaptConfig.for_pipeline("lora", r_max=8, ranks=(8,), alpha=16)
    masked = TrainConfig(cutoff=48, mask_prompt=True)
    with pytest.raises(SqftError, match="cutoff"):  # only prompt tokens left: nothing to learn
        finetune(model, char_tokenizer(), prompt_only[:1], adapt, masked, tmp_path / "b", progress=False)
    with pytest.raises(SqftError, match="training item 1 is a int"):
        finetune(model, char_tokenizer(), ["ok", 3], adapt, masked, tmp_path / "b", progress=False)
    assert adapter_layers(model) == {}


def test_a_foreign_checkpoint_is_refused_not_half_loaded(tmp_path):
    ckpt = tmp_path / "work" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"")  # another tool's full-model checkpoint
    with pytest.raises(SqftError, match="adapter_state.safetensors.*delete it"):
        _train(tiny_llama, tmp_path, steps=4, save_steps=2)
