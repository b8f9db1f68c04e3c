"""Seeded synthetic GSM8K-style arithmetic word problems (project-written templates, answers computed).

Each problem is `{"question", "answer"}` with a worked solution in GSM8K's style (`<<a+b=c>>` calculator
annotations) ending in `#### N`. Train and test splits never share a question. Used by the offline demo, so a
tiny model can learn something measurable in minutes.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

from sqft.errors import SqftError

__all__ = ["PROBLEM_KINDS", "make_problem", "generate_problems", "generate_splits", "write_jsonl"]

NAMES = (
    "Ava",
    "Ben",
    "Chloe",
    "Diego",
    "Emma",
    "Farah",
    "Gus",
    "Hana",
    "Ivan",
    "Jade",
    "Kofi",
    "Lena",
    "Milo",
    "Nora",
)
ITEMS = ("apple", "marble", "sticker", "book", "pencil", "cookie", "shell", "card", "balloon", "stamp")

Problem = dict[str, str]


def _calc(a: int, op: str, b: int) -> tuple[int, str]:
    """`a op b` and its GSM8K calculator annotation, e.g. (12, '3*4=<<3*4=12>>12')."""
    r = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
    return r, f"{a}{op}{b} = <<{a}{op}{b}={r}>>{r}"


def _buy_and_give(rng: random.Random, name: str, item: str) -> tuple[str, list[str], int]:
    a, b = rng.randint(5, 60), rng.randint(2, 30)
    s, line1 = _calc(a, "+", b)
    c = rng.randint(1, s - 1)
    r, line2 = _calc(s, "-", c)
    q = f"{name} has {a} {item}s. {name} buys {b} more {item}s and then gives away {c}. How many {item}s does {name} have now?"
    return (
        q,
        [
            f"After buying, {name} has {line1} {item}s.",
            f"After giving some away, {name} has {line2} {item}s.",
        ],
        r,
    )


def _packs(rng: random.Random, name: str, item: str) -> tuple[str, list[str], int]:
    a, b = rng.randint(2, 12), rng.randint(3, 25)
    r, line = _calc(a, "*", b)
    q = f"{name} buys {a} packs of {item}s. Each pack holds {b} {item}s. How many {item}s does {name} buy?"
    return q, [f"{name} buys {line} {item}s."], r


def _wage(rng: random.Random, name: str, item: str) -> tuple[str, list[str], int]:
    a, b, c = rng.randint(8, 30), rng.randint(2, 9), rng.randint(2, 7)
    d, line1 = _calc(a, "*", b)
    r, line2 = _calc(d, "*", c)
    q = f"{name} earns ${a} an hour and works {b} hours a day. How much does {name} earn in {c} days?"
    return q, [f"In one day {name} earns {line1} dollars.", f"In {c} days {name} earns {line2} dollars."], r


def _share(rng: random.Random, name: str, item: str) -> tuple[str, list[str], int]:
    b, each = rng.randint(2, 9), rng.randint(2, 20)
    a = b * each
    r, line = _calc(a, "/", b)
    q = f"{name} has {a} {item}s and shares them equally among {b} friends. How many {item}s does each friend get?"
    return q, [f"Each friend gets {line} {item}s."], r


def _boxes_left_over(rng: random.Random, name: str, item: str) -> tuple[str, list[str], int]:
    a, b, c = rng.randint(3, 15), rng.randint(2, 10), rng.randint(1, 9)
    d, line1 = _calc(b, "*", a)
    r, line2 = _calc(d, "+", c)
    q = (
        f"A box holds {a} {item}s. {name} fills {b} boxes and has {c} {item}s left over. "
        f"How many {item}s did {name} have?"
    )
    return q, [f"The boxes hold {line1} {item}s.", f"With the ones left over, {name} had {line2} {item}s."], r


def _change(rng: random.Random, name: str, item: str) -> tuple[str, list[str], int]:
    a, b = rng.randint(2, 15), rng.randint(2, 6)
    c = rng.choice([bill for bill in (20, 50, 100) if bill > a * b] or [200])
    d, line1 = _calc(a, "*", b)
    r, line2 = _calc(c, "-", d)
    q = f"A {item} costs ${a}. {name} buys {b} {item}s and pays with a ${c} bill. How much change does {name} get?"
    return q, [f"The {item}s cost {line1} dollars.", f"The change is {line2} dollars."], r


def _ages(rng: random.Random, name: str, item: str) -> tuple[str, list[str], int]:
    other = NAMES[(NAMES.index(name) + 1 + rng.randrange(len(NAMES) - 1)) % len(NAMES)]
    a, b = rng.randint(3, 30), rng.randint(1, 12)
    d, line1 = _calc(2, "*", a)
    r, line2 = _calc(d, "+", b)
    q = f"{name} is {a} years old. {other} is {b} years older than twice {name}'s age. How old is {other}?"
    return q, [f"Twice {name}'s age is {line1}.", f"{other} is {line2} years old."], r


PROBLEM_KINDS: dict[str, Callable[[random.Random, str, str], tuple[str, list[str], int]]] = {
    "buy_and_give": _buy_and_give,
    "packs": _packs,
    "wage": _wage,
    "share": _share,
    "boxes_left_over": _boxes_left_over,
    "change": _change,
    "ages": _ages,
}


def make_problem(rng: random.Random, kind: str | None = None) -> Problem:
    """One problem drawn from `rng` (of a random kind unless `kind` is given)."""
    kind = kind or rng.choice(sorted(PROBLEM_KINDS))
    if kind not in PROBLEM_KINDS:
        raise SqftError(f"unknown problem kind '{kind}': use one of {', '.join(sorted(PROBLEM_KINDS))}")
    question, steps, result = PROBLEM_KINDS[kind](rng, rng.choice(NAMES), rng.choice(ITEMS))
    assert result >= 0, (kind, question)
    return {"question": question, "answer": "\n".join(steps) + f"\n#### {result}"}


def generate_problems(n: int, seed: int = 0) -> list[Problem]:
    """`n` distinct problems (no repeated question), reproducible from `seed`."""
    if n < 1:
        raise SqftError(f"number of problems must be positive, got {n}")
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[Problem] = []
    for _ in range(100 * n):
        p = make_problem(rng)
        if p["question"] not in seen:
            seen.add(p["question"])
            out.append(p)
            if len(out) == n:
                return out
    raise SqftError(f"could not generate {n} distinct problems: ask for fewer")


def generate_splits(n_train: int, n_test: int, seed: int = 0) -> tuple[list[Problem], list[Problem]]:
    """Disjoint train and test problems from one seeded stream of distinct questions."""
    problems = generate_problems(n_train + n_test, seed)
    return problems[:n_train], problems[n_train:]


def write_jsonl(problems: list[Problem], path: str | os.PathLike) -> Path:
    """Write problems as GSM8K-format JSON Lines (readable by `load_gsm8k`)."""
    p = Path(path)
    p.write_text("".join(json.dumps(x) + "\n" for x in problems), encoding="utf-8")
    return p
