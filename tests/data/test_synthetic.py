import random
import re

import pytest

from sqft.data import load_gsm8k
from sqft.data.synthetic import PROBLEM_KINDS, generate_problems, generate_splits, make_problem, write_jsonl
from sqft.errors import SqftError


@pytest.mark.parametrize("kind", sorted(PROBLEM_KINDS))
def test_every_annotation_is_correct_and_final_answer_follows(kind):
    rng = random.Random(0)
    for _ in range(50):
        p = make_problem(rng, kind)
        calcs = re.findall(r"<<([0-9+\-*/]+)=(-?\d+)>>", p["answer"])
        assert calcs, p
        for expr, result in calcs:
            a, op, b = re.fullmatch(r"(\d+)([+\-*/])(\d+)", expr).groups()
            exact = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b), "/": int(a) / int(b)}[
                op
            ]
            assert exact == int(result)  # divisions are exact by construction
        final = p["answer"].rsplit("#### ", 1)[1]
        assert final == calcs[-1][1] and int(final) >= 0


def test_splits_disjoint_and_reproducible(tmp_path):
    train, test = generate_splits(300, 100, seed=7)
    assert len(train) == 300 and len(test) == 100
    assert not {p["question"] for p in train} & {p["question"] for p in test}
    assert generate_splits(300, 100, seed=7) == (train, test)
    assert generate_problems(20, seed=8) != train[:20]
    loaded = load_gsm8k(write_jsonl(test, tmp_path / "test.jsonl"))
    assert [ex.target for ex in loaded] == [p["answer"].rsplit(" ", 1)[1] for p in test]
    with pytest.raises(SqftError):
        make_problem(random.Random(0), "nope")
