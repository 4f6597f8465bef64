"""The answer normaliser the bench's majority vote and the language model's judge share."""

from __future__ import annotations

from fractions import Fraction

from swarm.questions import load_questions
from swarm.runtime.llm.agreement import answer_key, majority_pick, question_kind, support


def test_question_kind_is_read_from_the_question_alone() -> None:
    """The judge is given only the question's text: the kind it reads is the shipped
    set's own kind for every question (both splits)."""
    questions = load_questions()
    assert {q.kind for q in questions} == {"text", "number", "yesno"}
    assert [question_kind(q.question) for q in questions] == [q.kind for q in questions]
    assert question_kind("What musical instrument has 88 keys?") == "text"
    assert question_kind("How do you spell the number 7 in words?") == "text"
    assert question_kind("   ") == "text"


def test_answer_key_reads_what_the_answer_says() -> None:
    assert answer_key("What is 12 + 30?", "12 + 30 = 42.") == Fraction(42)
    assert answer_key("What is 12 + 30?", "The answer is forty-two") == Fraction(42)
    assert answer_key("Is ice cold?", "Yes, it is.") == "yes"
    assert answer_key("How many legs does a spider have?", "I do not know.") is None
    q = "What is the capital of China?"
    assert answer_key(q, "The capital of China is Beijing.") == answer_key(q, "Beijing") \
        == frozenset({"beijing"})
    assert answer_key(q, "(no answer)") is None
    # the kind given overrides the one read from the question
    assert answer_key("What is 2 + 2?", "four", "text") == frozenset({"four"})


def test_support_counts_agreeing_answers_with_repeats() -> None:
    q = "What is 6 + 7?"
    seen = ["13", "6 + 7 = 13.", "It is 12.", "13", "I cannot say."]
    assert support(q, ["The answer is 13.", "12", "Fourteen", "no idea"], seen) == [3, 1, 0, 0]
    assert support(q, ["13"], []) == [0]


def test_majority_pick_prefers_the_most_frequent_then_the_first() -> None:
    assert majority_pick(["a", "b", "b", None]) == 1
    assert majority_pick(["a", "b"]) == 0
    assert majority_pick([None, None]) is None
