"""bench/llm_reference_check's greedy agreement: how two greedy continuations of one prompt
agree (each cut after its first stop token, which counts as one position)."""

from __future__ import annotations

from bench.llm_reference_check import FIRST_TOKENS, greedy_agreement

EOS = 2
STOPS = frozenset({EOS, 3})


def test_identical_continuations_agree() -> None:
    ids = list(range(10, 10 + FIRST_TOKENS + 4))
    assert greedy_agreement(ids, ids, STOPS) == {
        "compared": len(ids), "same_prefix": len(ids), "agreement": 1.0, "first_ok": True}


def test_a_first_difference_ends_the_prefix_and_fails_the_first_tokens() -> None:
    ours = list(range(10, 30))
    theirs = [*ours[:3], 99, *ours[4:]]
    result = greedy_agreement(ours, theirs, STOPS)
    assert result["same_prefix"] == 3 and result["compared"] == 20
    assert result["agreement"] == 0.95 and not result["first_ok"]
    late = [*ours[:FIRST_TOKENS], 99, *ours[FIRST_TOKENS + 1:]]
    assert greedy_agreement(ours, late, STOPS)["first_ok"]


def test_stopping_at_the_same_place_agrees_whichever_stop_token() -> None:
    ours = [10, 11, 12, EOS, 50, 51]  # what follows a stop is not compared
    theirs = [10, 11, 12, 3]
    assert greedy_agreement(ours, theirs, STOPS) == {
        "compared": 4, "same_prefix": 4, "agreement": 1.0, "first_ok": True}


def test_stopping_where_the_other_goes_on_is_a_difference() -> None:
    result = greedy_agreement([10, 11, EOS], [10, 11, 12, 13], STOPS)
    assert result["compared"] == 3 and result["same_prefix"] == 2
    assert not result["first_ok"]

