"""What an answer says, normalised, and how many of a round's other answers say the same.

One normaliser serves the bench's majority vote (`bench/swarm_llm.py`) and the language
model's consensus-aware judge (`swarm.runtime.llm.backend`): the final number an answer
commits to, its yes/no, or the content words of its first sentence (less the question's
words and filler). A judge sees every answer of a round, so it can rank the answers that
agree with many others first (self-consistency; minimum Bayes risk with a 0/1 match), and
break ties with the model's likelihood.

The backend is given only the question's text, so the kind of answer wanted is read from the
question (`question_kind`): a yes/no question starts with an auxiliary verb; a number
question asks "how many/much" or is arithmetic on numbers it shows; anything else is text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Sequence

from swarm.questions import final_number, normalize, yes_or_no

#: words that carry no answer (dropped from text answers before comparing them)
FILLER = frozenset(
    "a an the is are was were be it its this that of in on at to for and or as by with "
    "answer correct called known named spelled spelt word words letter letters yes no "
    "i think so".split())
#: first words of a yes/no question
_AUXILIARIES = frozenset(
    "is are was were am do does did can could will would has have had should shall may "
    "might must".split())
#: words or signs of an arithmetic question (with a number in it)
_ARITHMETIC = re.compile(
    r"[+\-×÷*/=]|\b(?:add|subtract|multiply|multiplied|divide|divided|times|plus|minus|"
    r"squared|cubed|double|half|sum|product|difference|quotient|percent)\b", re.IGNORECASE)

Key = Hashable


def question_kind(question: str) -> str:
    """"yesno", "number" or "text": the kind of answer ``question`` asks for."""
    words = normalize(question).split()
    if not words:
        return "text"
    if words[0] in _AUXILIARIES:
        return "yesno"
    if "spell" in words:
        return "text"
    joined = " ".join(words)
    if "how many" in joined or "how much" in joined:
        return "number"
    if re.search(r"\d", question) and _ARITHMETIC.search(question):
        return "number"
    return "text"


def answer_key(question: str, answer: str, kind: str | None = None) -> Key | None:
    """What ``answer`` says, for comparing answers: the number it commits to (kind
    "number"), "yes"/"no" (kind "yesno"), or the set of its first sentence's words less the
    question's and filler words (kind "text"); None when it says nothing. ``kind`` defaults
    to `question_kind` of the question."""
    kind = kind or question_kind(question)
    if kind == "number":
        return final_number(answer, question)
    if kind == "yesno":
        return yes_or_no(answer)
    first = answer.split(". ")[0]
    asked = set(normalize(question).split())
    words = frozenset(w for w in normalize(first).split() if w not in asked | FILLER)
    return words or None


def majority_pick(keys: Sequence[Key | None]) -> int | None:
    """Index of the first answer holding the most frequent key (ties: stated first)."""
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(i for i, k in enumerate(keys) if k is not None and counts[k] == top)


def support(question: str, candidates: Sequence[str], round_answers: Sequence[str],
            kind: str | None = None) -> list[int]:
    """For each candidate: how many of ``round_answers`` (with repeats) say the same
    (equal `answer_key`); 0 for a candidate that says nothing."""
    keys = Counter(k for a in round_answers
                   if (k := answer_key(question, a, kind)) is not None)
    return [0 if (k := answer_key(question, c, kind)) is None else keys[k]
            for c in candidates]
