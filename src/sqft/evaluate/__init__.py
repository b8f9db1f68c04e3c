"""Evaluation: perplexity, multiple choice by log-likelihood, GSM8K few-shot, LLM-Adapters math/commonsense."""

from sqft.evaluate.api import (
    TASKS,
    TaskSpec,
    check_results_path,
    evaluate,
    format_table,
    load_task_data,
    run_task,
    write_results,
)
from sqft.evaluate.gsm8k import evaluate_gsm8k
from sqft.evaluate.instructions import evaluate_commonsense_gen, evaluate_math
from sqft.evaluate.lm import greedy_generate, loglikelihoods
from sqft.evaluate.multiple_choice import evaluate_multiple_choice
from sqft.evaluate.perplexity import evaluate_perplexity

__all__ = [
    "TASKS",
    "TaskSpec",
    "check_results_path",
    "evaluate",
    "evaluate_commonsense_gen",
    "evaluate_gsm8k",
    "evaluate_math",
    "evaluate_multiple_choice",
    "evaluate_perplexity",
    "format_table",
    "greedy_generate",
    "load_task_data",
    "loglikelihoods",
    "run_task",
    "write_results",
]
