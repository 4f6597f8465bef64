"""The chain store gives the transition the chain's recent block ids: a block carrying a
calibration seeded a few blocks back connects; one seeded before the window is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.block import Block
from consensus.transition import apply_block_transactions
from consensus.tx import Transaction
from contracts.base import RECENT_BLOCK_COUNT
from contracts.registry import (
    CALIBRATION_WINDOW,
    RegisterSwarmNode,
    SubmitCalibration,
    is_capable,
)
from contracts.staking import Stake
from core.errors import ConsensusError
from core.state import State
from node.chain.chainstore import ChainStore
from tests.framework.chain import MINER, NOW, Chain, extend, fork, make_block, new_chain, tx
from tests.framework.swarmchain import MODEL, answers_for


def joined_chain(empty_blocks: int) -> tuple[Chain, list[Block]]:
    """Dev account 3 stakes and registers, then ``empty_blocks`` blocks follow."""
    chain = new_chain()
    blocks = [extend(chain, [tx(3, 0, Stake(amount=10_000)),
                             tx(3, 1, RegisterSwarmNode(models=(MODEL,)))])]
    blocks += [extend(chain, seed=i + 1) for i in range(empty_blocks)]
    return chain, blocks


def calibration_block(chain: Chain, seed_block: bytes, *, valid: bool) -> tuple[Block, Transaction]:
    """The next block with account 3's calibration on ``seed_block``; its state root is
    computed with the window the chain store gives (``valid``) or left at the parent's."""
    node = tx(3, 0, Stake(amount=1)).sender
    cal = tx(3, 2, SubmitCalibration(seed_block=seed_block,
                                     answers=answers_for(seed_block, node, right=16)))
    root = chain.tip.state_root
    if valid:
        scratch = fork(chain)
        recent = tuple(h.block_id() for h in reversed(chain.headers[-CALIBRATION_WINDOW:]))
        apply_block_transactions(scratch.state, [cal], height=chain.tip.height + 1, miner=MINER,
                                 params=chain.params, parent_id=recent[0],
                                 recent_block_ids=recent)
        root = scratch.state.root()
    return make_block(chain, [cal], state_root=root), cal


def test_a_calibration_seeded_blocks_back_connects(tmp_path: Path) -> None:
    chain, blocks = joined_chain(5)
    seed_block = chain.headers[-4].block_id()  # the parent's third ancestor
    block, cal = calibration_block(chain, seed_block, valid=True)
    store = ChainStore.open(tmp_path / "db", genesis=chain.config)
    try:
        for b in blocks:
            store.add_block(b, now=NOW)
        assert store.recent_block_ids(store.tip_id)[:4][-1] == seed_block
        assert store.tip_view().recent_block_ids == store.recent_block_ids(store.tip_id)
        store.add_block(block, now=NOW)
        assert store.tip_id == block.header.block_id()
        assert is_capable(State(store.state_view()), cal.sender)
    finally:
        store.close()


def test_a_calibration_seeded_before_the_window_is_refused(tmp_path: Path) -> None:
    chain, blocks = joined_chain(CALIBRATION_WINDOW)
    seed_block = chain.headers[-CALIBRATION_WINDOW - 1].block_id()  # one too old
    block, _ = calibration_block(chain, seed_block, valid=False)
    store = ChainStore.open(tmp_path / "db", genesis=chain.config)
    try:
        for b in blocks:
            store.add_block(b, now=NOW)
        # the transition is given more ids (swarm beacons reach further back), and a
        # calibration's seed must be among the first CALIBRATION_WINDOW of them
        recent = store.recent_block_ids(store.tip_id)
        assert len(recent) == min(RECENT_BLOCK_COUNT, store.height + 1) > CALIBRATION_WINDOW
        assert seed_block == recent[CALIBRATION_WINDOW]
        tip = store.tip_id
        with pytest.raises(ConsensusError, match=r"calibration\.stale_seed"):
            store.connect_block(block)  # the rule the store's transition breaks
        assert store.add_block(block, now=NOW).invalid == [block.header.block_id()]
        assert store.tip_id == tip
    finally:
        store.close()
