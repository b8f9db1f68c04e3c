"""Shared fixtures: tiny Llama-family models built from a config and a character tokenizer, all offline."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

CORPUS = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May? Natalia sold 48/2 = 24 clips in May. "
    "Natalia sold 48+24 = 72 clips altogether in April and May. #### 72\n"
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
    "How much did she earn? Weng earns 12/60 = $0.2 per minute. Working 50 minutes, she earned 0.2 x 50 = $10.\n"
) * 8


def char_tokenizer():
    """A character-level fast tokenizer (vocab ≈ 100) with bos/eos/pad/unk, built without any download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    chars = list(string.printable)
    vocab = {t: i for i, t in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_llama(
    num_layers: int = 2, hidden: int = 64, intermediate: int = 128, seed: int = 0, vocab: int = 104
):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    # Random init with std 0.02 gives near-uniform attention; scale weights up so the blocks do real work.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.1)
    return model.eval()


@pytest.fixture
def tokenizer():
    return char_tokenizer()


@pytest.fixture
def model():
    return tiny_llama()


@pytest.fixture
def model_dir(tmp_path, model, tokenizer) -> Path:
    d = tmp_path / "tiny"
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


@pytest.fixture
def calib_file(tmp_path) -> Path:
    p = tmp_path / "calib.txt"
    p.write_text(CORPUS)
    return p


@pytest.fixture
def windows(tokenizer) -> torch.Tensor:
    from sqft.calibration import calibration_windows

    return calibration_windows(tokenizer, [CORPUS], n_samples=8, seq_len=64, seed=0)
