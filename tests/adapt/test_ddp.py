"""Two-process DDP (gloo, CPU) gives the same adapter as one process with the same global batch."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import CORPUS, char_tokenizer, tiny_llama
from tests.tolerance import assert_close


def _free_port() -> int:
    """A port nothing listens on now (a fixed port collides with a previous run still in TIME_WAIT)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ARGS = (
    "--data-limit 16 --max-steps 3 --batch-size 4 --micro-batch-size 2 --warmup-steps 0 --dropout 0 --r-max 8 "
    "--ranks 8 4 --alpha 16 --lr 1e-2 --cutoff 64 -q"
).split()


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    model_dir = tmp_path / "m"
    tiny_llama().save_pretrained(model_dir)
    char_tokenizer().save_pretrained(model_dir)
    data = tmp_path / "d.jsonl"  # equal-length records: per-process token means average to the global mean
    text = CORPUS.replace("\n", " ")
    data.write_text("".join(json.dumps({"text": text[i * 40 : i * 40 + 40]}) + "\n" for i in range(16)))
    sqft = shutil.which("sqft")
    assert sqft is not None
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = ["finetune", str(model_dir), "--data", str(data), "--output"]
    # single process: micro-batch 2 with 2 accumulation steps = global batch 4
    subprocess.run([sys.executable, sqft] + one + [str(tmp_path / "single")] + ARGS, check=True, env=env)
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
    ]
    subprocess.run(torchrun + [sqft] + one + [str(tmp_path / "ddp")] + ARGS, check=True, env=env, timeout=300)
    a = load_file(str(tmp_path / "single" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "ddp" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    moved = 0
    for k in a:
        assert_close(a[k], b[k], torch.float32, 1024, msg=k)  # gradients all-reduced: other sums, other order
        moved += int(k.endswith("lora_B.weight") and a[k].abs().sum() > 0)
    assert moved == 10
    sa = json.loads((tmp_path / "single" / "nls_stats.json").read_text())
    sb = json.loads((tmp_path / "ddp" / "nls_stats.json").read_text())
    assert sa["counts"] == sb["counts"]
    figures = json.loads((tmp_path / "ddp" / "sqft.json").read_text())["figures"]
    assert (figures["world_size"], figures["distributed"]) == (2, "ddp")
