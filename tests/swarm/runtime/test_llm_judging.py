"""The language model judge's rule (`swarm.runtime.llm.backend`), on given scores: support
in the round first, the model's likelihood second; the screen from the same scores."""

from __future__ import annotations

from swarm.runtime.base import Outcome
from swarm.runtime.llm.backend import (
    SCREEN_FLOOR,
    TIE_MARGIN,
    AnswerScore,
    RoundView,
    judgment_from_views,
    round_support,
    round_views,
    screen_marks,
)

Q = "What is 6 + 7?"


def test_support_first_then_likelihood() -> None:
    likely, unlikely = RoundView(1, -0.5), RoundView(1, -2.0)
    assert judgment_from_views(likely, unlikely).outcome is Outcome.A
    assert judgment_from_views(unlikely, likely).outcome is Outcome.B  # no position bias
    assert judgment_from_views(RoundView(2, -3.0), likely).outcome is Outcome.A
    near = RoundView(1, -0.5 - TIE_MARGIN / 2)
    assert judgment_from_views(likely, near).outcome is Outcome.TIE
    unscored = RoundView(1, None)  # not among the most supported: never scored
    assert judgment_from_views(likely, unscored).outcome is Outcome.TIE
    assert judgment_from_views(RoundView(0, None), unscored).outcome is Outcome.B
    assert "support A=2 B=1" in judgment_from_views(RoundView(2, -3.0), likely).reason


def test_only_the_most_supported_answers_are_scored() -> None:
    answers = ["13", "6 + 7 = 13.", "12", "no idea"]
    counts, scored = round_support(Q, answers, ["13", "6 + 7 = 13.", "12", "13"])
    assert counts == {"13": 3, "6 + 7 = 13.": 3, "12": 1, "no idea": 0}
    assert scored == ["13", "6 + 7 = 13."]
    scores = {"13": AnswerScore(-1.0, 2), "6 + 7 = 13.": AnswerScore(-6.0, 8)}
    assert round_views(counts, scores) == {
        "13": RoundView(3, -0.5), "6 + 7 = 13.": RoundView(3, -0.75),
        "12": RoundView(1, None), "no idea": RoundView(0, None)}
    # nobody agrees (or the judge sees no other answer): every answer is scored
    assert round_support(Q, ["13", "12"], [])[1] == ["13", "12"]


def test_screen_passes_only_the_most_supported_likely_answers() -> None:
    views = {"13": RoundView(3, -0.5), "6 + 7 = 13.": RoundView(3, SCREEN_FLOOR - 1),
             "12": RoundView(1, None), "no idea": RoundView(0, None)}
    assert screen_marks(Q, views, ["13", "6 + 7 = 13.", "12", "no idea"]) == [
        True, False, False, False]
    # nobody agrees: every likely answer that says something passes
    alone = {"13": RoundView(1, -0.5), "12": RoundView(1, SCREEN_FLOOR - 1)}
    assert screen_marks(Q, alone, ["13", "12"]) == [True, False]
