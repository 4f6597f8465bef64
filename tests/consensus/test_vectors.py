"""Replay the JSON test vectors in tests/vectors/consensus, and check they are up to date."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from consensus.block import Block
from consensus.genesis import dev_config
from consensus.transition import apply_transaction
from consensus.tx import Transaction
from consensus.validation import validate_block
from core.errors import ConsensusError
from tests.framework.chain import Chain, new_chain
from tests.framework.util import load_script

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors" / "consensus"
FILES = sorted(VECTOR_DIR.glob("*.json"))


def _generator() -> ModuleType:
    return load_script(VECTOR_DIR / "generate.py", "consensus_vectors")


def _chain(vector: dict[str, Any]) -> Chain:
    assert vector["network"]["base"] == "dev"
    return new_chain(dev_config(**vector["network"]["overrides"]))


def _outcome(action: Any) -> str:
    try:
        action()
    except ConsensusError as exc:
        return exc.rule
    return "valid"


def replay_block_vector(vector: dict[str, Any]) -> list[str]:
    chain = _chain(vector)
    outcomes = []
    for entry in vector["blocks"]:
        data = bytes.fromhex(entry["block"])

        def step(entry: dict[str, Any] = entry, data: bytes = data) -> None:
            block = Block.decode(data)
            validate_block(
                chain.state, block, parent=chain.tip, recent_timestamps=chain.timestamps(),
                now=entry["now"], expected_target=int(entry["expected_target"], 16),
                params=chain.params,
            )
            if "block_id" in entry:
                assert block.header.block_id().hex() == entry["block_id"]
                assert chain.state.root().hex() == entry["state_root"]
            chain.headers.append(block.header)

        outcomes.append(_outcome(step))
    return outcomes


def replay_tx_vector(vector: dict[str, Any]) -> str:
    chain = _chain(vector)
    for prior in vector["prior"]:
        apply_transaction(chain.state, Transaction.decode(bytes.fromhex(prior["tx"])),
                          height=prior["height"], params=chain.params)
    recent = tuple(bytes.fromhex(h) for h in vector.get("recent_block_ids", []))
    return _outcome(lambda: apply_transaction(
        chain.state, Transaction.decode(bytes.fromhex(vector["tx"])),
        height=vector["height"], params=chain.params, parent_id=recent[0] if recent else b"",
        recent_block_ids=recent))


def test_vectors_exist() -> None:
    names = {f.stem for f in FILES}
    assert len(names) >= 40
    assert {"block_valid_chain", "tx_transfer", "block_certificate_tampered_rows"} <= names


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_replay(path: Path) -> None:
    vector = json.loads(path.read_text())
    if vector["kind"] == "block":
        outcomes = replay_block_vector(vector)
        assert outcomes == [e["expect"] for e in vector["blocks"]]
    else:
        assert replay_tx_vector(vector) == vector["expect"]


def test_generator_reproduces_committed_vectors() -> None:
    """The generator is deterministic and the files match it: a consensus change shows up."""
    generated = _generator().all_vectors()
    render = _generator().render
    assert sorted(generated) == [f.stem for f in FILES]
    for path in FILES:
        assert render(generated[path.stem]) == path.read_text(), path.name


def test_every_invalid_vector_names_the_rule_it_breaks() -> None:
    """Invalid vectors carry their rule (the replay checks it is the rule actually raised)."""
    rules = set()
    for path in FILES:
        vector = json.loads(path.read_text())
        expects = ([e["expect"] for e in vector["blocks"]] if vector["kind"] == "block"
                   else [vector["expect"]])
        # only the last block of a block vector may be invalid; earlier ones set the context
        assert all(e == "valid" for e in expects[:-1]), path.name
        if expects[-1] != "valid":
            assert vector["description"], path.name
            rules.add(expects[-1])
    # the decoding rules at the trust boundary are among them
    assert {"non_canonical", "trailing", "oversized", "encoding"} <= rules
    assert len(rules) >= 30
