"""Generate a reply from a prompt or a chat, streaming the text as it is produced."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import TextStreamer

from sqft.errors import SqftError

__all__ = ["GenerateConfig", "Message", "generate_reply", "prompt_ids"]

Message = dict[str, str]  # {"role": "user" | "assistant" | "system", "content": text}


@dataclass
class GenerateConfig:
    """How a reply is produced: greedy at temperature 0 (reproducible), sampled above it."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise SqftError(f"max_new_tokens={self.max_new_tokens!r} must be a positive integer")
        if self.max_new_tokens < 1:
            raise SqftError(f"max_new_tokens={self.max_new_tokens} must be a positive integer")
        if not self.temperature >= 0:
            raise SqftError(f"temperature={self.temperature} must be 0 (greedy) or more")
        if not 0 < self.top_p <= 1:
            raise SqftError(f"top_p={self.top_p} must lie in (0, 1]")


class _Streamer(TextStreamer):
    """transformers' streamer, handing each finished piece of text to a callback instead of printing it."""

    def __init__(self, tokenizer, on_text: Callable[[str], None]) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.on_text = on_text

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self.on_text(text)


def prompt_ids(tokenizer, messages: Sequence[Message]) -> torch.Tensor:
    """Token ids (1, T) of a chat: through the tokenizer's chat template when it has one, else as a plain
    transcript ("User: …\\nAssistant:"), which is also how a bare prompt goes to a base model."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    if len(messages) == 1 and messages[0]["role"] == "user":
        text = messages[0]["content"]
    else:
        text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"
    return tokenizer(text, return_tensors="pt").input_ids


@torch.inference_mode()
def generate_reply(
    model: nn.Module,
    tokenizer,
    messages: Sequence[Message],
    cfg: GenerateConfig,
    on_text: Callable[[str], None] | None = None,
) -> str:
    """The model's reply to `messages` (the last one the user's); `on_text` receives it piece by piece."""
    device = next(model.parameters()).device
    ids = prompt_ids(tokenizer, messages).to(device)  # (1, T)
    pieces: list[str] = []

    def collect(text: str) -> None:
        pieces.append(text)
        if on_text is not None:
            on_text(text)

    sampling = cfg.temperature > 0
    sampling_kwargs = {"temperature": cfg.temperature, "top_p": cfg.top_p} if sampling else {}
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    try:
        model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=cfg.max_new_tokens,
            do_sample=sampling,
            pad_token_id=tokenizer.pad_token_id
            if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id,
            streamer=_Streamer(tokenizer, collect),
            **sampling_kwargs,
        )
    finally:
        torch.random.set_rng_state(generator_state)
    return "".join(pieces)
