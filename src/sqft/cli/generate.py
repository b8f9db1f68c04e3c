"""`sqft generate MODEL [--adapter DIR] (--prompt TEXT | --chat)`: talk to a model, tokens streamed as they come."""

from __future__ import annotations

import argparse
import sys

from sqft.cli.common import lazy_import

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text from a model (dense, sparse, INT4, or base + adapter), streamed to the terminal",
        description="Reply to one prompt (--prompt) or chat (--chat: an empty line or Ctrl-D ends it). The "
        "tokenizer's chat template is used when it has one. INT4 layers run on PyTorch's packed-INT4 "
        "kernels. Greedy by default (--temperature 0); sampling above it, seeded.",
    )
    p.add_argument("model", help="hub id, local directory, .gguf file, or an sqft artifact with weights")
    p.add_argument("--adapter", default=None, help="adapter directory to apply (sqft finetune / extract)")
    p.add_argument(
        "--qa-int4",
        default=None,
        help="with a QA-SparsePEFT --adapter trained on the fp16 base: the INT4 model it trained with",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prompt", default=None, help="the prompt to answer")
    mode.add_argument("--chat", action="store_true", help="an interactive chat")
    p.add_argument("--system", default=None, help="a system message to start the conversation with")
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens to generate at most (default 256)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (with --temperature > 0)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling")
    p.add_argument("--dtype", default="auto", help="weights dtype: auto, float32, float16, bfloat16")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--no-int4-kernels", action="store_true", help="run INT4 layers by dequantizing instead")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own Python code")
    p.add_argument(
        "--force",
        action="store_true",
        help="use --adapter even though its recorded provenance says it was trained on another base (or with "
        "another mask or INT4 model); logged as a warning",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="warnings only")
    p.set_defaults(func=run)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    inference = lazy_import("sqft.inference")
    generate_reply = inference.generate_reply
    cfg = inference.GenerateConfig(
        args.max_new_tokens, args.temperature, args.top_p, args.seed
    )  # checked before loading
    lm = inference.load_for_inference(
        args.model,
        args.adapter,
        device=args.device,
        dtype=args.dtype,
        int4_kernels=not args.no_int4_kernels,
        trust_remote_code=args.trust_remote_code,
        qa_int4=args.qa_int4,
        force=args.force,
    )
    messages = [{"role": "system", "content": args.system}] if args.system else []
    if not args.chat:
        messages.append({"role": "user", "content": args.prompt})
        generate_reply(lm.model, lm.tokenizer, messages, cfg, _write)
        _write("\n")
        return 0
    print("chat with the model: an empty line or Ctrl-D ends it", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            _write("\n")
            return 0
        if not line.strip():
            return 0
        messages.append({"role": "user", "content": line})
        reply = generate_reply(lm.model, lm.tokenizer, messages, cfg, _write)
        _write("\n")
        messages.append({"role": "assistant", "content": reply})
