"""The shipped question set (bench and calibration splits) and its deterministic grader."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from fractions import Fraction
from typing import Any

import pytest

from swarm.questions import (
    CATEGORIES,
    SPLITS,
    Question,
    final_number,
    is_correct,
    load_questions,
    normalize,
    yes_or_no,
)

ALL = load_questions()
BENCH = load_questions("bench")
CALIBRATION = load_questions("calibration")


def by_question(text: str) -> Question:
    (question,) = [q for q in ALL if q.question == text]
    return question


# --- the set -------------------------------------------------------------------------------


def test_the_splits_are_large_enough_and_disjoint() -> None:
    assert len(ALL) >= 260
    assert len(BENCH) >= 200
    assert len(CALIBRATION) >= 50
    assert len(BENCH) + len(CALIBRATION) == len(ALL)
    assert not {q.id for q in BENCH} & {q.id for q in CALIBRATION}
    assert not {normalize(q.question) for q in BENCH} & {normalize(q.question) for q in CALIBRATION}


def test_ids_and_questions_are_unique() -> None:
    ids = Counter(q.id for q in ALL)
    texts = Counter(normalize(q.question) for q in ALL)
    assert [i for i, n in ids.items() if n > 1] == []
    assert [t for t, n in texts.items() if n > 1] == []


@pytest.mark.parametrize("split", SPLITS)
def test_every_category_is_in_every_split(split: str) -> None:
    counts = Counter(q.category for q in load_questions(split))
    assert set(counts) == set(CATEGORIES)
    least = 25 if split == "bench" else 10
    assert min(counts.values()) >= least, counts


@pytest.mark.parametrize("split", SPLITS)
def test_yes_no_questions_are_not_all_one_way(split: str) -> None:
    answers = Counter(q.answers[0] for q in load_questions(split) if q.kind == "yesno")
    assert set(answers) == {"yes", "no"}
    assert abs(answers["yes"] - answers["no"]) <= 2, answers


def test_the_loader_returns_the_same_immutable_questions() -> None:
    assert load_questions() == ALL
    question = ALL[0]
    assert isinstance(question.answers, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        question.question = "changed"  # type: ignore[misc]
    with pytest.raises(ValueError, match="split"):
        load_questions("dev")


@pytest.mark.parametrize("field,value", [("kind", "essay"), ("category", "trivia"),
                                         ("split", "train"), ("answers", ())])
def test_a_malformed_question_is_rejected(field: str, value: Any) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(ValueError):
        dataclasses.replace(ALL[0], **changes)
    number = next(q for q in ALL if q.kind == "number")
    with pytest.raises(ValueError, match="not a number"):
        dataclasses.replace(number, answers=("many",))


def test_an_answer_is_never_given_away_by_its_question() -> None:
    """Echoing the question never passes: a text answer does not appear in its question and a
    numeric answer is not one of the question's numbers."""
    given_away = []
    for q in ALL:
        if q.kind == "text":
            asked = f" {normalize(q.question)} "
            given_away += [q.id for a in q.answers if f" {normalize(a)} " in asked]
        elif q.kind == "number":
            asked_numbers = {Fraction(n) for n in re.findall(r"\d+", q.question)}
            given_away += [q.id for a in q.answers if Fraction(a) in asked_numbers]
    assert given_away == []
    assert not any(is_correct(q, q.question) for q in ALL)


@pytest.mark.parametrize("question", ALL, ids=lambda q: q.id)
def test_every_accepted_answer_passes_its_own_grader(question: Question) -> None:
    for answer in question.answers:
        shown = answer.capitalize() if question.kind == "yesno" else answer
        assert is_correct(question, f"The answer is {shown}.")
        assert is_correct(question, shown)


@pytest.mark.parametrize("question", ALL, ids=lambda q: q.id)
def test_a_wrong_answer_fails_the_grader(question: Question) -> None:
    if question.kind == "number":
        wrong = [str(Fraction(question.answers[0]) + 1), str(Fraction(question.answers[0]) * 10)]
    elif question.kind == "yesno":
        wrong = ["No." if question.answers == ("yes",) else "Yes."]
    else:
        accepted = [f" {normalize(a)} " for a in question.answers]
        others = {a for q in ALL if q.category == question.category and q.kind == "text"
                  for a in q.answers}
        wrong = [a for a in sorted(others)
                 if not any(form in f" {normalize(a)} " for form in accepted)]
        assert wrong
    for answer in wrong:
        assert not is_correct(question, f"The answer is {answer}."), answer


# --- the grader ----------------------------------------------------------------------------


def test_normalize() -> None:
    assert normalize("  Café, H₂O!  It's   São-Paulo. ") == "cafe h2o its sao paulo"


def test_arithmetic_takes_the_result_not_the_operands() -> None:
    q = by_question("What is 12 + 30?")
    for right in ["12 + 30 = 42", "12+30=42.", "42", "The answer is 42.", "forty-two",
                  "12 plus 30 equals 42.", "Adding 12 and 30 gives 42.",
                  "The answer is 42 because 12 + 30 = 42."]:
        assert is_correct(q, right), right
    for wrong in ["12 + 30 = 32", "12 + 30 = 32, not 42... no, 32", "12 and 30", "", "I don't know",
                  "The answer is 43.", "forty-three", "4.2"]:
        assert not is_correct(q, wrong), wrong


def test_unit_conversions_read_words_separators_and_echoes() -> None:
    q = by_question("How many grams are in 3 kilograms?")
    for right in ["There are 3000 grams in 3 kilograms.", "3 kilograms is 3,000 grams.",
                  "3 kg = 3 × 1000 g = 3000 g", "three thousand grams",
                  "The answer is 3000 grams (1 kilogram = 1000 grams).",
                  "One kilogram has 1000 grams, so 3 kilograms have 3000 grams.",
                  "3 thousand"]:
        assert is_correct(q, right), right
    for wrong in ["3 kilograms = 3 kilograms", "There are 1000 grams in a kilogram.",
                  "300 grams", "3000.5 grams", "30,00 grams"]:
        assert not is_correct(q, wrong), wrong
    assert final_number("one hundred and twenty minutes") == 120
    assert final_number("twenty one") == 21
    assert final_number("1,000,000") == 1_000_000
    assert final_number("2.5 hours") == Fraction(5, 2)
    assert final_number("no number here") is None


def test_yes_no_takes_the_first_yes_or_no_word() -> None:
    star = by_question("Is the Sun a star?")
    planet = by_question("Is the Sun a planet?")
    assert is_correct(star, "Yes, the Sun is a star.")
    assert is_correct(star, "The answer is yes: it is not a planet, no.")
    assert not is_correct(star, "No")
    assert not is_correct(star, "The Sun is a star.")  # neither word
    assert is_correct(planet, "No, the Sun is a star.")
    assert not is_correct(planet, "Yes.")
    assert yes_or_no("Yesterday I said no") == "no"
    assert yes_or_no("Nothing") is None


def test_text_answers_are_whole_words_or_phrases() -> None:
    paris = by_question("What is the capital of France?")
    assert is_correct(paris, "The capital of France is Paris.")
    assert is_correct(paris, "PARIS!")
    assert not is_correct(paris, "Lyon")
    assert not is_correct(paris, "Parisian")
    aires = by_question("What is the capital of Argentina?")
    assert is_correct(aires, "It's Buenos   Aires.")
    assert not is_correct(aires, "Aires")
    seven = by_question("How do you spell the number 7 in words?")
    assert is_correct(seven, "Seven")
    assert is_correct(seven, "7 is spelled s-e-v-e-n.")
    assert not is_correct(seven, "seventeen")
    assert not is_correct(seven, "7")
    cat = by_question("What word do the letters c-a-t spell?")
    assert is_correct(cat, "The letters spell cat.")
    assert not is_correct(cat, "c-a-t")  # the question's own spelling is no answer


def test_a_letter_answer_must_be_the_only_letter_named() -> None:
    apple = by_question('What is the first letter of the word "apple"?')
    assert is_correct(apple, "The first letter of 'apple' is 'a'.")
    assert is_correct(apple, "A")
    assert not is_correct(apple, "It is a B.")
    assert not is_correct(apple, "The first letter is p.")
    after_b = by_question("Which letter comes after B in the alphabet?")
    assert is_correct(after_b, "The letter after B is C.")
    assert not is_correct(after_b, "The letter after B is D.")
    assert not is_correct(after_b, "B")
    dog = by_question('What is the last letter of the word "dog"?')
    assert is_correct(dog, "The last letter of \u201cdog\u201d is \u201cg\u201d.")
    assert not is_correct(dog, "It's d or g.")
