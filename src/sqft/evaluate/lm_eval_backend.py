"""Multiple choice through EleutherAI's lm-evaluation-harness, on local files only (the `lm-eval` extra).

The items sqft would score (`sqft.evaluate.multiple_choice`) are written to a temporary JSONL and run as an
lm-eval `multiple_choice` task built from a config dict. Nothing is fetched: the task registry is not
loaded, the data is datasets' packaged "json" builder on a local file (cached in the temporary directory) and
the model and tokenizer are the in-memory ones.

- query/choices/gold items: `doc_to_text` is `query + delimiter`, `doc_to_choice` the choices and
  `target_delimiter` "". lm-eval moves the context's trailing whitespace into the continuation, as sqft does,
  so both score the same tokens.
- Winogrande items (the options are contexts): lm-eval's multiple-input form, as its own winogrande task:
  `doc_to_text` the gold index, `doc_to_choice` the contexts, `doc_to_target` the continuation after " ".

Where lm-eval itself differs from sqft: on Winogrande items its acc_norm divides by each *context's* length
(sqft's divides by the shared continuation's, so it equals acc); an empty context is preceded by BOS (sqft:
EOS); with `add_bos` it adds the special tokens the tokenizer adds (sqft: exactly one BOS).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from sqft.data import load_multiple_choice
from sqft.data.tasks import MCExample
from sqft.errors import SqftError, require
from sqft.evaluate.intervals import CI_SUFFIX, wilson_interval, with_intervals
from sqft.evaluate.lm import max_length
from sqft.evaluate.multiple_choice import item_key

__all__ = ["TASK_NAME", "lm_eval_docs", "lm_eval_task", "evaluate_multiple_choice_lm_eval"]

TASK_NAME = "sqft_mc"


def lm_eval_docs(examples: Sequence[MCExample], delimiter: str | None) -> tuple[list[dict], bool]:
    """(one lm-eval doc per example, whether they are Winogrande-style multiple-input docs).

    `delimiter=None` picks one per query, as `MCExample.requests` does. lm-eval decides the form from the
    first doc, so a file mixing the two layouts is refused.
    """
    multiple_input = examples[0].continuation is not None
    if any((ex.continuation is not None) != multiple_input for ex in examples):
        raise SqftError(
            "the lm-eval backend needs one layout per file: these items mix query/choices/gold with "
            "Winogrande's context_options/continuation; split them into two files"
        )
    if multiple_input:
        return [
            {"gold": ex.gold, "contexts": list(ex.choices), "continuation": ex.continuation}
            for ex in examples
        ], True
    return [
        {"context": ex.requests(delimiter)[0][0], "choices": list(ex.choices), "gold": ex.gold}
        for ex in examples
    ], False


def lm_eval_task(data_file: str | os.PathLike, cache_dir: str | os.PathLike, multiple_input: bool) -> dict:
    """The lm-eval task config (zero-shot, acc and acc_norm) for docs written by `lm_eval_docs`."""
    fields = (
        {"doc_to_text": "gold", "doc_to_choice": "contexts", "doc_to_target": "continuation"}
        if multiple_input
        else {"doc_to_text": "context", "doc_to_choice": "choices", "doc_to_target": "gold"}
    )
    return {
        "task": TASK_NAME,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}, "cache_dir": str(cache_dir)},
        "test_split": "test",
        "output_type": "multiple_choice",
        **fields,
        "target_delimiter": " " if multiple_input else "",
        "num_fewshot": 0,
        "metric_list": [
            {"metric": name, "aggregation": "mean", "higher_is_better": True} for name in ("acc", "acc_norm")
        ],
    }


def _hflm(model: nn.Module, tokenizer, batch_size: int, add_bos: bool):
    """lm-eval's HF wrapper around the in-memory model, scoring as sqft does (fp32 log-softmax, its length)."""
    from lm_eval.models.huggingface import HFLM  # the optional extra (lm-eval)
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise SqftError(
            f"the lm-eval backend needs a Hugging Face PreTrainedModel, got {type(model).__name__}: "
            "use backend 'sqft'"
        )
    return HFLM(
        pretrained=model,
        tokenizer=copy.deepcopy(tokenizer),  # HFLM may set a pad token on it
        batch_size=batch_size,
        add_bos_token=add_bos,
        max_length=max_length(model),
        softmax_dtype=torch.float32,
    )


def evaluate_multiple_choice_lm_eval(
    model: nn.Module,
    tokenizer,
    examples: Sequence[MCExample] | str | os.PathLike,
    delimiter: str | None = "\nAnswer: ",
    batch_size: int = 8,
    limit: int | None = None,
    device: str | None = None,
    add_bos: bool = False,
    progress: bool = True,
    return_scores: bool = False,
) -> dict:
    """`{"acc", "acc_norm", "n"}` from lm-eval over the examples (the first `limit`), as `evaluate_multiple_choice`
    (with the same intervals, per-item outcomes from lm-eval's samples, and items' digest).

    `examples` may be an MC file in any layout `sqft.data.load_multiple_choice` reads. The model must be a
    `PreTrainedModel` (dense, sparse, INT4 or with adapters) and is run where it is: `device` is accepted for
    the same signature and ignored. lm-eval draws its own progress bars, whatever `progress` says. With
    `return_scores` lm-eval's per-choice log-likelihoods are included under "scores" (a list per example).
    """
    require("lm_eval", "lm-eval")
    if isinstance(examples, (str, os.PathLike)):
        examples = load_multiple_choice(examples, "test", limit)
    examples = list(examples)[:limit]
    if not examples:
        raise SqftError("no multiple-choice examples to evaluate")
    docs, multiple_input = lm_eval_docs(examples, delimiter)
    lm = _hflm(model, tokenizer, batch_size, add_bos)
    with tempfile.TemporaryDirectory(prefix="sqft-lm-eval-") as tmp:
        import lm_eval
        from lm_eval.tasks import TaskManager, get_task_dict

        data_file = Path(tmp) / "mc.jsonl"
        data_file.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
        config = lm_eval_task(data_file, tmp, multiple_input)
        tasks = get_task_dict([config], TaskManager(include_defaults=False))
        out = lm_eval.evaluate(
            lm=lm,
            task_dict=tasks,
            log_samples=True,  # per-item outcomes, for intervals and paired comparisons
            bootstrap_iters=0,
        )
    row = out["results"][TASK_NAME]
    n = int(out["n-samples"][TASK_NAME]["effective"])
    result = {"acc": float(row["acc,none"]), "acc_norm": float(row["acc_norm,none"]), "n": n}
    samples = sorted(out["samples"][TASK_NAME], key=lambda s: s["doc_id"])
    outcomes = {m: [bool(s.get(m)) for s in samples] for m in ("acc", "acc_norm")}
    if len(samples) == n and all(m in s for s in samples for m in outcomes):
        with_intervals(result, outcomes, [item_key(ex) for ex in examples])
    else:  # no per-item outcomes: intervals from the counts
        for m in outcomes:
            result[m + CI_SUFFIX] = list(wilson_interval(round(result[m] * n), n))
    if return_scores:
        result["scores"] = [[float(ll) for ll, _ in s["filtered_resps"]] for s in samples]
    return result
