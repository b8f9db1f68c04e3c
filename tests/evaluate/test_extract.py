import pytest

from sqft.evaluate.extract import (
    answer_vocabulary,
    answer_word,
    choice_letter,
    flexible_answer,
    last_number,
    normalize_number,
    numbers_match,
    strict_answer,
    truncate_at_stop,
)


@pytest.mark.parametrize(
    ("text", "strict", "flexible"),
    [
        ("She has 3+4 = 7 apples.\n#### 7", "7", "7"),
        ("Total is $1,000.\n#### 1,000", "1000", "1000"),
        ("The loss is 5.\n#### -5", "-5", "-5"),
        ("#### 2.5 dollars", "2.5", "2.5"),
        ("It costs $18.", None, "18"),  # missing ####: only the flexible match finds it
        ("she paid $1,234.50 in total.", None, "1234.50"),
        ("no number here", None, None),
        ("#### 12\n\nQuestion: 99 more", "12", "99"),
    ],
)
def test_gsm8k_extraction(text, strict, flexible):
    assert strict_answer(text) == strict
    assert flexible_answer(text) == flexible


def test_normalize_number_matches_lm_eval_target_cleaning():
    assert normalize_number("Step 1\n#### 1,000") == "1000"
    assert normalize_number("$72.") == "72"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("The answer is 1,000.", 1000.0),
        ("-3 degrees", -3.0),
        ("0.5 then 2.25", 2.25),
        ("$7", 7.0),
        ("none", None),
    ],
)
def test_last_number(text, value):
    assert last_number(text) == value


def test_numbers_match_tolerance():
    assert numbers_match(1.8333, 1.8333333333333335)
    assert not numbers_match(1.83, 1.8333333333333335)
    assert not numbers_match(None, 0.0)


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("The answer is (D).", "D"),
        ("so the answer is: c", None),
        ("(A) is wrong, (C) is right", "C"),
        ("E", "E"),
        ("none", None),
    ],
)
def test_choice_letter(text, letter):
    assert choice_letter(text) == letter


def test_answer_word_uses_instruction_format():
    vocab = answer_vocabulary("Question ...\n\nAnswer format: answer1/answer2/answer3")
    assert vocab == ["answer1", "answer2", "answer3"]
    assert answer_word("the correct answer is Answer2, not answer1", vocab) == "answer2"
    assert answer_word("True.", ["true", "false"]) == "true"
    assert answer_word("answer12", vocab) is None  # no partial words


def test_truncate_at_stop():
    assert truncate_at_stop("42\n\nQuestion: next", ["Question:", "\n\n"]) == "42"
    assert truncate_at_stop("42", ["Question:"]) == "42"
