import pytest
import torch

from sqft.data import (
    IGNORE_INDEX,
    TrainingExample,
    build_training_dataset,
    pad_collate,
    shuffled,
    train_val_split,
)
from sqft.errors import SqftError


def test_whole_sequence_loss_by_default_and_eos(tokenizer):
    ex = TrainingExample("Q: 1+1?\nA:", " 2")
    (row,) = build_training_dataset(tokenizer, [ex], cutoff_len=64)
    # char tokenizer: one token per character, no BOS added, then EOS appended
    assert len(row["input_ids"]) == len(ex.text) + 1
    assert row["input_ids"][-1] == tokenizer.eos_token_id
    assert row["labels"] == row["input_ids"]
    assert row["attention_mask"] == [1] * len(row["input_ids"])


def test_prompt_masking(tokenizer):
    ex = TrainingExample("Q: 1+1?\nA:", " 2")
    (row,) = build_training_dataset(tokenizer, [ex], cutoff_len=64, mask_prompt=True)
    n_prompt = len(ex.prompt)
    assert row["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert row["labels"][n_prompt:] == row["input_ids"][n_prompt:]


def test_cutoff_drops_eos_and_fully_masked_examples(tokenizer):
    long = TrainingExample("x" * 30, "y" * 30)
    (row,) = build_training_dataset(tokenizer, [long], cutoff_len=40)
    assert len(row["input_ids"]) == 40 and tokenizer.eos_token_id not in row["input_ids"]
    short = TrainingExample("p", "r")
    rows = build_training_dataset(tokenizer, [long, short], cutoff_len=20, mask_prompt=True)
    assert len(rows) == 1  # the long one has only prompt tokens left: no loss, dropped
    with pytest.raises(SqftError, match="cutoff"):
        build_training_dataset(tokenizer, [long], cutoff_len=20, mask_prompt=True)


def test_pad_collate_right_pads(tokenizer):
    rows = build_training_dataset(tokenizer, [TrainingExample("", "abc"), TrainingExample("", "abcdef")], 64)
    batch = pad_collate(tokenizer, pad_to_multiple_of=8)(rows)
    assert batch["input_ids"].shape == (2, 8) and batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].sum(1).tolist() == [4, 7]
    assert (batch["labels"][0, 4:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][0, 4:] == tokenizer.pad_token_id).all()


def test_split_is_seeded_and_disjoint():
    items = list(range(100))
    train, val = train_val_split(items, 0.1, seed=3)
    assert len(val) == 10 and sorted(train + val) == items
    assert train_val_split(items, 10, seed=3) == (train, val)
    assert train_val_split(items, 10, seed=4)[1] != val
    assert shuffled(items, 1) == shuffled(items, 1) != items
    with pytest.raises(SqftError):
        train_val_split(items, 100)


def _bos_adding_tokenizer():
    """The char tokenizer with a post-processor that puts BOS first, as Llama tokenizers do."""
    from tokenizers import processors

    from tests.conftest import char_tokenizer

    tok = char_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
    )
    return tok


@pytest.mark.parametrize("make", ["plain", "adds_bos"])
def test_add_bos_puts_exactly_one_bos_first_and_masks_it_with_the_prompt(tokenizer, make):
    tok = tokenizer if make == "plain" else _bos_adding_tokenizer()
    ex = TrainingExample("Q: 1+1?\nA:", " 2")
    (row,) = build_training_dataset(tok, [ex], cutoff_len=64, mask_prompt=True, add_bos=True)
    bos = tok.bos_token_id
    assert row["input_ids"][0] == bos and row["input_ids"].count(bos) == 1
    assert len(row["input_ids"]) == 1 + len(ex.text) + 1  # BOS + characters + EOS
    n_prompt = 1 + len(ex.prompt)
    assert row["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert row["labels"][n_prompt:] == row["input_ids"][n_prompt:]
    (cut,) = build_training_dataset(tok, [ex], cutoff_len=8, add_bos=True)
    assert cut["input_ids"] == row["input_ids"][:8]  # BOS counts toward the cutoff; no EOS without room
