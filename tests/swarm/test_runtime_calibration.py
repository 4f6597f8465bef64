"""Calibration questions from a seed, grading, and the arithmetic task helpers."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from swarm.calibration import calibration_questions, grade, grade_answer
from swarm.runtime.builtin import load_variants
from swarm.tasks import (
    FAMILIES,
    equivalent_forms,
    evaluate_expression,
    extract_integer,
    parse_expression,
    question_set,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_questions_are_deterministic_and_seed_bound() -> None:
    a = calibration_questions(b"block-hash-1", count=32)
    assert a == calibration_questions(b"block-hash-1", count=32)
    assert a != calibration_questions(b"block-hash-2", count=32)
    assert len(a) == 32 and len({q.prompt for q in a}) > 20
    for q in a:
        expr = parse_expression(q.prompt)
        assert expr is not None and evaluate_expression(expr) == q.expected
    with pytest.raises(ValueError):
        calibration_questions(b"")


@pytest.mark.slow
def test_same_questions_in_a_fresh_process() -> None:
    code = ("from swarm.calibration import calibration_questions as c;"
            "print([(q.prompt, q.expected) for q in c(b'seed-x', count=8)])")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.strip()
    here = [(q.prompt, q.expected) for q in calibration_questions(b"seed-x", count=8)]
    assert out == repr(here)


def test_operands_cover_their_ranges() -> None:
    qs = question_set(b"coverage", 4000)
    for family, ranges in FAMILIES.items():
        ops = [q.operands for q in qs if q.family == family]
        assert len(ops) > 800
        for i, (lo, hi) in enumerate(ranges):
            seen = [o[i] for o in ops]
            assert min(seen) == lo and max(seen) == hi


def test_grading() -> None:
    qs = calibration_questions(b"grading", count=4)
    right = [f"The answer is {q.expected}." for q in qs]
    assert grade_answer(qs[0], right[0])
    assert not grade_answer(qs[0], f"{qs[0].expected + 1}")
    assert not grade_answer(qs[0], "I don't know")
    r = grade(qs, right)
    assert (r.correct, r.total, r.passed, r.accuracy) == (4, 4, True, 1.0)
    r = grade(qs, [right[0], right[1], None, "0x"])
    assert r.correct == 2 and r.passed  # half, rounded up, passes by default
    assert not grade(qs, [right[0], None, None, None]).passed
    assert not grade(qs, right, min_correct=5).passed
    assert not grade([], []).passed
    with pytest.raises(ValueError):
        grade(qs, right[:3])


def test_best_variant_passes_and_worst_fails_a_strict_calibration() -> None:
    worst, *_, best = load_variants()
    qs = calibration_questions(b"capability", count=24)
    answers = {b.name: [a.text for a in b.answer_many([q.prompt for q in qs])]
               for b in (worst, best)}
    assert grade(qs, answers[best.name], min_correct=12).passed
    assert not grade(qs, answers[worst.name], min_correct=12).passed


@pytest.mark.parametrize(("text", "expr"), [
    ("What is 37*8+5?", "37*8+5"), ("what is 3 x 4", "3*4"), ("12 - 30 = ?", "12-30"),
    ("compute 7×6", "7*6"), ("What is 5*2-1?", None), ("What is 5+2+1?", None),
    ("hello", None), ("What is -5+2?", None),
])
def test_parse_expression(text: str, expr: str | None) -> None:
    assert parse_expression(text) == expr


def test_extract_integer() -> None:
    assert extract_integer("so 37*8+5 = 301") == 301
    assert extract_integer("-14") == -14
    assert extract_integer("1,234 apples") == 1234
    assert extract_integer("none") is None


def test_equivalent_forms_keep_value_and_ranges() -> None:
    for q in question_set(b"forms", 300):
        forms = equivalent_forms(q.expression, 8)
        assert forms[0] == (q.expression, 0)
        assert len({e for e, _d in forms}) == len(forms)
        assert len(forms) > 1 or q.family in ("add", "sub")  # e.g. 0-99, 0+0: no other split
        for expr, delta in forms:
            assert evaluate_expression(expr) == q.answer + delta
            parsed = parse_expression(expr)
            assert parsed == expr
            assert all(0 <= int(x) <= 99 for x in re.findall(r"\d+", expr))
    assert equivalent_forms("3*4+5", 1) == [("3*4+5", 0)]
    assert ("3*4", -5) in equivalent_forms("3*4+5", 3)
