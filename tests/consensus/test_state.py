"""State transitions for every payload kind, atomicity, incremental root and undo."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.genesis import DEV_BALANCE, DEV_STAKE, dev_config, dev_seed
from consensus.transition import apply_block_transactions
from consensus.tx import Transaction, public_key
from contracts import BeginUnstake, RegisterSwarmNode, Stake, Transfer, Withdraw
from core.errors import TransactionError
from core.interfaces import MemoryKV, PrefixedKV
from core.lthash import LtHash
from core.records import Account, StakeRecord, SwarmNode, Unbonding
from core.state import LANES_KEY, BlockUndo, State, root_from_items
from tests.framework.chain import MINER, Chain, apply, new_chain, tx

A, B, C = (public_key(dev_seed(i)) for i in range(3))
PARAMS = dev_config().params


def assert_rejected(chain: Chain, t: Transaction, rule: str, height: int = 1) -> None:
    """The transaction fails with ``rule`` and leaves state and storage untouched."""
    root, data = chain.state.root(), dict(chain.kv.data)
    with pytest.raises(TransactionError) as info:
        apply(chain, t, height)
    assert info.value.rule == rule
    assert chain.state.root() == root
    assert chain.kv.data == data


def assert_root_consistent(chain: Chain) -> None:
    assert chain.state.root() == root_from_items(chain.kv.items())


# -- transfer ---------------------------------------------------------------------------
def test_transfer(chain: Chain) -> None:
    assert apply(chain, tx(1, 0, Transfer(to=C, amount=500), fee=10)) == 10
    assert chain.state.account(B) == Account(balance=DEV_BALANCE - 510, nonce=1)
    assert chain.state.account(C).balance == DEV_BALANCE + 500
    assert_root_consistent(chain)


def test_transfer_to_self_only_costs_fee(chain: Chain) -> None:
    apply(chain, tx(1, 0, Transfer(to=B, amount=500), fee=10))
    assert chain.state.account(B) == Account(balance=DEV_BALANCE - 10, nonce=1)


def test_transfer_to_new_account_creates_it(chain: Chain) -> None:
    new = b"\x42" * 32
    apply(chain, tx(1, 0, Transfer(to=new, amount=1)))
    assert chain.state.account(new) == Account(balance=1, nonce=0)


def test_transfer_failures(chain: Chain) -> None:
    assert_rejected(chain, tx(1, 0, Transfer(to=C, amount=0)), "transfer.zero_amount")
    assert_rejected(
        chain, tx(1, 0, Transfer(to=C, amount=DEV_BALANCE)), "transfer.insufficient_balance"
    )
    assert_rejected(chain, tx(1, 1, Transfer(to=C, amount=1)), "tx.nonce")
    assert_rejected(chain, tx(1, 0, Transfer(to=C, amount=1), chain_id=1), "tx.chain_id")
    assert_rejected(
        chain,
        tx(1, 0, Transfer(to=C, amount=1), fee=DEV_BALANCE + 1),
        "tx.insufficient_fee_balance",
    )
    bad_sig = dataclasses.replace(tx(1, 0, Transfer(to=C, amount=1)), fee=11)
    assert_rejected(chain, bad_sig, "tx.signature")
    unfunded = tx(50, 0, Transfer(to=C, amount=1), fee=0)
    assert_rejected(chain, unfunded, "transfer.insufficient_balance")


def test_transfer_overflow_rejected() -> None:
    chain = new_chain(dev_config(balances={C.hex(): 2**64 - 1, B.hex(): 10}))
    assert_rejected(chain, tx(1, 0, Transfer(to=C, amount=5), fee=0), "transfer.overflow")


def test_nonce_sequence_and_replay(chain: Chain) -> None:
    first = tx(1, 0, Transfer(to=C, amount=1))
    apply(chain, first)
    assert_rejected(chain, first, "tx.nonce")  # replay
    apply(chain, tx(1, 1, Transfer(to=C, amount=1)))
    assert chain.state.account(B).nonce == 2


# -- staking ----------------------------------------------------------------------------
def test_stake(chain: Chain) -> None:
    apply(chain, tx(1, 0, Stake(amount=1000), fee=1))
    assert chain.state.stake(B) == StakeRecord(bonded=1000)
    assert chain.state.account(B).balance == DEV_BALANCE - 1001
    assert_root_consistent(chain)


def test_stake_failures(chain: Chain) -> None:
    assert_rejected(chain, tx(1, 0, Stake(amount=0)), "stake.zero_amount")
    assert_rejected(chain, tx(1, 0, Stake(amount=DEV_BALANCE)), "stake.insufficient_balance")


def test_begin_unstake_and_withdraw(chain: Chain) -> None:
    delay = chain.params.unbonding_delay
    apply(chain, tx(0, 0, BeginUnstake(amount=300)), height=10)
    apply(chain, tx(0, 1, BeginUnstake(amount=200)), height=12)
    assert chain.state.stake(A) == StakeRecord(
        bonded=DEV_STAKE - 500,
        unbonding=(Unbonding(release_height=10 + delay, amount=300),
                   Unbonding(release_height=12 + delay, amount=200)),
    )
    # nothing matured yet
    assert_rejected(chain, tx(0, 2, Withdraw()), "withdraw.nothing_matured", height=10 + delay - 1)
    before = chain.state.account(A).balance
    apply(chain, tx(0, 2, Withdraw(), fee=5), height=10 + delay)  # only the first matured
    assert chain.state.account(A).balance == before - 5 + 300
    assert chain.state.stake(A).unbonding == (Unbonding(release_height=12 + delay, amount=200),)
    apply(chain, tx(0, 3, Withdraw(), fee=5), height=100)
    assert chain.state.stake(A) == StakeRecord(bonded=DEV_STAKE - 500)
    assert_root_consistent(chain)


def test_full_unstake_deletes_record(chain: Chain) -> None:
    apply(chain, tx(0, 0, BeginUnstake(amount=DEV_STAKE)), height=1)
    apply(chain, tx(0, 1, Withdraw()), height=1 + chain.params.unbonding_delay)
    assert chain.kv.get(b"stake/" + A) is None
    assert_root_consistent(chain)


def test_unstake_failures(chain: Chain) -> None:
    assert_rejected(chain, tx(0, 0, BeginUnstake(amount=0)), "unstake.zero_amount")
    assert_rejected(
        chain, tx(0, 0, BeginUnstake(amount=DEV_STAKE + 1)), "unstake.insufficient_stake"
    )
    assert_rejected(chain, tx(1, 0, BeginUnstake(amount=1)), "unstake.insufficient_stake")
    assert_rejected(chain, tx(1, 0, Withdraw()), "withdraw.nothing_matured")


def test_unbonding_entries_bounded(chain: Chain) -> None:
    limit = chain.params.max_unbonding_entries
    for nonce in range(limit):
        apply(chain, tx(0, nonce, BeginUnstake(amount=1)))
    assert_rejected(chain, tx(0, limit, BeginUnstake(amount=1)), "unstake.too_many_entries")


# -- registry ---------------------------------------------------------------------------
def test_register_swarm_node(chain: Chain) -> None:
    models = (b"\x01" * 32, b"\x02" * 32)
    apply(chain, tx(0, 0, RegisterSwarmNode(models=models, endpoint=b"tcp://1.2.3.4:9000")))
    assert chain.state.swarm_node(A) == SwarmNode(models=models, endpoint=b"tcp://1.2.3.4:9000")
    apply(chain, tx(0, 1, RegisterSwarmNode(models=models[:1])))  # re-registering replaces
    assert chain.state.swarm_node(A) == SwarmNode(models=models[:1])
    assert_root_consistent(chain)


def test_register_failures(chain: Chain) -> None:
    assert_rejected(chain, tx(0, 0, RegisterSwarmNode(models=())), "register.no_models")
    assert_rejected(
        chain, tx(1, 0, RegisterSwarmNode(models=(bytes(32),))), "register.insufficient_stake"
    )


def test_reputation_is_state(chain: Chain) -> None:
    root = chain.state.root()
    chain.state.set_reputation(A, 7)
    assert chain.state.reputation(A) == 7
    assert chain.state.root() != root
    assert_root_consistent(chain)
    chain.state.set_reputation(A, 0)
    assert chain.state.root() == root


# -- blocks, roots, undo ----------------------------------------------------------------
def test_block_pays_subsidy_plus_fees(chain: Chain) -> None:
    txs = [tx(1, 0, Transfer(to=C, amount=1), fee=3), tx(2, 0, Stake(amount=9), fee=4)]
    fees = apply_block_transactions(chain.state, txs, height=1, miner=MINER, params=chain.params)
    assert fees == 7
    assert chain.state.account(MINER).balance == chain.params.block_subsidy + 7


def test_invalid_transaction_fails_the_block(chain: Chain) -> None:
    txs = [tx(1, 0, Transfer(to=C, amount=1)), tx(1, 0, Transfer(to=C, amount=1))]
    chain.state.begin_block()
    with pytest.raises(TransactionError, match=r"tx\.nonce"):
        apply_block_transactions(chain.state, txs, height=1, miner=MINER, params=chain.params)
    chain.state.abort_block()
    assert chain.state.account(B) == Account(balance=DEV_BALANCE)


def test_undo_restores_root_and_storage(chain: Chain) -> None:
    root, data = chain.state.root(), dict(chain.kv.data)
    chain.state.begin_block()
    txs = [
        tx(1, 0, Transfer(to=b"\x55" * 32, amount=5)),
        tx(0, 0, BeginUnstake(amount=5)),
        tx(0, 1, RegisterSwarmNode(models=(bytes(32),))),
        tx(1, 1, Transfer(to=C, amount=DEV_BALANCE - 25), fee=10),  # drains B to zero
    ]
    apply_block_transactions(chain.state, txs, height=1, miner=MINER, params=chain.params)
    undo = chain.state.end_block()
    assert chain.state.root() != root
    assert chain.kv.get(LANES_KEY) == chain.state.lthash.to_bytes()
    undo = BlockUndo.decode(undo.encode())  # undo data survives storage
    chain.state.apply_undo(undo)
    assert chain.state.root() == root
    assert chain.kv.data == data


def test_lanes_persist_across_instances(chain: Chain) -> None:
    chain.state.begin_block()
    apply(chain, tx(1, 0, Transfer(to=C, amount=1)))
    chain.state.end_block()
    assert State(chain.kv).root() == chain.state.root()


def test_state_over_prefixed_store() -> None:
    backing = MemoryKV()
    state = State(PrefixedKV(backing, b"s/"))
    state.set_account(A, Account(balance=1))
    assert list(backing.data) == [b"s/acct/" + A]


def test_lthash_rejects_bad_length() -> None:
    with pytest.raises(ValueError):
        LtHash(b"\x00" * 10)


ops = st.lists(
    st.tuples(
        st.sampled_from(["account", "stake", "rep", "node"]),
        st.integers(0, 3),
        st.integers(0, 3),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_incremental_root_equals_scratch_and_undo_is_exact(seq: list[tuple[str, int, int]]) -> None:
    """Any sequence of writes: incremental root == recomputed root; undo restores exactly."""
    kv = MemoryKV()
    state = State(kv)
    state.set_account(A, Account(balance=1))
    state.commit()
    root0, data0 = state.root(), dict(kv.data)
    state.begin_block()
    for kind, who, value in seq:
        address = (A, B, C, MINER)[who]
        if kind == "account":
            state.set_account(address, Account(balance=value, nonce=value // 2))
        elif kind == "stake":
            state.set_stake(address, StakeRecord(bonded=value))
        elif kind == "rep":
            state.set_reputation(address, value)
        else:
            node = SwarmNode(models=(bytes([value]) * 32,)) if value else None
            state.set_swarm_node(address, node)
        assert state.root() == root_from_items(kv.items())
    undo = state.end_block()
    assert State(kv).root() == root_from_items(kv.items())
    state.apply_undo(undo)
    assert state.root() == root0
    assert kv.data == data0


def test_root_is_order_independent() -> None:
    s1, s2 = State(MemoryKV()), State(MemoryKV())
    s1.set_account(A, Account(balance=1))
    s1.set_account(B, Account(balance=2))
    s2.set_account(B, Account(balance=2))
    s2.set_account(A, Account(balance=1))
    assert s1.root() == s2.root()
    s2.set_account(B, Account(balance=3))
    assert s1.root() != s2.root()
