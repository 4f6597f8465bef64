"""Tests of the mempool against a real tip state in LevelDB."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from consensus.genesis import DEV_BALANCE, build_genesis, dev_config, dev_seed
from consensus.transition import apply_transaction
from consensus.tx import MAX_TX_SIZE, Transaction, public_key, sign_transaction
from contracts.registry import (
    CALIBRATION_QUESTIONS,
    CALIBRATION_WINDOW,
    RegisterSwarmNode,
    SubmitCalibration,
    calibration_seed,
)
from contracts.staking import Stake
from core.interfaces import PrefixedKV
from core.state import State
from node.chain.db import Database
from node.chain.mempool import (
    DEFAULT_MIN_FEE_PER_KB,
    JOURNAL,
    JournalFlusher,
    Mempool,
    MempoolConfig,
    MempoolError,
    MempoolJournal,
    TipView,
)
from swarm.calibration import calibration_questions
from tests.framework.chain import transfer

CONFIG = dev_config()
PARAMS = CONFIG.params
CHAIN_ID = PARAMS.chain_id
STATE_PREFIX = b"s/"
BOB = public_key(dev_seed(500))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with Database(tmp_path / "db") as database:
        with database.batch() as batch:
            build_genesis(CONFIG, State(PrefixedKV(batch, STATE_PREFIX)))
        yield database


def tip_of(db: Database, height: int = 1) -> TipView:
    return TipView(state_kv=PrefixedKV(db, STATE_PREFIX), height=height)


def apply_block(db: Database, txs: list[Transaction]) -> None:
    """Apply transactions to the stored state (a stand-in for a connected block)."""
    with db.batch() as batch:
        state = State(PrefixedKV(batch, STATE_PREFIX))
        for tx in txs:
            apply_transaction(state, tx, height=1, params=PARAMS)
        state.commit()


def reason(pool: Mempool, tx: Transaction, db: Database, *, now: int = 0) -> str:
    with pytest.raises(MempoolError) as info:
        pool.add(tx, tip=tip_of(db), now=now)
    return info.value.reason


def test_admission_rules(db: Database) -> None:
    pool = Mempool(params=PARAMS)
    tx0 = transfer(1, 0)
    pool.add(tx0, tip=tip_of(db), now=0)
    assert tx0.id() in pool
    assert reason(pool, tx0, db) == "known"
    # nonce gap: nonce 2 before 1
    assert reason(pool, transfer(1, 2), db) == "nonce_gap"
    # chained nonce is fine
    pool.add(transfer(1, 1), tip=tip_of(db), now=0)
    # bad signature
    forged = dataclasses.replace(transfer(2, 0), fee=11)
    assert reason(pool, forged, db) == "invalid:tx.signature"
    # wrong chain
    assert reason(pool, transfer(2, 0, chain_id=CHAIN_ID + 1), db) == "invalid:tx.chain_id"
    # unfunded sender
    assert reason(pool, transfer(700, 0), db) == "invalid:tx.insufficient_fee_balance"
    # the sender's pending spends count: a second big transfer cannot be afforded
    pool.add(transfer(2, 0, amount=DEV_BALANCE - 100), tip=tip_of(db), now=0)
    assert reason(pool, transfer(2, 1, amount=1000), db) == "invalid:transfer.insufficient_balance"
    assert len(pool) == 3


def test_stale_nonce_is_rejected(db: Database) -> None:
    apply_block(db, [transfer(1, 0)])
    pool = Mempool(params=PARAMS)
    assert reason(pool, transfer(1, 0, fee=99), db) == "invalid:tx.nonce"
    pool.add(transfer(1, 1), tip=tip_of(db), now=0)


def test_replacement_needs_ten_percent_bump(db: Database) -> None:
    pool = Mempool(params=PARAMS)
    original = transfer(1, 0, fee=100)
    pool.add(original, tip=tip_of(db), now=0)
    assert reason(pool, transfer(1, 0, fee=109), db) == "underpriced_replacement"
    replacement = transfer(1, 0, fee=110)
    pool.add(replacement, tip=tip_of(db), now=0)
    assert original.id() not in pool
    assert replacement.id() in pool
    assert len(pool) == 1


def test_sender_and_global_limits_evict_cheapest(db: Database) -> None:
    pool = Mempool(params=PARAMS, config=MempoolConfig(max_per_sender=2, max_total=3))
    pool.add(transfer(1, 0, fee=50), tip=tip_of(db), now=0)
    pool.add(transfer(1, 1, fee=50), tip=tip_of(db), now=0)
    assert reason(pool, transfer(1, 2, fee=50), db) == "sender_limit"
    cheap = transfer(2, 0, fee=5)
    pool.add(cheap, tip=tip_of(db), now=0)
    # full: an equally cheap newcomer is refused, a better one evicts the cheapest tail
    assert reason(pool, transfer(3, 0, fee=5), db) == "pool_full"
    better = transfer(3, 0, fee=20)
    pool.add(better, tip=tip_of(db), now=0)
    assert cheap.id() not in pool
    assert better.id() in pool
    assert len(pool) == 3


def test_expiry_drops_old_and_later_nonces(db: Database) -> None:
    pool = Mempool(params=PARAMS, config=MempoolConfig(lifetime=100))
    first = transfer(1, 0)
    second = transfer(1, 1)
    other = transfer(2, 0)
    pool.add(first, tip=tip_of(db), now=0)
    pool.add(second, tip=tip_of(db), now=50)
    pool.add(other, tip=tip_of(db), now=60)
    assert pool.expire(now=99) == []
    removed = pool.expire(now=100)
    assert {tx.id() for tx in removed} == {first.id(), second.id()}
    assert list(pool.transactions()) == [other]


def test_select_orders_by_fee_rate_and_respects_nonces(db: Database) -> None:
    pool = Mempool(params=PARAMS)
    low_then_high = [transfer(1, 0, fee=1), transfer(1, 1, fee=1000)]
    mid = transfer(2, 0, fee=100)
    for tx in [*low_then_high, mid]:
        pool.add(tx, tip=tip_of(db), now=0)
    chosen = pool.select(max_count=10, max_bytes=10**6)
    assert chosen == [mid, *low_then_high]
    assert pool.select(max_count=1, max_bytes=10**6) == [mid]
    size = len(mid.encode())
    assert pool.select(max_count=10, max_bytes=size) == [mid]


def test_confirmed_and_readded_transactions(db: Database) -> None:
    pool = Mempool(params=PARAMS)
    a0, a1, b0 = transfer(1, 0), transfer(1, 1), transfer(2, 0)
    for tx in (a0, a1, b0):
        pool.add(tx, tip=tip_of(db), now=0)
    # a block confirms a0 and a conflicting b0' (same sender and nonce, another fee)
    b0_conflict = transfer(2, 0, fee=77)
    apply_block(db, [a0, b0_conflict])
    pool.remove_confirmed([a0, b0_conflict], tip=tip_of(db, 2))
    assert pool.transactions() == [a1]
    # a disconnected block's transactions come back only if still valid
    admitted = pool.readd([transfer(3, 0), transfer(2, 0, fee=5)], tip=tip_of(db, 2), now=5)
    assert admitted == [transfer(3, 0).id()]
    assert len(pool) == 2


def test_a_calibration_stays_pending_while_its_seed_is_in_the_window(db: Database) -> None:
    """A calibration names a seed block that must be one of the chain's last
    CALIBRATION_WINDOW blocks: new blocks keep it pending (the node answers once); the
    block that pushes its seed out of the window (or a reorg that drops the seed) removes it,
    so its sender can answer the new tip's questions under the same nonce."""

    node = public_key(dev_seed(1))
    apply_block(db, [sign_transaction(dev_seed(1), chain_id=CHAIN_ID, nonce=n, fee=10,
                                      payload=p)
                     for n, p in ((0, Stake(amount=100)),
                                  (1, RegisterSwarmNode(models=(bytes(32),))))])
    chain = [bytes([9, i]) * 16 for i in range(CALIBRATION_WINDOW + 1)]  # block ids, in order
    seed = chain[0]
    questions = calibration_questions(calibration_seed(seed, node), count=CALIBRATION_QUESTIONS)
    calibration = sign_transaction(dev_seed(1), chain_id=CHAIN_ID, nonce=2, fee=10,
                                   payload=SubmitCalibration(seed_block=seed, answers=tuple(
                                       str(q.expected).encode() for q in questions)))

    def tip_at(height: int) -> TipView:  # the tip is chain[height]; the window ends there
        recent = tuple(reversed(chain[max(0, height + 1 - CALIBRATION_WINDOW):height + 1]))
        return dataclasses.replace(tip_of(db, height + 2), parent_id=recent[0],
                                   recent_block_ids=recent)

    pool = Mempool(params=PARAMS)
    pool.add(calibration, tip=tip_at(0), now=0)
    other = transfer(2, 0)
    pool.add(other, tip=tip_at(0), now=0)
    for height in (1, 2, CALIBRATION_WINDOW - 1):  # other senders' blocks: still valid
        pool.remove_confirmed([], tip=tip_at(height))
        assert calibration in pool.transactions()
    pool.remove_confirmed([], tip=tip_at(CALIBRATION_WINDOW))  # the seed left the window
    assert pool.transactions() == [other]
    # a reorg onto a chain without the seed block drops it at once
    pool.add(calibration, tip=tip_at(3), now=0)
    fork = tuple(bytes([7, i]) * 16 for i in range(4))
    pool.remove_confirmed([], tip=dataclasses.replace(tip_of(db, 5), parent_id=fork[0],
                                                      recent_block_ids=fork))
    assert pool.transactions() == [other]
    # a pool given no window (the parent alone) takes it only on its seed
    with pytest.raises(MempoolError, match=r"calibration\.stale_seed"):
        pool.add(calibration, tip=dataclasses.replace(tip_of(db, 3), parent_id=chain[1]),
                 now=0)
    pool.add(calibration, tip=dataclasses.replace(tip_of(db, 2), parent_id=seed), now=0)


# -- the journal (node.chain.mempool.MempoolJournal) and the relay fee ---------------------

def journaled(db: Database, **config: int) -> Mempool:
    return Mempool(params=PARAMS, config=MempoolConfig(**config), journal=MempoolJournal(db))


def reopened(db: Database, **config: int) -> tuple[Database, Mempool]:
    """Close the database and open it again (a fresh process's view) with an empty pool
    that loads the journal."""
    db.close()
    again = Database(db.path)
    pool = journaled(again, **config)
    pool.load_journal(tip=tip_of(again), now=10)
    return again, pool


def test_admitted_transactions_come_back_in_nonce_order(db: Database) -> None:
    pool = journaled(db)
    txs = [transfer(1, n) for n in range(5)] + [transfer(2, 0), transfer(2, 1)]
    for tx in txs:
        pool.add(tx, tip=tip_of(db), now=3)
    db, again = reopened(db)
    try:
        assert sorted(tx.id() for tx in again.transactions()) == sorted(tx.id() for tx in txs)
        assert [tx.nonce for tx in again.pending_of(txs[0].sender)] == [0, 1, 2, 3, 4]
    finally:
        db.close()


def test_removals_are_journaled(db: Database) -> None:
    pool = journaled(db, lifetime=100)
    cheap, kept, mined, old = transfer(1, 0, fee=10), transfer(2, 0), transfer(3, 0), \
        transfer(0, 0)
    for tx in (cheap, kept, mined):
        pool.add(tx, tip=tip_of(db), now=50)
    pool.add(old, tip=tip_of(db), now=0)
    pool.add(transfer(1, 0, fee=11), tip=tip_of(db), now=50)  # replaces ``cheap``
    apply_block(db, [mined])
    pool.remove_confirmed([mined], tip=tip_of(db))
    assert pool.expire(now=100) == [old]
    expected = sorted(tx.id() for tx in pool.transactions())
    assert cheap.id() not in expected and mined.id() not in expected
    db, again = reopened(db, lifetime=100)
    try:
        assert sorted(tx.id() for tx in again.transactions()) == expected
        assert [k for k, _ in db.iterate_prefix(JOURNAL)] == [JOURNAL + i for i in expected]
    finally:
        db.close()


def test_load_revalidates_against_the_tip(db: Database,
                                          caplog: pytest.LogCaptureFixture) -> None:
    pool = journaled(db)
    first, second, other = transfer(1, 0), transfer(1, 1), transfer(2, 0)
    for tx in (first, second, other):
        pool.add(tx, tip=tip_of(db), now=0)
    # a block mined ``first`` and the node died before the pool heard of it
    apply_block(db, [first])
    with caplog.at_level(logging.INFO, logger="pouwchain.mempool"):
        db, again = reopened(db)
    try:
        assert sorted(tx.id() for tx in again.transactions()) == sorted([second.id(),
                                                                         other.id()])
        dropped = [r for r in caplog.records if r.getMessage() == "mempool.journal_dropped"]
        assert [(r.__dict__["tx"], r.__dict__["reason"]) for r in dropped] == \
            [(first.id().hex(), "invalid:tx.nonce")]
        assert [k for k, _ in db.iterate_prefix(JOURNAL)] == sorted(
            [JOURNAL + second.id(), JOURNAL + other.id()])
    finally:
        db.close()


def test_expired_entries_are_dropped_on_load(db: Database) -> None:
    pool = journaled(db, lifetime=5)
    pool.add(transfer(1, 0), tip=tip_of(db), now=5)  # 10 - 5 >= 5: expired at load
    pool.add(transfer(2, 0), tip=tip_of(db), now=6)
    db, again = reopened(db, lifetime=5)
    try:
        assert [tx.sender for tx in again.transactions()] == [transfer(2, 0).sender]
    finally:
        db.close()


@pytest.mark.parametrize("value", [
    b"\xc1",  # not msgpack
    msgpack.packb([1, b"not a transaction"]),
    msgpack.packb(["x", b""]),
    msgpack.packb({"a": 1}),
])
def test_corrupt_entry_is_dropped_with_a_log_line(db: Database, value: bytes,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    pool = journaled(db)
    good = transfer(1, 0)
    pool.add(good, tip=tip_of(db), now=0)
    bad_key = JOURNAL + bytes(32)
    db.put(bad_key, value)
    with caplog.at_level(logging.WARNING, logger="pouwchain.mempool"):
        db, again = reopened(db)
    try:
        assert again.transactions() == [good]
        dropped = [r for r in caplog.records if r.getMessage() == "mempool.journal_dropped"]
        assert [r.__dict__["tx"] for r in dropped] == [bad_key.hex()]
        assert str(dropped[0].__dict__["reason"]).startswith("corrupt: ")
        assert db.get(bad_key) is None
    finally:
        db.close()


def test_entry_under_another_id_is_corrupt(db: Database) -> None:
    tx = transfer(1, 0)
    db.put(JOURNAL + bytes(32), msgpack.packb([0, tx.encode()]))
    db, again = reopened(db)
    try:
        assert len(again) == 0 and db.get(JOURNAL + bytes(32)) is None
    finally:
        db.close()


def test_a_rejected_transaction_is_not_journaled(db: Database) -> None:
    pool = journaled(db)
    with pytest.raises(MempoolError):
        pool.add(transfer(1, 3), tip=tip_of(db), now=0)  # nonce gap
    assert list(db.iterate_prefix(JOURNAL)) == []


def test_without_a_journal_nothing_is_written(db: Database) -> None:
    pool = Mempool(params=PARAMS)
    pool.add(transfer(1, 0), tip=tip_of(db), now=0)
    assert list(db.iterate_prefix(JOURNAL)) == []
    assert pool.load_journal(tip=tip_of(db), now=0).loaded == 0


# -- relay fee -------------------------------------------------------------------------------

def test_fee_below_the_relay_minimum_is_refused_with_the_minimum(db: Database) -> None:
    pool = Mempool(params=PARAMS, config=MempoolConfig(min_fee_per_kb=1000))  # 1 per byte
    tx = transfer(1, 0, fee=1)
    size = len(tx.encode())
    with pytest.raises(MempoolError) as info:
        pool.add(tx, tip=tip_of(db), now=0)
    assert info.value.reason == "fee_too_low"
    assert f"minimum {size}" in str(info.value)
    paid = transfer(1, 0, fee=2 * size)  # a bigger fee may take a byte more to encode
    pool.add(paid, tip=tip_of(db), now=0)
    assert paid.id() in pool


def test_default_minimum_refuses_a_zero_fee_and_fee_ten_covers_any_size(db: Database) -> None:
    pool = Mempool(params=PARAMS)
    assert DEFAULT_MIN_FEE_PER_KB > 0
    with pytest.raises(MempoolError) as info:
        pool.add(transfer(1, 0, fee=0), tip=tip_of(db), now=0)
    assert info.value.reason == "fee_too_low"
    assert MempoolConfig().min_fee(MAX_TX_SIZE) <= 10
    assert MempoolConfig().min_fee(1) == 1
    assert MempoolConfig(min_fee_per_kb=0).min_fee(MAX_TX_SIZE) == 0


async def test_group_commit_fsyncs_what_was_admitted_once(db: Database) -> None:
    journal = MempoolJournal(db, sync=False)
    pool = Mempool(params=PARAMS, journal=journal)
    assert not journal.flush()  # nothing written yet
    pool.add(transfer(1, 0), tip=tip_of(db), now=0)
    pool.add(transfer(2, 0), tip=tip_of(db), now=0)
    assert journal.flush() and journal.fsyncs == 1
    assert not journal.flush()
    flusher = JournalFlusher(journal, interval=3600.0)
    await flusher.start()
    pool.add(transfer(3, 0), tip=tip_of(db), now=0)
    await flusher.stop()  # the last group commit, before the database closes
    assert journal.fsyncs == 2
