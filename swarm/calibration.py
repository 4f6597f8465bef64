"""Calibration for proof of capability: questions with known answers, drawn from a seed.

The chain supplies a seed nobody could predict when the node registered (a recent block
hash mixed with the node's id); every validator regenerates the same questions from the same
seed and grades the revealed answers the same way.

Two suites, chosen by the models a node registered (`suite_for`):

* ``arithmetic`` (`ARITHMETIC_SUITE`): expressions generated from the seed by the task
  families (`calibration_questions`), graded by their last integer: the built-in int
  models' suite, and the default for any model without a suite of its own;
* ``questions`` (`QUESTION_SUITE`): for a language model (`LLM_MODEL_IDS`, today
  SmolLM2-135M-Instruct), ``count`` distinct questions of the shipped question set's
  ``calibration`` split (`swarm.questions`), ordered by a hash of (seed, question id)
  (`question_suite`), graded by `swarm.questions.is_correct`. The split is pinned by
  `CALIBRATION_SPLIT_DIGEST`: editing it would change the chain's rules, so loading a
  different split fails loudly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from swarm.questions import Question as ShippedQuestion
from swarm.questions import is_correct, load_questions
from swarm.tasks import FAMILY_NAMES, Question, extract_integer, question_set

#: Default number of calibration questions; a node passes with at least half right.
DEFAULT_COUNT = 16


@dataclass(frozen=True)
class CalibrationQuestion:
    """A prompt to send to the node and the exact integer it must answer."""

    prompt: str
    expected: int

    def check(self, answer_text: str) -> bool:
        """True iff the answer's last integer is the expected value."""
        return extract_integer(answer_text) == self.expected


#: What a yes/no question's prompt adds: the grader reads the answer's first yes/no word,
#: and SmolLM2 asked bare ("Is gold a metal?") answers "Gold is indeed a metal" (1 of 15
#: right; 8 of 15 with this). Other questions are asked bare: the same instruction for them
#: ("Answer with a number.", "Answer in a few words.") measured worse (23 against 28 of 60).
YESNO_INSTRUCTION = " Answer yes or no."


@dataclass(frozen=True)
class SetQuestion:
    """A calibration question from the shipped question set: the prompt is the question's
    text (a yes/no question with `YESNO_INSTRUCTION`), graded by
    `swarm.questions.is_correct`."""

    question: ShippedQuestion

    @property
    def prompt(self) -> str:
        suffix = YESNO_INSTRUCTION if self.question.kind == "yesno" else ""
        return self.question.question + suffix

    def check(self, answer_text: str) -> bool:
        return is_correct(self.question, answer_text)


#: A question of either suite: a prompt, and a deterministic check of an answer to it.
AnyQuestion = CalibrationQuestion | SetQuestion


@dataclass(frozen=True)
class Suite:
    """A calibration suite: how many questions, and the integer pass mark."""

    name: str
    count: int
    pass_mark: int


#: The arithmetic families (every model without a suite of its own): 12 of 16.
ARITHMETIC_SUITE = Suite("arithmetic", count=16, pass_mark=12)
#: The shipped question set's calibration split (language models). The pass mark comes from
#: measurement (docs/swarm.md §2.1a): honest SmolLM2-135M (int8, greedy, the node's own
#: answering path) answers 36 of the 75 right, so it scores >= 4 of 16 on 99.2 % of draws
#: (hypergeometric); junk answering "no" to everything passes 5.8 % of draws, content-free
#: junk never.
QUESTION_SUITE = Suite("questions", count=16, pass_mark=4)

#: SmolLM2-135M-Instruct, Q4_1 GGUF: SHA-256 of the file (the model id of
#: `swarm.runtime.llm.shipped.MODEL_ID`, which L1 may not import; a test checks they agree).
SMOLLM2_MODEL_ID = bytes.fromhex(
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
#: Models calibrated on the question set rather than arithmetic.
LLM_MODEL_IDS: frozenset[bytes] = frozenset({SMOLLM2_MODEL_ID})
#: SHA-256 of the calibration split as consensus reads it (`_split_digest`).
CALIBRATION_SPLIT_DIGEST = bytes.fromhex(
    "c8403cd4617a3d41c63ab5bbd4bb5a612a693fd0f500e5bb5db9250c4c45852f")
_SET_ORDER_TAG = b"pouw/swcalset"


def suite_for(models: Iterable[bytes]) -> Suite:
    """The suite of a node registered with ``models``: the question set if any of them is
    a language model with a suite (`LLM_MODEL_IDS`), else arithmetic."""
    return QUESTION_SUITE if any(m in LLM_MODEL_IDS for m in models) else ARITHMETIC_SUITE


def _split_digest(pool: Sequence[ShippedQuestion]) -> bytes:
    """SHA-256 of what grading reads of each question (id, text, answers, kind), in order."""
    rows = [[q.id, q.question, list(q.answers), q.kind] for q in pool]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False,
                                     separators=(",", ":")).encode()).digest()


@cache
def calibration_pool() -> tuple[ShippedQuestion, ...]:
    """The shipped ``calibration`` split, checked against `CALIBRATION_SPLIT_DIGEST`."""
    pool = load_questions("calibration")
    digest = _split_digest(pool)
    if digest != CALIBRATION_SPLIT_DIGEST:
        raise RuntimeError(f"the calibration split changed (sha256 {digest.hex()}, pinned "
                           f"{CALIBRATION_SPLIT_DIGEST.hex()}): that is a consensus change")
    return pool


def question_suite(seed: bytes, *, count: int = QUESTION_SUITE.count) -> list[SetQuestion]:
    """``count`` distinct questions of the calibration split: the pool ordered by
    SHA-256(tag ‖ seed ‖ question id), first ``count`` taken (integers only)."""
    if not seed:
        raise ValueError("calibration needs a non-empty seed")
    pool = calibration_pool()
    if not 0 < count <= len(pool):
        raise ValueError(f"count must be in [1, {len(pool)}]")
    ranked = sorted(pool, key=lambda q: hashlib.sha256(
        _SET_ORDER_TAG + seed + q.id.encode()).digest())
    return [SetQuestion(q) for q in ranked[:count]]


def suite_questions(suite: Suite, seed: bytes) -> list[AnyQuestion]:
    """The questions of ``suite`` drawn from ``seed`` (in the order they are answered)."""
    if suite.name == QUESTION_SUITE.name:
        return list(question_suite(seed, count=suite.count))
    return list(calibration_questions(seed, count=suite.count))


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


def grade_answer(question: AnyQuestion, answer_text: str) -> bool:
    """True iff the answer is right (arithmetic: its last integer is the expected value;
    question set: `swarm.questions.is_correct`)."""
    return question.check(answer_text)


def grade(questions: Sequence[AnyQuestion], answers: Sequence[str | None], *,
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
