"""Replay the finality-rule vectors (tests/vectors/consensus/finality) and check they are up
to date with their generator."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from consensus.tx import Transaction
from contracts.finality import validator_ids
from tests.framework.finalitykit import finality_params, new_finality_chain
from tests.framework.util import load_script

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors" / "consensus" / "finality"
FILES = sorted(VECTOR_DIR.glob("*.json"))


def _finality_generator() -> ModuleType:
    return load_script(VECTOR_DIR / "generate.py", "finality_vectors")


def replay_finality_vector(v: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Each block's outcomes and status, then the final balances, stakes and validators."""
    chain, validators = new_finality_chain(v["stakes"], params=finality_params(**v["params"]))
    generator = _finality_generator()
    blocks = []
    for block in v["blocks"]:
        outcomes = chain.block([Transaction.decode(bytes.fromhex(t)) for t in block["txs"]])
        blocks.append({"outcomes": outcomes, "status": generator.status_summary(chain)})
    state = chain.state
    final = {"balances": {a: state.account(bytes.fromhex(a)).balance
                          for a in v["final"]["balances"]},
             "bonded": {val.address.hex(): state.stake(val.address).bonded
                        for val in validators},
             "validators": [a.hex() for a in validator_ids(state)]}
    return blocks, final


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_finality_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    blocks, final = replay_finality_vector(vector)
    assert blocks == [b["expect"] for b in vector["blocks"]]
    assert final == vector["final"]


def test_finality_vectors_are_up_to_date() -> None:
    vectors = _finality_generator().finality_vectors()
    assert sorted(vectors) == [p.stem for p in FILES]
    for path in FILES:
        assert _finality_generator().render_finality_vector(vectors[path.stem]) == \
            path.read_text(), path.name


def test_the_vectors_cover_every_vote_and_slashing_rule() -> None:
    """Every rule the finality contract names for aggregates, evidence and registration is
    broken by at least one vector transaction (votes.too_many_sources: see
    test_finality.py; votes.not_in_set is gossip-only)."""
    named = {outcome for path in FILES for block in json.loads(path.read_text())["blocks"]
             for outcome in block["expect"]["outcomes"]}
    assert named >= {
        "votes.inactive", "votes.source_after_target", "votes.target_window",
        "votes.target_root", "votes.source_not_justified", "votes.no_validator_set",
        "votes.bitfield_length", "votes.bitfield_padding", "votes.empty", "votes.nothing_new",
        "votes.signature",
        "slash.same_validator", "slash.not_slashable", "slash.unknown_validator",
        "slash.already_slashed", "slash.self_report", "slash.signature",
        "validator.already_registered", "validator.insufficient_stake",
        "validator.pubkey_invalid", "validator.pubkey_taken", "validator.proof_of_possession",
        "validator.slashed", "validator.key_changed",
    }
    finalizing = ("justify_and_finalize", "skipped_epoch_does_not_finalize")
    finalized = [json.loads(p.read_text())["blocks"][-1]["expect"]["status"]["finalized"]
                 for p in FILES if p.stem in finalizing]
    assert finalized == [2, 4]
