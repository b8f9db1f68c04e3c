import json

import pytest

from sqft.data import (
    MCExample,
    TrainingExample,
    TrainingFormat,
    as_training_examples,
    auto_delimiter,
    detect_training_format,
    fill_template,
    load_gsm8k,
    load_instructions,
    load_multiple_choice,
    load_training_examples,
    read_records,
)
from sqft.errors import SqftError
from tests.conftest import SHARED


def write_jsonl(path, records, blank_line_at=None):
    lines = [json.dumps(r) for r in records]
    if blank_line_at is not None:
        lines.insert(blank_line_at, "")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_missing_field_names_field_and_jsonl_line(tmp_path):
    p = write_jsonl(
        tmp_path / "g.jsonl", [{"question": "q", "answer": "a #### 1"}, {"question": "q2"}], blank_line_at=1
    )
    with pytest.raises(SqftError, match=r"g.jsonl line 3: missing field 'answer'"):
        load_gsm8k(p)


def test_missing_field_names_json_record(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps([{"instruction": "i", "answer": "1"}, {"instruction": "i"}]))
    with pytest.raises(SqftError, match=r"m.json record 2: missing field 'answer'"):
        load_instructions(p)


def test_bad_json_line_and_gold_out_of_range(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"query": "q", "choices": ["a", "b"], "gold": 0}\n{broken\n')
    with pytest.raises(SqftError, match="line 2: not valid JSON"):
        read_records(p)
    write_jsonl(p, [{"query": "q", "choices": ["a", "b"], "gold": 2}])
    with pytest.raises(SqftError, match="line 1: 'gold' is 2, but there are 2 choices"):
        load_multiple_choice(p)
    write_jsonl(p, [{"query": "q", "choices": ["a", "b"], "gold": "0"}])
    with pytest.raises(SqftError, match="field 'gold' should be int"):
        load_multiple_choice(p)


def test_gsm8k_needs_final_answer_and_target(tmp_path):
    p = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "2+2 = 4\n#### 1,004"}])
    assert load_gsm8k(p)[0].target == "1,004"
    write_jsonl(p, [{"question": "q", "answer": "4"}])
    with pytest.raises(SqftError, match="no '#### N'"):
        load_gsm8k(p)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(SqftError, match="does not exist"):
        read_records(tmp_path / "nope.jsonl")
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(SqftError, match="unknown type '.csv'"):
        read_records(tmp_path / "a.csv")


def test_mc_requests_standard_and_winogrande_schema():
    ex = MCExample("Question: 2+2?", ("4", "5"), 0)
    assert ex.requests("\nAnswer: ") == [("Question: 2+2?\nAnswer: ", "4"), ("Question: 2+2?\nAnswer: ", "5")]
    schema = MCExample("", ("Ann helped Bo so Ann", "Ann helped Bo so Bo"), 1, continuation="was grateful.")
    assert schema.requests() == [(c, " was grateful.") for c in schema.choices]


@pytest.mark.parametrize(
    ("query", "delimiter"),
    [
        ("Question: Why?", "\nAnswer: "),
        ("Question: Why?\n", "Answer: "),
        ("Question: Which?\nChoices:\nA. x\nB. y\nAnswer:", " "),
        ("The man turned on the faucet, therefore", " "),
    ],
)
def test_auto_delimiter(query, delimiter):
    assert auto_delimiter(query) == delimiter


def test_training_formats(tmp_path):
    g = write_jsonl(tmp_path / "g.jsonl", [{"question": "What is 2+2?", "answer": "2+2=4\n#### 4"}])
    (ex,) = load_training_examples(g, "gsm8k")
    assert ex.text == "Question: What is 2+2?\nAnswer: 2+2=4\n#### 4"
    assert ex.prompt == "Question: What is 2+2?\nAnswer:"
    m = tmp_path / "m.json"
    m.write_text(json.dumps([{"instruction": "Add 2 and 2.", "input": "", "output": "4", "answer": "4"}]))
    (ex,) = load_training_examples(m, "math")
    assert ex.prompt.endswith("### Instruction:\nAdd 2 and 2.\n\n### Response:\n") and ex.response == "4"
    mc = write_jsonl(
        tmp_path / "mc.jsonl", [{"query": "Question: Sky?", "choices": ["red", "blue"], "gold": 1}]
    )
    (ex,) = load_training_examples(mc, "mc")
    assert ex.text == "Question: Sky?\nAnswer: blue"


def test_custom_template(tmp_path):
    p = write_jsonl(tmp_path / "c.jsonl", [{"q": "Hi", "a": "Hello"}, {"q": "Bye"}])
    with pytest.raises(SqftError, match=r"c.jsonl line 2: missing field 'a'"):
        load_training_examples(p, "custom", template="User: {q}\nBot:", response_template=" {a}")
    (ex,) = load_training_examples(p, "custom", template="User: {q} {{literal}}", limit=1)
    assert (ex.prompt, ex.response) == ("", "User: Hi {literal}")
    with pytest.raises(SqftError, match="template is needed"):
        load_training_examples(p, "custom")
    with pytest.raises(SqftError, match="not a plain field name"):
        fill_template("{a.b}", {"a": 1}, "here")


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="needs ../shared/data")
def test_shared_files_load():
    d = SHARED / "data"
    assert len(load_gsm8k(d / "gsm8k/test.jsonl")) == 1319
    assert len(load_multiple_choice(d / "mc/piqa.jsonl")) == 1838
    wino = load_multiple_choice(d / "mc/winogrande.jsonl", limit=3)
    assert all(ex.continuation for ex in wino)
    aqua = load_instructions(d / "llm-adapters/AQuA/test.json")
    assert {ex.answer for ex in aqua} <= set("ABCDE")
    assert (
        len(load_training_examples(d / "llm-adapters/math-train/math_data.json", "math")) == 3260 - 3
    )  # 3 empty outputs


def test_raw_hellaswag_record_is_cleaned_as_lm_eval(tmp_path):
    rec = {
        "activity_label": "Baking cookies",
        "ctx_a": "A woman mixes dough.",
        "ctx_b": "she",
        "endings": ["puts it in the oven [step] then waits.", "eats  the bowl."],
        "label": "0",
    }
    (ex,) = load_multiple_choice(write_jsonl(tmp_path / "h.jsonl", [rec]))
    assert ex.query == "Baking cookies: A woman mixes dough. She"
    assert ex.choices == ("puts it in the oven then waits.", "eats the bowl.") and ex.gold == 0
    assert ex.requests()[0] == (
        "Baking cookies: A woman mixes dough. She ",
        "puts it in the oven then waits.",
    )


def test_empty_outputs_are_skipped_for_training(tmp_path, caplog):
    m = tmp_path / "m.json"
    recs = [
        {"instruction": "a", "output": "1", "answer": "1"},
        {"instruction": "b", "output": " ", "answer": "2"},
    ]
    m.write_text(json.dumps(recs))
    assert [ex.response for ex in load_training_examples(m, "math")] == ["1"]
    assert "m.json record 2" in caplog.text


AUTO_LAYOUTS = [
    ({"text": "Hello there."}, TrainingFormat("custom", "{text}"), ("", "Hello there.")),
    ({"prompt": "P:", "response": " r"}, TrainingFormat("custom", "{prompt}", "{response}"), ("P:", " r")),
    ({"question": "2+2?", "answer": "4"}, TrainingFormat("gsm8k"), ("Question: 2+2?\nAnswer:", " 4")),
    ({"query": "Question: Sky?", "choices": ["red", "blue"], "gold": 1}, TrainingFormat("mc"), None),
    (
        {"instruction": "Add.", "input": "", "output": "4", "answer": "4", "text": "x"},
        TrainingFormat("math"),
        None,
    ),
]


@pytest.mark.parametrize("record,fmt,pair", AUTO_LAYOUTS)
def test_auto_format_is_detected_from_the_first_record(tmp_path, record, fmt, pair):
    p = write_jsonl(tmp_path / "d.jsonl", [record, record])
    assert detect_training_format(p) == fmt
    auto = load_training_examples(p)  # format="auto" is the default
    assert len(auto) == 2
    assert auto == load_training_examples(p, fmt.format, fmt.template, fmt.response_template)
    if pair is not None:
        assert (auto[0].prompt, auto[0].response) == pair


def test_auto_format_refusals_name_the_record(tmp_path):
    p = write_jsonl(tmp_path / "x.jsonl", [{"q": "Hi", "a": "Hello"}])
    with pytest.raises(SqftError, match=r"x.jsonl line 1: cannot tell the training format .*\['a', 'q'\]"):
        load_training_examples(p)
    (ex,) = load_training_examples(p, "auto", template="{q}", response_template=" {a}")  # template → custom
    assert (ex.prompt, ex.response) == ("Hi", " Hello")
    mixed = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "p", "response": "r"}, {"prompt": "p2"}])
    with pytest.raises(SqftError, match=r"m.jsonl line 2: missing field 'response'"):
        load_training_examples(mixed)


def test_as_training_examples_converts_texts_and_pairs():
    ex = TrainingExample("P:", " r")
    assert as_training_examples([ex, "text", ("p", "r"), ["a", "b"]]) == [
        ex,
        TrainingExample("", "text"),
        TrainingExample("p", "r"),
        TrainingExample("a", "b"),
    ]
    with pytest.raises(SqftError, match="training item 1 is a tuple"):
        as_training_examples(["ok", ("p", "r", "x")])
