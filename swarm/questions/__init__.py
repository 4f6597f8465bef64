"""L1, the shipped question set: short questions with automatically checkable answers (facts,
arithmetic, unit conversions, spelling, yes/no), its loader and its deterministic grader.

``questions.jsonl`` (package data) holds one question a line; ``split`` keeps the bench's
questions ("bench") apart from those used to calibrate a language model ("calibration"). The
grader reads a free-form answer the same way on every machine: no floats, no randomness, the
standard library only.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from importlib import resources

CATEGORIES: tuple[str, ...] = ("fact", "arithmetic", "units", "spelling", "yesno")
KINDS: tuple[str, ...] = ("text", "number", "yesno")
SPLITS: tuple[str, ...] = ("bench", "calibration")

_DATA_FILE = "questions.jsonl"


@dataclass(frozen=True)
class Question:
    """One question, the answers it accepts and how an answer to it is graded.

    ``kind`` is "text" (an accepted word or phrase must appear), "number" (the answer's main
    number must equal the accepted one) or "yesno" (the answer's first yes/no word).
    """

    id: str
    category: str
    question: str
    answers: tuple[str, ...]
    kind: str
    split: str

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"question {self.id}: unknown category {self.category!r}")
        if self.kind not in KINDS:
            raise ValueError(f"question {self.id}: unknown kind {self.kind!r}")
        if self.split not in SPLITS:
            raise ValueError(f"question {self.id}: unknown split {self.split!r}")
        if not self.question.strip() or not self.answers:
            raise ValueError(f"question {self.id}: empty question or no accepted answer")
        for answer in self.answers:
            if self.kind == "number" and _plain_number(answer) is None:
                raise ValueError(f"question {self.id}: {answer!r} is not a number")
            if self.kind == "yesno" and answer not in ("yes", "no"):
                raise ValueError(f"question {self.id}: a yes/no answer is 'yes' or 'no'")
            if self.kind == "text" and not normalize(answer):
                raise ValueError(f"question {self.id}: empty accepted answer")


def load_questions(split: str | None = None) -> tuple[Question, ...]:
    """The packaged questions in file order; only one split's when ``split`` is given."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    questions = _all_questions()
    return questions if split is None else tuple(q for q in questions if q.split == split)


@cache
def _all_questions() -> tuple[Question, ...]:
    text = resources.files(__name__).joinpath(_DATA_FILE).read_text(encoding="utf-8")
    questions: list[Question] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question = Question(id=str(row["id"]), category=str(row["category"]),
                                question=str(row["question"]),
                                answers=tuple(str(a) for a in row["answers"]),
                                kind=str(row["kind"]), split=str(row["split"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{_DATA_FILE}:{number}: {exc}") from exc
        if question.id in seen:
            raise ValueError(f"{_DATA_FILE}:{number}: duplicate id {question.id!r}")
        seen.add(question.id)
        questions.append(question)
    return tuple(questions)


# --- grading ------------------------------------------------------------------------------

_APOSTROPHES = re.compile(r"['’‘`ʼ]")
_NON_WORD = re.compile(r"[\W_]+")
_TOKEN = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[^\W\d_]+|[=:]")

_UNITS: dict[str, int] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9,
}
_TEENS: dict[str, int] = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS: dict[str, int] = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}
_SCALES: dict[str, int] = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = {*_UNITS, *_TEENS, *_TENS, "hundred", *_SCALES}
_EQUALS = {"=", "equals", "equal"}
_ANSWER_FOLLOWERS = {"is", ":", "=", "equals"}
_YES = {"yes", "yeah", "yep"}
_NO = {"no", "nope"}
# "a" and "I" are also words, so they count as a letter answer only when no other letter does
_WORD_LETTERS = {"a", "i"}


def normalize(text: str) -> str:
    """Lower case, accents and apostrophes dropped, every other non-word run one space."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return _NON_WORD.sub(" ", _APOSTROPHES.sub("", bare)).strip()


def _tokens(text: str) -> list[str]:
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return _TOKEN.findall(_APOSTROPHES.sub("", bare))


def _plain_number(token: str) -> Fraction | None:
    if not token or not (token[0].isdigit() and token[-1].isdigit()):
        return None
    try:
        return Fraction(token.replace(",", ""))
    except ValueError:
        return None


def _number_words(tokens: list[str], start: int) -> tuple[int, int]:
    """The number spelled by the words from ``start`` ("three thousand and twelve"), and the
    index after them. ``tokens[start]`` must be a number word."""
    total = current = 0
    previous = ""  # the class of the last word taken: unit, teen, ten, hundred, scale
    i = start
    while i < len(tokens):
        word = tokens[i]
        if word == "zero":
            if previous:
                break
            return 0, i + 1
        if word in _UNITS and previous in ("", "ten", "hundred", "scale"):
            current += _UNITS[word]
            previous = "unit"
        elif word in _TEENS and previous in ("", "hundred", "scale"):
            current += _TEENS[word]
            previous = "teen"
        elif word in _TENS and previous in ("", "hundred", "scale"):
            current += _TENS[word]
            previous = "ten"
        elif word == "hundred" and previous in ("", "unit", "teen", "ten"):
            current = (current or 1) * 100
            previous = "hundred"
        elif word in _SCALES and previous != "scale":
            total += (current or 1) * _SCALES[word]
            current = 0
            previous = "scale"
        elif not (word == "and" and previous in ("hundred", "scale") and i + 1 < len(tokens)
                  and tokens[i + 1] in _NUMBER_WORDS and tokens[i + 1] != "zero"):
            break
        i += 1
    return total + current, i


def _numbered(text: str) -> list[Fraction | str]:
    """The text's numbers (digits, with thousands separators and decimals, or words) in
    order, with the markers "=" (also "equals") and "answer" (an "answer is" or "answer:")."""
    tokens = _tokens(text)
    out: list[Fraction | str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        value = _plain_number(token)
        if value is not None:
            i += 1
            if i < len(tokens) and tokens[i] in _SCALES:  # "3 thousand"
                value *= _SCALES[tokens[i]]
                i += 1
            elif i < len(tokens) and tokens[i] == "hundred":
                value *= 100
                i += 1
            out.append(value)
        elif token in _NUMBER_WORDS:
            words_value, i = _number_words(tokens, i)
            out.append(Fraction(words_value))
        else:
            if token in _EQUALS:
                out.append("=")
            elif token == "answer" and i + 1 < len(tokens) and tokens[i + 1] in _ANSWER_FOLLOWERS:
                out.append("answer")
            i += 1
    return out


def final_number(answer_text: str, question_text: str = "") -> Fraction | None:
    """The number an answer commits to, or None when it gives none.

    Numbers the question itself contains are echoes ("12 + 30 = 42" to "What is 12 + 30?"),
    so they are passed over unless the answer has no other number. Of the rest: the first one
    after the last "answer is"/"answer:" that has one, else the first after the last "=" (or
    "equals") that has one, else the last number of the answer.
    """
    echoes = {item for item in _numbered(question_text) if isinstance(item, Fraction)}
    items = _numbered(answer_text)
    numbers = [item for item in items if isinstance(item, Fraction)]
    if not numbers:
        return None
    fresh = [item for item in numbers if item not in echoes]
    if fresh:
        items = [item for item in items if not isinstance(item, Fraction) or item in fresh]
    for marker in ("answer", "="):
        chosen: Fraction | None = None
        for position, item in enumerate(items):
            if item == marker:
                after = [x for x in items[position + 1:] if isinstance(x, Fraction)]
                if after:
                    chosen = after[0]
        if chosen is not None:
            return chosen
    last = [item for item in items if isinstance(item, Fraction)]
    return last[-1]


def yes_or_no(answer_text: str) -> str | None:
    """"yes" or "no", whichever of the two words the answer says first; None if neither."""
    for word in normalize(answer_text).split():
        if word in _YES:
            return "yes"
        if word in _NO:
            return "no"
    return None


def _says_letter(letter: str, answer_text: str, question_text: str) -> bool:
    """A single-letter answer: the letters standing alone in the answer, less those the
    question shows, must be exactly this one ("a" and "I" count only when no other does)."""
    asked = {w for w in normalize(question_text).split() if len(w) == 1 and w.isalpha()}
    said = {w for w in normalize(answer_text).split() if len(w) == 1 and w.isalpha()} - asked
    if said - _WORD_LETTERS:
        said -= _WORD_LETTERS
    return said == {letter}


def _says_phrase(form: str, answer_text: str, question_text: str) -> bool:
    """The accepted form appears as a whole word or phrase, or spelled out letter by letter
    ("s-e-v-e-n") when the question does not itself spell it out that way."""
    text = f" {normalize(answer_text)} "
    if f" {form} " in text:
        return True
    if form.isalpha() and len(form) > 1:
        spelled = " ".join(form)
        return f" {spelled} " in text and f" {spelled} " not in f" {normalize(question_text)} "
    return False


def is_correct(question: Question, answer_text: str) -> bool:
    """Whether a free-form answer gives one of the question's accepted answers.

    - number: ``final_number`` of the answer equals an accepted number exactly;
    - yesno: the answer's first yes/no word is the accepted one;
    - text: an accepted form appears as a whole word or phrase after normalising case,
      accents, punctuation and spacing; a one-letter form must be the only letter named.
    """
    if question.kind == "number":
        given = final_number(answer_text, question.question)
        return given is not None and any(given == _plain_number(a) for a in question.answers)
    if question.kind == "yesno":
        said = yes_or_no(answer_text)
        return said is not None and said in question.answers
    for answer in question.answers:
        form = normalize(answer)
        if len(form) == 1 and form.isalpha():
            if _says_letter(form, answer_text, question.question):
                return True
        elif _says_phrase(form, answer_text, question.question):
            return True
    return False
