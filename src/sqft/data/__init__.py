"""Task data: loaders for GSM8K, LLM-Adapters instruction sets and multiple choice; templates; training tokenization."""

from sqft.data.records import Located, read_records
from sqft.data.tasks import (
    TRAINING_FORMATS,
    GSM8KExample,
    InstructionExample,
    MCExample,
    TrainingExample,
    TrainingFormat,
    as_training_examples,
    detect_training_format,
    gsm8k_target,
    load_gsm8k,
    load_instructions,
    load_multiple_choice,
    load_training_examples,
    training_format_of,
)
from sqft.data.templates import alpaca_prompt, auto_delimiter, fill_template, gsm8k_prompt
from sqft.data.training import (
    IGNORE_INDEX,
    build_training_dataset,
    pad_collate,
    shuffled,
    tokenize_example,
    train_val_split,
)

__all__ = [
    "GSM8KExample",
    "IGNORE_INDEX",
    "InstructionExample",
    "Located",
    "MCExample",
    "TRAINING_FORMATS",
    "TrainingExample",
    "TrainingFormat",
    "alpaca_prompt",
    "as_training_examples",
    "auto_delimiter",
    "build_training_dataset",
    "detect_training_format",
    "fill_template",
    "gsm8k_prompt",
    "gsm8k_target",
    "load_gsm8k",
    "load_instructions",
    "load_multiple_choice",
    "load_training_examples",
    "pad_collate",
    "read_records",
    "shuffled",
    "tokenize_example",
    "train_val_split",
    "training_format_of",
]
