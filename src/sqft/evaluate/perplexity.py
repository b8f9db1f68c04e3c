"""Perplexity on held-out text: token-weighted NLL over non-overlapping windows, `exp(mean NLL)`.

The texts are joined with blank lines into one token stream and cut into windows of `seq_len` tokens (the
last, shorter one included). Within a window every token but the first is predicted from the ones before it;
the NLL is averaged over all predicted tokens of all windows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from sqft.errors import SqftError
from sqft.evaluate.lm import logits_of, max_length, model_device

__all__ = ["token_nll", "text_windows", "evaluate_perplexity"]


def token_nll(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """(Σ −log p(ids[t] | ids[<t]), number of predicted tokens) over the unmasked positions t ≥ 1.

    logits (B, T, V), ids (B, T), mask (B, T) with 1 on real tokens.
    """
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # (B, T-1)
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), target, ignore_index=-100, reduction="sum")
    return nll.item(), int((target != -100).sum())


def text_windows(ids: list[int], seq_len: int) -> list[list[int]]:
    """Non-overlapping windows of `seq_len` tokens; a last window shorter than 2 tokens predicts nothing."""
    windows = [ids[s : s + seq_len] for s in range(0, len(ids), seq_len)]
    return [w for w in windows if len(w) >= 2]


@torch.no_grad()
def evaluate_perplexity(
    model: nn.Module,
    tokenizer,
    texts: list[str],
    seq_len: int = 2048,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, float | int]:
    """`{"perplexity", "nll", "n_tokens", "n_windows"}` of the model on `texts` (`limit`: at most that many windows)."""
    seq_len = min(seq_len, max_length(model))
    if seq_len < 2:
        raise SqftError(f"seq_len must be at least 2 tokens, got {seq_len}")
    ids = tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    windows = text_windows(ids, seq_len)[:limit]
    if not windows:
        raise SqftError(f"the text has {len(ids)} token(s): perplexity needs at least 2")
    dev, pad = model_device(model, device), tokenizer.pad_token_id or 0
    total_nll, total_n = 0.0, 0
    for b in tqdm(range(0, len(windows), batch_size), desc="perplexity", disable=not progress):
        batch = windows[b : b + batch_size]
        T = max(map(len, batch))
        x = torch.tensor([w + [pad] * (T - len(w)) for w in batch], device=dev)  # (B, T)
        mask = torch.tensor([[1] * len(w) + [0] * (T - len(w)) for w in batch], device=dev)  # (B, T)
        nll, n = token_nll(logits_of(model, x, mask), x, mask)
        total_nll, total_n = total_nll + nll, total_n + n
    mean = total_nll / total_n
    return {"perplexity": math.exp(mean), "nll": mean, "n_tokens": total_n, "n_windows": len(windows)}
