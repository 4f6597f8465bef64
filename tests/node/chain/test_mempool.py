"""Tests of the mempool against a real tip state in LevelDB."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.genesis import DEV_BALANCE, build_genesis, dev_config, dev_seed
from consensus.transition import apply_transaction
from consensus.tx import Transaction, public_key, sign_transaction
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
from node.chain.mempool import Mempool, MempoolConfig, MempoolError, TipView
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
