"""Evaluation: perplexity, multiple choice (sqft or lm-eval), GSM8K few-shot, LLM-Adapters math/commonsense."""

from sqft.evaluate.api import (
    BACKENDS,
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
from sqft.evaluate.lm_eval_backend import evaluate_multiple_choice_lm_eval
from sqft.evaluate.multiple_choice import evaluate_multiple_choice
from sqft.evaluate.perplexity import evaluate_perplexity

__all__ = [
    "BACKENDS",
    "TASKS",
    "TaskSpec",
    "check_results_path",
    "evaluate",
    "evaluate_commonsense_gen",
    "evaluate_gsm8k",
    "evaluate_math",
    "evaluate_multiple_choice",
    "evaluate_multiple_choice_lm_eval",
    "evaluate_perplexity",
    "format_table",
    "greedy_generate",
    "load_task_data",
    "loglikelihoods",
    "run_task",
    "write_results",
]
