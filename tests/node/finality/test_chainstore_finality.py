"""The chain store's finality guard: no block, sync or reorg crosses the finalized checkpoint,
and the checkpoint survives a restart (real LevelDB directories)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ForkChoiceError
from node.chain.chainstore import (
    CONFLICTS_WITH_FINALIZED,
    ChainStore,
    ChainStoreError,
    FinalizedCheckpoint,
)
from tests.framework.chain import NOW, extend, fork, new_chain, transfer


def checkpoint_at(store: ChainStore, height: int, epoch: int = 1) -> FinalizedCheckpoint:
    block_id = store.block_id_at(height)
    assert block_id is not None
    return FinalizedCheckpoint(epoch=epoch, height=height, block_id=block_id)


def test_no_fork_below_the_finalized_checkpoint_after_a_restart_either(tmp_path: Path) -> None:
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config)
    honest = fork(base)
    store.add_block(extend(honest, seed=1), now=NOW)
    below = fork(honest)  # a rival branching off at height 1
    below_again = fork(honest)
    for n in range(3):
        store.add_block(extend(honest, seed=10 + n), now=NOW)
    above = fork(honest)  # a rival branching off at height 4
    assert store.height == 4
    assert store.set_finalized(checkpoint_at(store, 2))
    assert not store.set_finalized(checkpoint_at(store, 1))  # never backwards
    tip = store.tip_id
    # the rival from below the checkpoint is refused at its first block, whatever its length,
    # with the rule peers are told; a transfer on it changes nothing
    with pytest.raises(ForkChoiceError) as info:
        store.add_block(extend(below, [transfer(1, 0)], seed=99), now=NOW)
    assert info.value.rule == CONFLICTS_WITH_FINALIZED
    assert store.tip_id == tip
    # a rival above the checkpoint still wins on work (ordinary reorg)
    for n in range(2):
        store.add_block(extend(above, seed=50 + n), now=NOW)
    assert store.tip_id == above.tip.block_id()
    store.close()
    # a restart keeps the finalized checkpoint and the guard
    reopened = ChainStore.open(tmp_path / "db", genesis=base.config)
    assert reopened.finalized == checkpoint_at(reopened, 2)
    with pytest.raises(ForkChoiceError):
        reopened.add_block(extend(below_again, seed=200), now=NOW)
    assert reopened.tip_id == above.tip.block_id()
    # a checkpoint that is not our canonical block is a bug, never silently taken
    with pytest.raises(ChainStoreError):
        reopened.set_finalized(FinalizedCheckpoint(epoch=9, height=3, block_id=bytes(32)))
    reopened.close()
