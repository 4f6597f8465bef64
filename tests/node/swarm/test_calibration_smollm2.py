"""An honest SmolLM2 node passes the language-model calibration: the real shipped model (int8,
greedy) answers through the node's own calibration path (`answer_prompts`, one batch of 16,
`calibration_text`) and the contract grades the transaction, for a few seed blocks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.transition import apply_transaction
from contracts.registry import (
    RegisterSwarmNode,
    SubmitCalibration,
    calibration_prompts,
    capability,
)
from contracts.staking import Stake
from node.swarm.registration import answer_prompts, calibration_text
from swarm.calibration import QUESTION_SUITE
from swarm.runtime.base import InferenceBackend
from swarm.runtime.factory import make_backend
from swarm.runtime.llm.shipped import MODEL_ID
from tests.framework.chain import new_chain, tx

pytestmark = pytest.mark.slow

SEED_BLOCKS = [bytes([0x5E, i]) * 16 for i in range(3)]


@pytest.fixture(scope="module")
def smollm2_for_calibration(llm_cache: Path) -> InferenceBackend:
    return make_backend(f"smollm2:{llm_cache}")  # int8, greedy: the node's default


@pytest.mark.parametrize("seed_block", SEED_BLOCKS, ids=lambda b: b[:2].hex())
def test_an_honest_smollm2_node_passes(smollm2_for_calibration: InferenceBackend,
                                       seed_block: bytes) -> None:
    chain = new_chain()
    node = tx(3, 0, Stake(amount=1)).sender
    for nonce, payload in enumerate((Stake(amount=10_000),
                                     RegisterSwarmNode(models=(MODEL_ID,)))):
        apply_transaction(chain.state, tx(3, nonce, payload), height=1, params=chain.params)
    prompts = calibration_prompts(seed_block, node, (MODEL_ID,))
    texts = asyncio.run(answer_prompts(smollm2_for_calibration, prompts))
    answers = tuple(calibration_text(t, QUESTION_SUITE) for t in texts)
    apply_transaction(chain.state, tx(3, 2, SubmitCalibration(seed_block=seed_block,
                                                              answers=answers)),
                      height=2, params=chain.params, parent_id=seed_block)
    record = capability(chain.state, node)
    assert record is not None
    assert record.capable, f"{record.correct}/16 < {QUESTION_SUITE.pass_mark}: {texts}"
