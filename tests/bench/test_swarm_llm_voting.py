"""bench/swarm_llm.py's vote normalisation and majority pick (no model needed)."""

from __future__ import annotations

from fractions import Fraction

from bench.swarm_llm import majority_pick, vote_key
from swarm.questions import Question, load_questions


def _question(kind: str) -> Question:
    return next(q for q in load_questions("bench") if q.kind == kind)


def test_vote_key_reads_what_the_answer_says() -> None:
    number, yesno = _question("number"), _question("yesno")
    assert vote_key(number, "The answer is 42.") == Fraction(42)
    assert vote_key(yesno, "Yes, it is.") == "yes"
    assert vote_key(number, "I do not know.") is None
    capital = next(q for q in load_questions() if q.question == "What is the capital of China?")
    assert vote_key(capital, "The capital of China is Beijing.") == vote_key(capital, "Beijing")


def test_majority_pick_prefers_the_most_frequent_then_the_first() -> None:
    assert majority_pick(["a", "b", "b", None]) == 1
    assert majority_pick(["a", "b"]) == 0
    assert majority_pick([None, None]) is None
