"""Replay the settlement-rule vectors (tests/vectors/consensus/settlement) and check they are
up to date with their generator."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from swarm.bradley_terry import Comparison, Outcome, bradley_terry_scores
from swarm.messages import (
    AnswerOpening,
    Commitment,
    JudgmentOpening,
    RoundOutcome,
    SwarmRequest,
)
from swarm.settlement import settle
from tests.framework.util import load_script

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors" / "consensus" / "settlement"
FILES = sorted(VECTOR_DIR.glob("*.json"))


def _settlement_generator() -> ModuleType:
    return load_script(VECTOR_DIR / "generate.py", "settlement_vectors")


def replay_settlement_vector(v: dict[str, Any]) -> dict[str, Any]:
    """What the rules give on the vector's inputs, in the shape of its ``expect``."""
    if v["function"] == "bradley_terry":
        comparisons = [Comparison(bytes.fromhex(j), a, b, Outcome(o))
                       for j, a, b, o in v["comparisons"]]
        fit = bradley_terry_scores(
            comparisons, weights={bytes.fromhex(j): w for j, w in v["weights"].items()},
            n=v["n"], max_steps=v["max_steps"],
            start=None if v["start"] is None else [int(t) for t in v["start"]])
        return {"theta": [str(t) for t in fit.theta], "converged": fit.converged}
    assert v["function"] == "settle"
    result = settle(
        request=SwarmRequest.decode(bytes.fromhex(v["request"])),
        answerers=[bytes.fromhex(n) for n in v["answerers"]],
        judges=[bytes.fromhex(n) for n in v["judges"]],
        commitments=[Commitment.decode(bytes.fromhex(x)) for x in v["commitments"]],
        answer_openings=[AnswerOpening.decode(bytes.fromhex(x)) for x in v["answer_openings"]],
        judgment_openings=[JudgmentOpening.decode(bytes.fromhex(x))
                           for x in v["judgment_openings"]],
        reputations={bytes.fromhex(n): r for n, r in v["reputations"].items()},
        stakes={bytes.fromhex(n): s for n, s in v["stakes"].items()},
        seed=bytes.fromhex(v["seed"]) if "seed" in v else None)
    return {"outcome": result.outcome.encode().hex(),
            "ranking": [n.hex() for n in result.outcome.ranking],
            "converged": result.fit.converged}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_settlement_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    assert replay_settlement_vector(vector) == vector["expect"]


def test_settlement_vectors_are_up_to_date() -> None:
    generator = _settlement_generator()
    vectors = generator.settlement_vectors()
    assert sorted(vectors) == [p.stem for p in FILES]
    for path in FILES:
        assert generator.render_settlement_vector(vectors[path.stem]) == path.read_text(), \
            path.name


def test_settlement_vectors_cover_the_issue_cases() -> None:
    vectors = {p.stem: json.loads(p.read_text()) for p in FILES}
    repro = vectors["settle_answerer_judge_unconverged_repro"]
    assert repro["expect"]["converged"] and repro["expect"]["ranking"][-1] == repro["answerers"][0]
    assert vectors["bradley_terry_unconverged_is_zero"]["expect"] == {
        "theta": ["0"] * 6, "converged": False}
    assert vectors["bradley_terry_converged_chain"]["expect"]["converged"]


def test_beacon_vectors_break_the_same_tie_differently() -> None:
    vectors = {p.stem: json.loads(p.read_text()) for p in FILES}
    a, b = vectors["settle_tie_by_beacon_a"], vectors["settle_tie_by_beacon_b"]
    assert a["request"] == b["request"] and a["seed"] != b["seed"]
    assert a["expect"]["ranking"] == b["expect"]["ranking"][::-1]
    # tied answers are paid alike whichever the beacon puts first
    payouts = [RoundOutcome.decode(bytes.fromhex(v["expect"]["outcome"])).payouts
               for v in (a, b)]
    assert {p.node: p.amount for p in payouts[0]} == {p.node: p.amount for p in payouts[1]}
