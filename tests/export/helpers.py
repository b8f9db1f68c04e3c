"""Tiny models for the export tests: a byte-level BPE tokenizer (what GGUF's `gpt2` tokenizer model holds) and
tiny Llamas, dense, sparse or INT4, all built offline."""

from __future__ import annotations

import torch

from tests.conftest import CORPUS, tiny_llama

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0-3, as tiny_llama's bos/eos/pad ids expect
CHAT_TEMPLATE = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"


def bpe_tokenizer(vocab_size: int = 320):
    """A GPT-2-style byte-level BPE tokenizer trained on the test corpus (deterministic, no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def bpe_llama(tokenizer, **kw):
    """A tiny Llama whose vocabulary is the tokenizer's."""
    return tiny_llama(vocab=len(tokenizer), **kw)


def save_bpe_llama(path):
    """A tiny Llama and its byte-level BPE tokenizer saved to `path` (what a GGUF export needs); `path`."""
    tok = bpe_tokenizer()
    bpe_llama(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def int4_llama(
    tokenizer, group_size: int = 32, sym: bool = False, sparsity: float = 0.0, bits: int = 4, **kw
):
    """A tiny Llama quantized to INT4 (or `bits`) with RTN (QuantLinear layers), optionally pruned first."""
    from sqft.quantize.api import QuantizeConfig, quantize

    model = bpe_llama(tokenizer, **kw)
    if sparsity:
        prune_magnitude(model, sparsity)
    quantize(model, QuantizeConfig(method="rtn", bits=bits, group_size=group_size, sym=sym), None, quiet=True)
    return model.eval()


@torch.no_grad()
def prune_magnitude(model, sparsity: float) -> None:
    from sqft.sparsify.api import SparsifyConfig, sparsify

    sparsify(model, SparsifyConfig(method="magnitude", sparsity=sparsity), None, quiet=True)
