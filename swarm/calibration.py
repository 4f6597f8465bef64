"""Calibration for proof of capability: questions with known answers, drawn from a seed.

The chain supplies a seed nobody could predict when the node registered (for example a
recent block hash mixed with the node's id), so a node cannot precompute or look up the
answers; every validator regenerates the same questions from the same seed and grades the
revealed answers the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from swarm.tasks import FAMILY_NAMES, Question, extract_integer, question_set

#: Default number of calibration questions; a node passes with at least half right.
DEFAULT_COUNT = 16


@dataclass(frozen=True)
class CalibrationQuestion:
    """A prompt to send to the node and the exact integer it must answer."""

    prompt: str
    expected: int


@dataclass(frozen=True)
class CalibrationResult:
    """How a node did: right answers out of asked, and whether that passes."""

    correct: int
    total: int
    passed: bool

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def calibration_questions(seed: bytes, *, count: int = DEFAULT_COUNT,
                          families: tuple[str, ...] = FAMILY_NAMES,
                          ) -> list[CalibrationQuestion]:
    """`count` questions derived deterministically from `seed` (domain-separated from the
    evaluation set, so calibration never reuses benchmark seeds by accident)."""
    if not seed:
        raise ValueError("calibration needs a non-empty seed")
    qs: list[Question] = question_set(b"calibration:" + seed, count, families=families)
    return [CalibrationQuestion(q.prompt, q.answer) for q in qs]


def grade_answer(question: CalibrationQuestion, answer_text: str) -> bool:
    """True iff the answer's last integer is the expected value."""
    return extract_integer(answer_text) == question.expected


def grade(questions: Sequence[CalibrationQuestion], answers: Sequence[str | None], *,
          min_correct: int | None = None) -> CalibrationResult:
    """Grade a node's answers (None: no answer, counts as wrong) against the questions.

    The pass mark is an integer count (default: half, rounded up) so every validator
    decides identically, with no float threshold.
    """
    if len(questions) != len(answers):
        raise ValueError("one answer per question")
    needed = (len(questions) + 1) // 2 if min_correct is None else min_correct
    correct = sum(1 for q, a in zip(questions, answers, strict=True)
                  if a is not None and grade_answer(q, a))
    return CalibrationResult(correct=correct, total=len(questions),
                             passed=bool(questions) and correct >= needed)
