"""The two model calls every evaluation is built from: log-likelihood of continuations, greedy generation.

Works with any causal LM module whose forward takes `input_ids` and `attention_mask` and returns logits (or
an output with `.logits`): dense, sparse, INT4 and adapter-wrapped models alike. Generation needs
`model.generate` (every Hugging Face and PEFT model has it).

Tokenization follows lm-eval: trailing whitespace of a context moves to its continuation, the continuation's
tokens are those of `context + continuation` beyond the context's, and no BOS is added unless asked for (an
empty context is preceded by the EOS token so the first continuation token is predicted from something).
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from sqft.errors import SqftError
from sqft.evaluate.extract import truncate_at_stop

__all__ = [
    "model_device",
    "max_length",
    "logits_of",
    "encode_pair",
    "shared_forward_groups",
    "loglikelihoods",
    "greedy_generate",
]


def model_device(model: nn.Module, device: str | torch.device | None = None) -> torch.device:
    """`device` if given, else where the model's first parameter lives."""
    if device is not None:
        return torch.device(device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def max_length(model: nn.Module, default: int = 2048) -> int:
    """The model's context length (its config's `max_position_embeddings`), else `default`."""
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "max_position_embeddings", None) or default)


def logits_of(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Logits `(B, T, V)` of a causal LM for a (right-padded) batch."""
    out = model(input_ids=input_ids, attention_mask=attention_mask)
    logits = out.logits if hasattr(out, "logits") else out[0] if isinstance(out, (tuple, list)) else out
    return logits


def _prefix(tokenizer, add_bos: bool) -> list[int]:
    return [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []


def encode_pair(
    tokenizer, context: str, continuation: str, add_bos: bool = False
) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-eval makes them."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    if not continuation:
        raise SqftError(f"empty continuation after context {context[-40:]!r}: every choice needs text")
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    prefix = _prefix(tokenizer, add_bos)
    if not prefix and not ctx:
        prefix = [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0]
    cont = whole[len(ctx) :]
    if not cont:
        raise SqftError(f"continuation {continuation!r} produced no tokens after context {context[-40:]!r}")
    return prefix + ctx, cont


def shared_forward_groups(encoded: list[tuple[list[int], list[int]]]) -> list[list[int]]:
    """Requests that one forward pass scores exactly: the same context tokens and continuations that are
    equal but for their last token ("the answer is A" / "… B"). Each group is a list of request indices, in
    order of first appearance; every other request is a group of its own."""
    groups: dict[tuple, list[int]] = {}
    for i, (ctx, cont) in enumerate(encoded):
        groups.setdefault((tuple(ctx), tuple(cont[:-1])), []).append(i)
    return list(groups.values())


@torch.no_grad()
def loglikelihoods(
    model: nn.Module,
    tokenizer,
    pairs: list[tuple[str, str]],
    batch_size: int = 8,
    device: str | torch.device | None = None,
    add_bos: bool = False,
    progress: bool = True,
) -> list[tuple[float, bool]]:
    """For each (context, continuation): (Σ log p(continuation tokens | context), whether it is the greedy one).

    Sequences longer than the model's context are cut on the left. Batches are formed longest first and
    right-padded, so padding never precedes a scored token. Choices that differ only in their last token
    (`shared_forward_groups`) share one sequence: log p of the shared tokens is read once and each choice adds
    log p of its own last token at the final position, the same sums as separate sequences give.
    """
    dev, limit = model_device(model, device), max_length(model)
    encoded = [encode_pair(tokenizer, c, x, add_bos) for c, x in pairs]
    groups = sorted(shared_forward_groups(encoded), key=lambda g: -sum(map(len, encoded[g[0]])))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    results: list[tuple[float, bool]] = [(0.0, False)] * len(encoded)
    bar = tqdm(total=len(encoded), desc="loglikelihood", disable=not progress)
    for b in range(0, len(groups), batch_size):
        batch = groups[b : b + batch_size]
        # inputs: all but the last token (that of the group's first member; the others differ only there)
        seqs = [(encoded[g[0]][0] + encoded[g[0]][1])[-(limit + 1) :][:-1] for g in batch]
        T = max(map(len, seqs))
        ids = torch.tensor([s + [pad] * (T - len(s)) for s in seqs], device=dev)  # (B, T)
        mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs], device=dev)  # (B, T)
        logits = logits_of(model, ids, mask)  # (B, T, V)
        for row, group in enumerate(batch):
            L, n_cont = len(seqs[row]), len(encoded[group[0]][1])
            logp = logits[row, L - n_cont : L].float().log_softmax(-1)  # (n_cont, V)
            for i in group:
                target = torch.tensor(encoded[i][1], device=dev)  # (n_cont,)
                score = logp.gather(-1, target[:, None]).sum().item()
                results[i] = (score, bool((logp.argmax(-1) == target).all()))
            bar.update(len(group))
    bar.close()
    return results


def _stopping(tokenizer, stops: list[str], prompt_len: int):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopOnStrings(StoppingCriteria):
        """Finish a row once its generated text contains any stop sequence."""

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
            texts = tokenizer.batch_decode(input_ids[:, prompt_len:], skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stops) for t in texts], device=input_ids.device)

    return StoppingCriteriaList([StopOnStrings()]) if stops else None


@torch.no_grad()
def greedy_generate(
    model: nn.Module,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 256,
    stop: list[str] | tuple[str, ...] = (),
    batch_size: int = 8,
    device: str | torch.device | None = None,
    add_bos: bool = False,
    progress: bool = True,
) -> list[str]:
    """Greedy continuations of `prompts`, cut at the first stop sequence. Batches are left-padded."""
    from transformers import GenerationConfig

    if not hasattr(model, "generate"):
        raise SqftError(
            f"{type(model).__name__} has no generate(): generation tasks need a Hugging Face causal LM"
        )
    dev = model_device(model, device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [
        _prefix(tokenizer, add_bos) + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts
    ]
    keep = max_length(model) - max_new_tokens
    if keep < 1:
        raise SqftError(
            f"max_new_tokens={max_new_tokens} leaves no room for a prompt in {max_length(model)} tokens"
        )
    encoded = [e[-keep:] for e in encoded]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
    )
    outputs = [""] * len(prompts)
    bar = tqdm(total=len(prompts), desc="generate", disable=not progress)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        T = max(len(encoded[i]) for i in idx)
        ids = torch.tensor([[pad] * (T - len(encoded[i])) + encoded[i] for i in idx], device=dev)  # (B, T)
        mask = torch.tensor(
            [[0] * (T - len(encoded[i])) + [1] * len(encoded[i]) for i in idx], device=dev
        )  # (B, T)
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            generation_config=config,
            stopping_criteria=_stopping(tokenizer, list(stop), T),
        )
        texts = tokenizer.batch_decode(out[:, T:], skip_special_tokens=True)
        for i, text in zip(idx, texts, strict=True):
            outputs[i] = truncate_at_stop(text, stop)
        bar.update(len(idx))
    bar.close()
    return outputs
