import json

import pytest

from sqft.errors import SqftError
from sqft.search.validation import check_disjoint, detect_format, fingerprint, load_validation, sample_proxy

MC = [{"query": f"Question {i}: which?", "choices": ["yes", "no"], "gold": i % 2} for i in range(10)]
QA = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}. #### {i + 1}"} for i in range(10)]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_detect_format(tmp_path):
    assert detect_format(write_jsonl(tmp_path / "mc.jsonl", MC)) == "mc"
    assert detect_format(write_jsonl(tmp_path / "qa.jsonl", QA)) == "gsm8k"
    math = [{"instruction": "Add 1 and 2.", "input": "", "output": "3", "answer": "3"}]
    assert detect_format(write_jsonl(tmp_path / "m.jsonl", math)) == "math"
    # plain text, as `sqft finetune --data` reads it, is scored by loss
    assert detect_format(write_jsonl(tmp_path / "t.jsonl", [{"text": "hello"}])) == "text"
    with pytest.raises(SqftError, match="validation-format"):
        detect_format(write_jsonl(tmp_path / "x.jsonl", [{"body": "hello"}]))


def test_proxy_is_seeded_distinct_and_capped():
    a = sample_proxy(100, 10, seed=3)
    assert a == sample_proxy(100, 10, seed=3) and a != sample_proxy(100, 10, seed=4)
    assert len(set(a)) == 10 and a == sorted(a) and all(0 <= i < 100 for i in a)
    assert sample_proxy(5, 10, seed=0) == [0, 1, 2, 3, 4]
    with pytest.raises(SqftError):
        sample_proxy(5, 0, seed=0)


def test_same_file_is_refused_by_path_and_by_content(tmp_path):
    val = write_jsonl(tmp_path / "val.jsonl", MC)
    copy = write_jsonl(tmp_path / "copy.jsonl", MC)
    _, items = load_validation(val)
    for test in (val, tmp_path / "." / "val.jsonl", copy):
        with pytest.raises(SqftError, match="same data"):
            check_disjoint(val, test, items, items)


def test_shared_items_are_refused_and_disjoint_data_passes(tmp_path):
    val = write_jsonl(tmp_path / "val.jsonl", MC[:6])
    test = write_jsonl(tmp_path / "test.jsonl", MC[5:])  # item 5 in both
    _, v = load_validation(val)
    _, t = load_validation(test)
    with pytest.raises(SqftError, match="1 of the 6 proxy"):
        check_disjoint(val, test, v, t)
    check_disjoint(val, test, v[:5], t)  # the proxy without item 5: accepted


def test_fingerprint_ignores_whitespace_and_answer_but_not_question(tmp_path):
    recs = [QA[0], {**QA[0], "question": "What  is 0 + 1? ", "answer": "#### 7"}, QA[1]]
    _, items = load_validation(write_jsonl(tmp_path / "qa.jsonl", recs))
    assert fingerprint(items[0]) == fingerprint(items[1]) != fingerprint(items[2])
