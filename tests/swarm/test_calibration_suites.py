"""The calibration suites of `swarm.calibration`: which models get which suite, the question
suite drawn from the shipped set's calibration split (pinned by its digest), and its grading."""

from __future__ import annotations

import dataclasses

import pytest

from swarm import calibration
from swarm.calibration import (
    ARITHMETIC_SUITE,
    CALIBRATION_SPLIT_DIGEST,
    QUESTION_SUITE,
    SMOLLM2_MODEL_ID,
    SetQuestion,
    calibration_pool,
    grade,
    question_suite,
    suite_for,
    suite_questions,
)
from swarm.questions import load_questions
from swarm.runtime.llm.shipped import MODEL_ID


def test_the_l1_model_id_is_the_shipped_files() -> None:
    assert SMOLLM2_MODEL_ID == MODEL_ID


def test_suite_follows_the_registered_models() -> None:
    assert suite_for([SMOLLM2_MODEL_ID]) == QUESTION_SUITE
    assert suite_for([bytes(32), SMOLLM2_MODEL_ID]) == QUESTION_SUITE
    assert suite_for([bytes(32)]) == suite_for([]) == ARITHMETIC_SUITE
    assert QUESTION_SUITE.count == ARITHMETIC_SUITE.count == 16
    assert 0 < QUESTION_SUITE.pass_mark <= QUESTION_SUITE.count


def test_question_suite_is_a_seeded_draw_from_the_calibration_split() -> None:
    pool = calibration_pool()
    assert pool == load_questions("calibration") and len(pool) == 75
    a = question_suite(b"seed-a")
    assert a == question_suite(b"seed-a") != question_suite(b"seed-b")
    assert len({q.question.id for q in a}) == 16
    assert all(q.question.split == "calibration" for q in a)
    assert suite_questions(QUESTION_SUITE, b"seed-a") == a
    # over many seeds every question is drawn, none far more often than its share
    counts: dict[str, int] = {}
    for i in range(400):
        for q in question_suite(i.to_bytes(4, "big")):
            counts[q.question.id] = counts.get(q.question.id, 0) + 1
    assert len(counts) == 75 and max(counts.values()) < 2 * 400 * 16 // 75
    with pytest.raises(ValueError):
        question_suite(b"")
    with pytest.raises(ValueError):
        question_suite(b"x", count=76)


def test_every_calibration_question_accepts_its_own_answer() -> None:
    for q in calibration_pool():
        item = SetQuestion(q)
        assert item.check(q.answers[0]) and item.prompt.startswith(q.question)
        assert not item.check("I do not know")


def test_the_split_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = load_questions("calibration")
    assert calibration._split_digest(pool) == CALIBRATION_SPLIT_DIGEST
    edited = (dataclasses.replace(pool[0], answers=("Bonn",)), *pool[1:])
    assert calibration._split_digest(edited) != CALIBRATION_SPLIT_DIGEST
    calibration.calibration_pool.cache_clear()
    monkeypatch.setattr(calibration, "load_questions", lambda split: edited)
    try:
        with pytest.raises(RuntimeError, match="consensus change"):
            calibration.calibration_pool()
    finally:
        calibration.calibration_pool.cache_clear()


def test_junk_answers_fail() -> None:
    """Answers with no content never pass; always "yes", always "no" or the prompt echoed
    (its yes/no instruction reads as "yes") pass only on the rare draw of many yes/no
    questions with that answer (docs/swarm.md gives the odds)."""
    passes = {"yes": 0, "no": 0, "echo": 0}
    seeds = 400
    for i in range(seeds):
        qs = question_suite(b"junk" + i.to_bytes(2, "big"))
        for junk in ("", "I do not know", "0"):
            assert grade(qs, [junk] * 16).correct == 0
        for name in ("yes", "no"):
            passes[name] += grade(qs, [name] * 16, min_correct=QUESTION_SUITE.pass_mark).passed
        passes["echo"] += grade(qs, [q.prompt for q in qs],
                                min_correct=QUESTION_SUITE.pass_mark).passed
    assert all(count < seeds // 10 for count in passes.values()), passes
