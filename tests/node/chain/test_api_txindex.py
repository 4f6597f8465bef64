"""The API's tx index: catch-up in chunks, reorgs, restarts (real LevelDB)."""

from __future__ import annotations

from pathlib import Path

from node.chain.chainstore import ChainStore
from node.chain.txindex import TxIndex
from tests.framework.chain import NOW, extend, fork, new_chain, transfer


async def test_index_follows_reorgs_and_survives_reopen(tmp_path: Path) -> None:
    sim = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=sim.config)
    other = fork(sim)
    tx = transfer(1, 0)
    a1 = extend(sim, [tx], seed=1)
    store.add_block(a1, now=NOW)
    index = TxIndex(store, chunk_blocks=2)
    assert await index.catch_up() == 1
    found = index.lookup(tx.id())
    assert found is not None and found.block_id == a1.header.block_id()
    assert (found.height, found.index, found.tx) == (1, 0, tx)
    # a longer branch without the transaction replaces block 1
    for seed in (2, 3):
        store.add_block(extend(other, seed=seed), now=NOW)
    assert store.height == 2 and store.block_id_at(1) != a1.header.block_id()
    assert index.lookup(tx.id()) is None  # the stale entry is not trusted
    assert await index.catch_up() == 2
    assert index.lookup(tx.id()) is None
    # re-included on the new branch, a few blocks later (several catch-up chunks)
    for seed in (4, 5, 6):
        store.add_block(extend(other, seed=seed), now=NOW)
    b = extend(other, [tx], seed=7)
    store.add_block(b, now=NOW)
    assert await index.catch_up() == 6
    found = index.lookup(tx.id())
    assert found is not None and (found.block_id, found.height) == (b.header.block_id(), 6)
    store.close()
    reopened = ChainStore.open(tmp_path / "db", genesis=sim.config)
    again = TxIndex(reopened)
    assert again.lookup(tx.id()) == found  # persisted, no catch-up needed
    assert await again.catch_up() == 6
    assert again.lookup(transfer(1, 1).id()) is None
    reopened.close()
