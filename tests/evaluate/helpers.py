"""A bigram 'causal LM' whose log-probabilities are known exactly: logits(t) = table[input_ids[t]]."""

from __future__ import annotations

import torch
from torch import nn


class BigramLM(nn.Module):
    """Any nn.Module causal LM: forward(input_ids, attention_mask) -> logits (B, T, V)."""

    def __init__(self, vocab: int = 104, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(torch.randn(vocab, vocab, generator=g) * 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.table[input_ids]  # (B, T, V)

    def logprob(self, prev: int, nxt: int) -> float:
        return self.table[prev].log_softmax(-1)[nxt].item()


def by_hand(model: BigramLM, tokenizer, context: str, continuation: str) -> float:
    """Σ log p(continuation chars | previous char) for a character tokenizer.

    As lm-eval does, the context's trailing whitespace belongs to the scored continuation.
    """
    ids = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    n_ctx = len(context.rstrip())
    return sum(model.logprob(ids[t - 1], ids[t]) for t in range(n_ctx, len(ids)))
