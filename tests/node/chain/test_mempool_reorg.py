"""A reorg must not lose what the mempool held: real LevelDB chain store, journaled pool.

Found by bench/chaos.py's partition cycles (every lost accepted transaction was one of these):
a sender's nonces k and k+1 are mined on the losing branch while its k+2 is pending; the
reorg brings k and k+1 back. Re-admitted one at a time, k went back first, k+2 then looked
like a gap (k+1 not back yet) and admission dropped it, from the pool and from the journal.
"""

from __future__ import annotations

from pathlib import Path

from node.chain.chainstore import ChainStore, update_mempool
from node.chain.mempool import Mempool, MempoolConfig, MempoolJournal
from tests.framework.chain import NOW, extend, fork, new_chain, transfer


def nonces(pool: Mempool) -> list[tuple[str, int]]:
    """(sender, nonce) of every pending transaction, sorted."""
    return sorted((tx.sender.hex(), tx.nonce) for tx in pool.transactions())


def test_a_reorg_returning_two_nonces_keeps_the_pending_third(tmp_path: Path) -> None:
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config)
    pool = Mempool(params=store.params, journal=MempoolJournal(store.db))
    t0, t1, t2 = transfer(1, 0), transfer(1, 1), transfer(1, 2)
    other = [transfer(2, n) for n in range(3)]  # a second sender, same shape, interleaved
    a, b = fork(base), fork(base)
    a_blocks = [extend(a, [t0, other[0]], seed=1), extend(a, [t1, other[1]], seed=2)]
    b_blocks = [extend(b, [], seed=11 + i) for i in range(3)]  # more work, neither sender
    for block in a_blocks:
        update_mempool(pool, store.add_block(block, now=NOW), tip=store.tip_view(), now=0)
    for tx in (t2, other[2]):
        pool.add(tx, tip=store.tip_view(), now=0)  # accepted: journaled before the answer
    for block in b_blocks:
        update_mempool(pool, store.add_block(block, now=NOW), tip=store.tip_view(), now=1)
    assert store.tip_id == b.tip.block_id()

    expected = sorted((tx.sender.hex(), tx.nonce) for tx in (t0, t1, t2, *other))
    assert nonces(pool) == expected  # before the fix: the two nonce-2 transactions were gone
    # the journal holds them all: a restart brings every one back
    reloaded = Mempool(params=store.params, journal=MempoolJournal(store.db))
    assert reloaded.load_journal(tip=store.tip_view(), now=2).dropped == []
    assert nonces(reloaded) == expected
    # and the next block can carry each sender's whole chain, in nonce order
    chosen = pool.select(max_count=10, max_bytes=1 << 20)
    assert [tx.nonce for tx in chosen if tx.sender == t0.sender] == [0, 1, 2]
    store.close()


def test_a_reorg_keeps_returning_and_pending_beyond_the_sender_limit(tmp_path: Path) -> None:
    """Returning and pending together beyond the per-sender limit all stay, journal
    included: the limit is an admission rule, and every one of them was accepted (by a
    block or by the pool). Before, the tail beyond the limit was dropped: bench/chaos.py lost
    a transfer when a node that had mined 16 blocks of one sender's transfers alone reorged
    (and a restart's journal load refused it as ``sender_limit``)."""
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config)
    limited = MempoolConfig(max_per_sender=3)
    pool = Mempool(params=store.params, config=limited, journal=MempoolJournal(store.db))
    a, b = fork(base), fork(base)
    update_mempool(pool, store.add_block(extend(a, [transfer(1, 0), transfer(1, 1)], seed=1),
                                         now=NOW), tip=store.tip_view(), now=0)
    for n in (2, 3, 4):
        pool.add(transfer(1, n), tip=store.tip_view(), now=0)
    for i in range(2):
        update_mempool(pool, store.add_block(extend(b, [], seed=20 + i), now=NOW),
                       tip=store.tip_view(), now=1)
    assert store.tip_id == b.tip.block_id()
    assert nonces(pool) == [(transfer(1, 0).sender.hex(), n) for n in range(5)]
    reloaded = Mempool(params=store.params, config=limited, journal=MempoolJournal(store.db))
    assert reloaded.load_journal(tip=store.tip_view(), now=2).dropped == []
    assert nonces(reloaded) == nonces(pool)
    # admission still applies the limit
    assert len(pool.pending_of(transfer(1, 0).sender)) == 5
    store.close()


def test_a_journal_load_with_returning_transactions_ignores_the_sender_limit(
        tmp_path: Path) -> None:
    """A restart after a crash mid-reorg: the disconnected block's transactions come back
    with the journal (`Mempool.load_journal` ``returning``), and together they may exceed
    the per-sender limit; none is dropped."""
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config)
    limited = MempoolConfig(max_per_sender=3)
    journaled = Mempool(params=store.params, config=limited, journal=MempoolJournal(store.db))
    returning = [transfer(1, n) for n in range(3)]  # a disconnected block's, never journaled
    # the journal as a pool left it: nonces 3 and 4 pending after a block that held 0..2
    a = fork(base)
    block = extend(a, returning, seed=3)
    update_mempool(journaled, store.add_block(block, now=NOW), tip=store.tip_view(), now=0)
    for n in (3, 4):
        journaled.add(transfer(1, n), tip=store.tip_view(), now=0)
    store.disconnect_block()  # the reorg's first step, then the crash
    reloaded = Mempool(params=store.params, config=limited, journal=MempoolJournal(store.db))
    load = reloaded.load_journal(tip=store.tip_view(), now=1, returning=returning)
    assert load.dropped == []
    assert nonces(reloaded) == [(returning[0].sender.hex(), n) for n in range(5)]
    store.close()
