"""A Hugging Face tokenizer as llama.cpp's `tokenizer.*` metadata (byte-level BPE, llama.cpp's `gpt2` model).

llama.cpp does not run a tokenizer.json: it reads the vocabulary, the merges and the special ids, and picks its own
pre-tokenizer (the regex that splits text before BPE) by name, `tokenizer.ggml.pre`. Its converter finds that name
by tokenizing a fixed test text and hashing the ids; `pre_tokenizer_name` does the same with the hashes of the
tokenizers sqft's Llama-family models use, and recognises a plain GPT-2 pre-tokenizer by its structure. A
tokenizer that is neither (or not byte-level BPE, e.g. SentencePiece) is refused: llama.cpp would split text
differently from the model's own tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqft.errors import SqftError

__all__ = ["GGUFVocab", "TOKEN_TYPES", "gguf_vocab", "pre_tokenizer_name"]

# llama.cpp's token types (gguf.TokenType)
TOKEN_TYPES = {"normal": 1, "unknown": 2, "control": 3, "user_defined": 4, "unused": 5}

# llama.cpp's converter test text (convert_hf_to_gguf.py, get_vocab_base_pre): whitespace runs, emoji, digits,
# scripts and contractions, so that different pre-tokenizers give different ids.
CHECK_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 "
    "3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)

# sha256 of str(tokenizer.encode(CHECK_TEXT)) → llama.cpp pre-tokenizer name (values from llama.cpp's converter)
KNOWN_PRE_TOKENIZERS = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM, SmolLM2
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3, 3.1, 3.2
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5, Qwen2, 2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3 family
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",  # GPT-2
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral Nemo
}


@dataclass
class GGUFVocab:
    model: str  # tokenizer.ggml.model
    pre: str  # tokenizer.ggml.pre
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    special_ids: dict[str, int]  # bos / eos / unknown / padding → id
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None


def _spec(tokenizer: Any) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise SqftError(
            f"the tokenizer ({type(tokenizer).__name__}) is not a fast tokenizer: GGUF needs its vocab"
        )
    return json.loads(backend.to_str())


def _byte_level(node: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ByteLevel step of a pre-tokenizer (itself or inside a Sequence), if any."""
    if node is None:
        return None
    if node.get("type") == "ByteLevel":
        return node
    for sub in node.get("pretokenizers") or []:
        if sub.get("type") == "ByteLevel":
            return sub
    return None


def pre_tokenizer_name(tokenizer: Any, spec: dict[str, Any]) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer, found as llama.cpp's converter finds it."""
    ids = tokenizer.encode(CHECK_TEXT)
    digest = hashlib.sha256(str(ids).encode()).hexdigest()
    if digest in KNOWN_PRE_TOKENIZERS:
        return KNOWN_PRE_TOKENIZERS[digest]
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # HF's ByteLevel regex is GPT-2's, which is llama.cpp's 'gpt-2'
    raise SqftError(
        f"llama.cpp has no pre-tokenizer known to match this tokenizer's (check-text hash {digest[:12]}…): "
        "sqft exports the byte-level BPE tokenizers of GPT-2, Llama 3, SmolLM and Qwen2"
    )


def _token_types(spec: dict[str, Any], vocab: dict[str, int], size: int) -> tuple[list[str], list[int]]:
    by_id = {i: t for t, i in vocab.items()}
    added = {a["id"]: a for a in spec.get("added_tokens") or []}
    tokens, types = [], []
    for i in range(size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_TYPES["unused"])
            continue
        tokens.append(by_id[i])
        a = added.get(i)
        kind = "normal" if a is None else ("control" if a.get("special") else "user_defined")
        types.append(TOKEN_TYPES[kind])
    return tokens, types


def _special_ids(tokenizer: Any) -> dict[str, int]:
    out = {}
    for key, attr in (
        ("bos", "bos_token"),
        ("eos", "eos_token"),
        ("unknown", "unk_token"),
        ("padding", "pad_token"),
    ):
        token = getattr(tokenizer, attr, None)
        if token is not None:
            out[key] = int(tokenizer.convert_tokens_to_ids(str(token)))
    return out


def _adds_specials(tokenizer: Any, special: dict[str, int]) -> tuple[bool, bool]:
    """Does encoding add BOS / EOS? Asked of the tokenizer itself: the flag may live in its post-processor
    (Llama 3) rather than in an `add_bos_token` attribute."""
    ids = tokenizer.encode("a")
    bos, eos = special.get("bos"), special.get("eos")
    return bos is not None and ids[:1] == [bos], eos is not None and len(ids) > 1 and ids[-1] == eos


def gguf_vocab(tokenizer: Any, vocab_size: int) -> GGUFVocab:
    """The tokenizer as GGUF metadata; `vocab_size` is the model's (rows of the embedding), which may be larger."""
    spec = _spec(tokenizer)
    model = spec.get("model") or {}
    level = _byte_level(spec.get("pre_tokenizer"))
    if model.get("type") != "BPE" or level is None:
        raise SqftError(
            f"the tokenizer is {model.get('type')} without a byte-level pre-tokenizer: sqft exports byte-level BPE "
            "tokenizers to GGUF (llama.cpp's 'gpt2' model), not SentencePiece or others"
        )
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise SqftError(
            f"the tokenizer has ids up to {max(vocab.values())} but the model only {vocab_size} rows"
        )
    tokens, types = _token_types(spec, vocab, vocab_size)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    special = _special_ids(tokenizer)
    add_bos, add_eos = _adds_specials(tokenizer, special)
    return GGUFVocab(
        model="gpt2",
        pre=pre_tokenizer_name(tokenizer, spec),
        tokens=tokens,
        token_types=types,
        merges=merges,
        special_ids=special,
        add_bos=add_bos,
        add_eos=add_eos,
        add_space_prefix=bool(level.get("add_prefix_space", False)),
        chat_template=getattr(tokenizer, "chat_template", None) or None,
    )
