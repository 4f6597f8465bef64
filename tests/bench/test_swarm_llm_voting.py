"""bench/swarm_llm.py's vote normalisation (no model needed): the shared normaliser
(`swarm.runtime.llm.agreement`, tested in tests/swarm/runtime/test_llm_agreement.py) with
the question's own kind."""

from __future__ import annotations

from fractions import Fraction

from bench.swarm_llm import vote_key
from swarm.questions import Question, load_questions
from swarm.runtime.llm.agreement import answer_key


def _question(kind: str) -> Question:
    return next(q for q in load_questions("bench") if q.kind == kind)


def test_vote_key_reads_what_the_answer_says() -> None:
    number, yesno = _question("number"), _question("yesno")
    assert vote_key(number, "The answer is 42.") == Fraction(42)
    assert vote_key(yesno, "Yes, it is.") == "yes"
    assert vote_key(number, "I do not know.") is None
    capital = next(q for q in load_questions() if q.question == "What is the capital of China?")
    assert vote_key(capital, "The capital of China is Beijing.") == vote_key(capital, "Beijing")


def test_vote_key_is_the_judges_key_on_every_bench_question() -> None:
    """The majority vote and the judges read answers alike (the judge infers the kind)."""
    answers = ("Yes.", "No, it is not.", "It is 42.", "Paris", "forty two", "")
    for q in load_questions("bench"):
        assert [vote_key(q, a) for a in answers] == [answer_key(q.question, a)
                                                      for a in answers]
