"""Tests of the chain store on real LevelDB directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.block import work_of
from consensus.difficulty import MAX_TARGET
from consensus.genesis import dev_config, dev_seed
from consensus.tx import public_key
from consensus.validation import connect_block
from core.errors import ConsensusError
from core.state import root_from_items
from node.chain.chainstore import STATE, ChainStore, ChainStoreError, update_mempool
from node.chain.mempool import Mempool
from tests.framework.chain import (
    NOW,
    Chain,
    balance,
    extend,
    fork,
    make_block,
    new_chain,
    state_items,
    transfer,
)


def stored_state(store: ChainStore) -> dict[bytes, bytes]:
    return {k[len(STATE):]: v for k, v in store.db.iterate_prefix(STATE)}


def assert_same_state(store: ChainStore, chain: Chain) -> None:
    """The store holds exactly the chain's state, tip and canonical blocks."""
    assert store.tip_id == chain.tip.block_id()
    assert store.state_root() == chain.state.root() == chain.tip.state_root
    items = stored_state(store)
    assert items == state_items(chain)
    # The incremental root matches a from-scratch recomputation.
    assert root_from_items(items.items()) == store.state_root()
    assert store.canonical_ids() == [h.block_id() for h in chain.headers]


def test_genesis_and_reopen(tmp_path: Path) -> None:
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config)
    assert_same_state(store, base)
    a = fork(base)
    blocks = [extend(a, [transfer(1, n)], seed=n) for n in range(3)]
    for block in blocks:
        store.add_block(block, now=NOW)
    assert_same_state(store, a)
    store.close()
    reopened = ChainStore.open(tmp_path / "db", genesis=base.config)
    assert_same_state(reopened, a)
    reopened.close()
    with pytest.raises(ChainStoreError, match="another network"):
        ChainStore.open(tmp_path / "db", genesis=dev_config(chain_id=7))


def test_disconnect_restores_exact_state(tmp_path: Path) -> None:
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config)
    before = stored_state(store)
    root_before = store.state_root()
    a = fork(base)
    block = extend(a, [transfer(1, 0, amount=123), transfer(2, 0, to=1, amount=7)])
    store.connect_block(block)
    assert stored_state(store) != before
    store.disconnect_block()
    assert stored_state(store) == before
    assert store.state_root() == root_before
    assert store.tip_id == base.tip.block_id()
    assert store.block_id_at(1) is None
    with pytest.raises(ChainStoreError):
        store.disconnect_block()  # genesis cannot go
    store.close()


def test_deep_reorg_and_back_restore_every_balance(tmp_path: Path) -> None:
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config)
    pool = Mempool(params=base.params)
    # Branch A: account 1 pays account 100 ten times.
    a = fork(base)
    a_blocks = [extend(a, [transfer(1, n, amount=1000 + n)], seed=n) for n in range(10)]
    # Branch B: account 2 pays, and account 1 spends its nonce 0 differently.
    b = fork(base)
    b_blocks = [extend(b, [transfer(1, 0, to=101, amount=5), transfer(2, 0)], seed=100)]
    b_blocks += [extend(b, [transfer(2, n)], seed=100 + n) for n in range(1, 12)]

    for block in a_blocks:
        update = store.add_block(block, now=NOW)
        update_mempool(pool, update, tip=store.tip_view(), now=0)
    assert_same_state(store, a)
    a_balances = {i: balance(store, i) for i in (1, 2, 100, 101)}

    # Ten B blocks tie with A: the first seen (A) keeps the tip.
    for block in b_blocks[:10]:
        assert store.add_block(block, now=NOW).connected == []
    assert_same_state(store, a)
    update = store.add_block(b_blocks[10], now=NOW)
    assert [blk.header.block_id() for blk in update.disconnected] == [
        blk.header.block_id() for blk in reversed(a_blocks)]
    assert len(update.connected) == 11
    update_mempool(pool, update, tip=store.tip_view(), now=1)
    store.add_block(b_blocks[11], now=NOW)
    assert_same_state(store, b)
    # A's transactions went back to the pool, except nonce 0 (B spent it).
    assert sorted(tx.nonce for tx in pool.transactions()) == list(range(1, 10))

    # A grows to 13 blocks: reorg back over 12 blocks, every balance as before.
    more = [extend(a, [], seed=50 + n) for n in range(3)]
    for block in more[:2]:
        update_mempool(pool, store.add_block(block, now=NOW), tip=store.tip_view(), now=2)
    assert store.tip_id == b.tip.block_id()  # 12 against 12: B, seen first here, stays
    update = store.add_block(more[2], now=NOW)
    update_mempool(pool, update, tip=store.tip_view(), now=3)
    assert_same_state(store, a)
    assert {i: balance(store, i) for i in (1, 2, 100, 101)} == a_balances
    # B's account-2 transactions are back; B's conflicting account-1 spend is gone.
    assert {(tx.sender, tx.nonce) for tx in pool.transactions()} == {
        (public_key(dev_seed(2)), n) for n in range(12)}
    store.close()
    reopened = ChainStore.open(tmp_path / "db", genesis=base.config)
    assert_same_state(reopened, a)
    reopened.close()


def test_reorg_keeps_pending_descendants_of_returning_transactions(tmp_path: Path) -> None:
    """A returning nonce-k transaction goes back before revalidation, so the pending k+1 of
    the same sender is not taken for a gap (found by bench/chaos.py's partition cycles)."""
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config)
    pool = Mempool(params=store.params)
    t0, t1, t2 = transfer(1, 0), transfer(1, 1), transfer(1, 2)
    a, b = fork(base), fork(base)
    a_blocks = [extend(a, [t0], seed=1), extend(a, [t1], seed=2)]
    b_blocks = [extend(b, [t0], seed=11), extend(b, [], seed=12), extend(b, [], seed=13)]
    for block in a_blocks:
        update_mempool(pool, store.add_block(block, now=NOW), tip=store.tip_view(), now=0)
    pool.add(t2, tip=store.tip_view(), now=0)
    for block in b_blocks:
        update_mempool(pool, store.add_block(block, now=NOW), tip=store.tip_view(), now=1)
    assert store.tip_id == b.tip.block_id()
    assert sorted(tx.nonce for tx in pool.transactions()) == [1, 2]
    store.close()


def test_orphans_connect_when_parent_arrives(tmp_path: Path) -> None:
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config)
    a = fork(base)
    blocks = [extend(a, [transfer(3, n)], seed=n) for n in range(5)]
    for block in reversed(blocks[1:]):
        assert store.add_block(block, now=NOW).connected == []
    update = store.add_block(blocks[0], now=NOW)
    assert len(update.connected) == 5
    assert_same_state(store, a)
    store.close()


def test_invalid_state_transition_is_marked_and_skipped(tmp_path: Path) -> None:
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config)
    a = fork(base)
    good = extend(a, [transfer(1, 0)])
    store.add_block(good, now=NOW)
    # A competing branch whose second block claims a wrong state root.
    b = fork(base)
    b1 = extend(b, [], seed=7)
    bad = make_block(b, [transfer(2, 0)], seed=8, state_root=b"\x01" * 32)
    store.add_block(b1, now=NOW)
    update = store.add_block(bad, now=NOW)
    assert update.invalid == [bad.header.block_id()]
    assert_same_state(store, a)
    store.close()
    # The verdict survives a restart; children of the bad block are refused.
    reopened = ChainStore.open(tmp_path / "db", genesis=base.config)
    assert reopened.tree.is_invalid(bad.header.block_id())
    assert_same_state(reopened, a)
    reopened.close()


def test_context_rules_reject_before_storing(tmp_path: Path) -> None:
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config)
    a = fork(base)
    too_far_ahead = make_block(a, [], timestamp=NOW + 3600)
    with pytest.raises(ConsensusError, match="timestamp_future"):
        store.add_block(too_far_ahead, now=NOW)
    assert not store.has_block(too_far_ahead.header.block_id())
    wrong_target = make_block(a, [], target=2**256 - 2)
    with pytest.raises(ConsensusError, match=r"header\.target"):
        store.add_block(wrong_target, now=NOW)
    store.close()


def test_difficulty_rule_is_enforced(tmp_path: Path) -> None:

    initial = 2**254
    config = dev_config(initial_target=initial, min_difficulty=False)
    base = new_chain(config)
    store = ChainStore.open(tmp_path / "db", genesis=config)
    halflife = store.difficulty.halflife
    t = base.config.params.target_block_time
    # Block 1 is on schedule (its target is the anchor's) but one halflife late.
    a = fork(base)
    late = make_block(a, [], timestamp=base.tip.timestamp + t + halflife)
    store.add_block(late, now=NOW)
    connect_block(a.state, late, params=a.params)
    a.headers.append(late.header)
    # Block 2: the parent was a halflife behind schedule, so the target doubles.
    stale_target = make_block(a, [], seed=1)
    with pytest.raises(ConsensusError, match=r"header\.target"):
        store.add_block(stale_target, now=NOW)
    easier = make_block(a, [], seed=2, target=2 * initial)
    store.add_block(easier, now=NOW)
    assert store.tip_id == easier.header.block_id()
    assert store.tree.entry(store.tip_id).work == work_of(2 * initial) < work_of(initial)
    store.close()


def test_dev_chain_minimum_difficulty_escape(tmp_path: Path) -> None:

    config = dev_config(initial_target=2**254, min_difficulty=True)
    base = new_chain(config)
    store = ChainStore.open(tmp_path / "db", genesis=config)
    t = config.params.target_block_time
    a = fork(base)
    # More than 2T after the parent: the dev chain accepts the easiest target...
    escape = make_block(a, [], timestamp=base.tip.timestamp + 2 * t + 1, target=MAX_TARGET)
    store.add_block(escape, now=NOW)
    assert store.tip_id == escape.header.block_id()
    # ...and such a block weighs 1, against 3 for a block at the real target.
    assert store.tree.entry(store.tip_id).work == 1
    assert store.tree.entry(store.tip_id).work < work_of(2**254) == 3
    # Exactly 2T after the parent is not enough.
    b = fork(base)
    too_early = make_block(b, [], timestamp=base.tip.timestamp + 2 * t, target=MAX_TARGET,
                           seed=3)
    with pytest.raises(ConsensusError, match=r"header\.target"):
        store.add_block(too_early, now=NOW)
    # With the escape off (the real network), the same late block is refused.
    strict = dev_config(initial_target=2**254, min_difficulty=False)
    strict_store = ChainStore.open(tmp_path / "strict", genesis=strict)
    c = fork(new_chain(strict))
    late = make_block(c, [], timestamp=c.tip.timestamp + 2 * t + 1, target=MAX_TARGET)
    with pytest.raises(ConsensusError, match=r"header\.target"):
        strict_store.add_block(late, now=NOW)
    strict_store.close()
    store.close()
