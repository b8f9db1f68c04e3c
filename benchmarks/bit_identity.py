"""Bit identity of the pipeline: tiny offline SparsePEFT and QA-SparsePEFT runs with a fixed seed, then the
sha256 of each merged model's state dict. A refactoring that keeps behaviour keeps every hash.

The runs: SparsePEFT and QA-SparsePEFT on each QA base (fp16, gptq, gptq-dither), each with dropout 0 and 0.1.

    PYTHONPATH=src python benchmarks/bit_identity.py [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import string
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sqft.data.synthetic import generate_splits, write_jsonl
from sqft.pipeline import run_recipe
from sqft.recipe import load_recipe

try:
    from sqft.loading import load_model  # dense and INT4 alike
except ImportError:  # a tree from before sqft.loading, where sqft.modeling loaded INT4 too
    from sqft.modeling import load_model

# (pipeline, qa_base): SparsePEFT, and QA-SparsePEFT on each of its bases
VARIANTS = (
    ("sqft-sparsepeft", None),
    ("sqft-qa-sparsepeft", "fp16"),
    ("sqft-qa-sparsepeft", "gptq-residual"),
    ("sqft-qa-sparsepeft", "gptq"),
    ("sqft-qa-sparsepeft", "gptq-dither"),
)
DROPOUTS = (0.0, 0.1)
CORPUS = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? Natalia sold 48/2 = 24 clips in May. "
    "Natalia sold 48+24 = 72 clips altogether in April and May. #### 72\n"
) * 12


def _tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer (vocab 104), built offline (as tests/conftest.py does)."""
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {t: i for i, t in enumerate(specials + list(string.printable))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def _tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=104,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.1)
    return model.eval()


def _recipe(work: Path, pipeline: str, qa_base: str | None, dropout: float) -> dict:
    section = {"n_samples": 4, "seq_len": 32}
    adapter = {"adapter": "nls", "ranks": [8, 4], "r_max": 8, "alpha": 16, "dropout": dropout}
    if qa_base is not None:
        adapter["qa_base"] = qa_base
    data = {
        "name": f"bit-{pipeline}-{qa_base}-{dropout}",
        "model": str(work / "tiny"),
        "pipeline": pipeline,
        "sparsify": {"method": "wanda", "sparsity": 0.5, "calibration": str(work / "calib.txt"), **section},
        "quantize": {"method": "gptq", "bits": 4, "group_size": 32, **section},
        "finetune": {
            "data": {"source": str(work / "train.jsonl"), "format": "gsm8k"},
            "adapter": adapter,
            "train": {
                "max_steps": 3,
                "batch_size": 4,
                "micro_batch_size": 2,
                "cutoff": 256,
                "warmup_steps": 0,
            },
        },
        "evaluate": {"ppl": {"task": "perplexity", "data": str(work / "calib.txt"), "seq_len": 64}},
    }
    if pipeline != "sqft-qa-sparsepeft":
        del data["quantize"]
    return data


def state_dict_sha256(path: str) -> str:
    """sha256 over the state dict's names, dtypes, shapes and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name, t in sorted(load_model(path).state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="working directory (default: a temporary one)")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="sqft-bit-identity-"))
    work.mkdir(parents=True, exist_ok=True)
    _tiny_model().save_pretrained(work / "tiny")
    _tokenizer().save_pretrained(work / "tiny")
    train, _ = generate_splits(24, 6, seed=0)
    write_jsonl(train, work / "train.jsonl")
    (work / "calib.txt").write_text(CORPUS)
    for (pipeline, qa_base), dropout in itertools.product(VARIANTS, DROPOUTS):
        torch.manual_seed(0)
        recipe = _recipe(work, pipeline, qa_base, dropout)
        path = work / f"{recipe['name']}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        state = run_recipe(load_recipe(path), work / "run", quiet=True)
        print(f"{pipeline} qa_base={qa_base} dropout={dropout}: {state_dict_sha256(state.dirs['merge'])}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
