"""Replay the inclusion-rule vectors (tests/vectors/consensus/inclusion) and check they are
up to date with their generator."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from swarm.inclusion import (
    bad_item_fault,
    challenge_award,
    missing_equivocation_fault,
    missing_opening_fault,
    proof_fault,
)
from swarm.messages import AnswerOpening, Commitment, JudgmentOpening, RoundLeaf
from tests.framework.util import load_script

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors" / "consensus" / "inclusion"
FILES = sorted(VECTOR_DIR.glob("*.json"))


def _inclusion_generator() -> ModuleType:
    return load_script(VECTOR_DIR / "generate.py", "inclusion_vectors")


def replay_inclusion_vector(v: dict[str, Any]) -> str | dict[str, int]:
    if v["function"] == "challenge_award":
        return dataclasses.asdict(challenge_award(claim=v["claim"], bond=v["bond"],
                                                  self_proof=v["self_proof"],
                                                  node_stake=v["node_stake"]))
    leaf = RoundLeaf.decode(bytes.fromhex(v["leaf"]))
    rid = bytes.fromhex(v["round_id"])
    commitments = tuple(Commitment.decode(bytes.fromhex(x)) for x in v["commitments"])
    answers = tuple(AnswerOpening.decode(bytes.fromhex(x)) for x in v["answer_openings"])
    judgments = tuple(JudgmentOpening.decode(bytes.fromhex(x)) for x in v["judgment_openings"])
    if v["function"] == "proof":
        fault = proof_fault(leaf, root=bytes.fromhex(v["root"]), slot=v["slot"],
                            slots=[(bytes.fromhex(n), k) for n, k in v["slots"]],
                            proof=[bytes.fromhex(h) for h in v["proof"]])
    elif v["function"] == "bad_item":
        fault = bad_item_fault(leaf, round_id=rid)
    elif v["function"] == "missing_opening":
        fault = missing_opening_fault(leaf, round_id=rid, commitments=commitments,
                                      answer_openings=answers, judgment_openings=judgments)
    else:
        assert v["function"] == "missing_equivocation"
        fault = missing_equivocation_fault(leaf, round_id=rid, commitments=commitments)
    return fault or "valid"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    assert replay_inclusion_vector(vector) == vector["expect"]


def test_vectors_are_up_to_date() -> None:
    generator = _inclusion_generator()
    vectors = generator.inclusion_vectors()
    assert sorted(vectors) == [p.stem for p in FILES]
    for path in FILES:
        assert generator.render_inclusion_vector(vectors[path.stem]) == path.read_text(), path.name


def test_every_outcome_is_covered() -> None:
    expects = {str(json.loads(p.read_text())["expect"]) for p in FILES}
    assert "valid" in expects and len(expects) >= 10
    awards = [json.loads(p.read_text()) for p in FILES if p.stem.startswith("award_")]
    # every branch of the award: own data, another's data, the settler's fault
    assert {(a["expect"]["challenger"] == 0, a["expect"]["late_penalty"] > 0,
             a["expect"]["burned"] > 0) for a in awards} >= {
        (True, False, False), (False, True, False), (False, False, True)}
