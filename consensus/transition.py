"""The state transition: one transaction's common rules, then its contract; a block's reward.

Before a block's first transaction, every `BEGIN_BLOCK_HOOKS` entry runs in order (held swarm
rounds whose inclusion window closed pay out there, so payouts never wait for traffic; the
finality checkpoint and validator set of the epoch are recorded there).
Before a transaction's payload runs, the common rules (chain, kind, signature, nonce, fee)
are checked one per line, then every `BEGIN_TRANSACTION_HOOKS` entry runs in order (the
swarm's epoch table is recorded there), then the fee is paid and the contract applied.
Everything a failed transaction wrote is reverted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from consensus.tx import Transaction
from contracts import PAYLOAD_KINDS, TxContext
from contracts.bank import credit
from contracts.base import require
from contracts.finality import begin_finality_block
from contracts.swarm import finalize_held_rounds, record_epoch_snapshot
from core.encoding import MAX_U64
from core.params import ChainParams
from core.records import Account
from core.state import State

BeginTransactionHook = Callable[[State, TxContext], None]


def record_swarm_epoch(state: State, ctx: TxContext) -> None:
    """The swarm's begin-epoch rules (`contracts.swarm.record_epoch_snapshot`)."""
    record_epoch_snapshot(state, height=ctx.height, params=ctx.params)


#: Run in this order after a transaction's common rules pass and before its fee is paid.
BEGIN_TRANSACTION_HOOKS: tuple[BeginTransactionHook, ...] = (record_swarm_epoch,)

#: A block-level hook: the context's ``sender`` is the block's miner.
BeginBlockHook = Callable[[State, TxContext], None]

#: Run in this order before a block's first transaction, in every block (empty ones too):
#: held swarm rounds whose inclusion window closed before this height pay out; then the
#: finality epoch's checkpoint and validator set are recorded (docs/finality.md §2-§3).
BEGIN_BLOCK_HOOKS: tuple[BeginBlockHook, ...] = (finalize_held_rounds, begin_finality_block)


def begin_block(state: State, *, height: int, miner: bytes, params: ChainParams,
                parent_id: bytes = b"", recent_block_ids: Sequence[bytes] = ()) -> None:
    """Run `BEGIN_BLOCK_HOOKS` in order (validation and the miner's template both call it)."""
    ctx = TxContext(sender=miner, height=height, params=params, parent_id=parent_id,
                    recent_block_ids=recent_ids(parent_id, recent_block_ids))
    for hook in BEGIN_BLOCK_HOOKS:
        hook(state, ctx)


def pay_block_reward(state: State, *, miner: bytes, fees: int, params: ChainParams) -> None:
    """Credit the miner the subsidy plus the block's fees."""
    # the block reward (subsidy + fees) must fit the miner's balance
    credit(state, miner, params.block_subsidy + fees, rule="block.reward_overflow")


def apply_transaction(
    state: State,
    tx: Transaction,
    *,
    height: int,
    params: ChainParams,
    signature_verified: bool = False,
    parent_id: bytes = b"",
    recent_block_ids: Sequence[bytes] = (),
) -> int:
    """Apply one transaction atomically and return its fee; raise `TransactionError`.

    On failure nothing the transaction wrote remains (block builders can skip it).
    ``signature_verified`` says the caller has already checked ``tx.verify_signature()``
    (e.g. a thread pool checking a whole block first); the rule is then not re-run.
    ``parent_id``: the id of the block this transaction's block builds on (contracts that
    draw from it, e.g. calibration, reject the transaction when it is empty).
    ``recent_block_ids``: that chain's latest block ids, newest first, starting with
    ``parent_id`` (`recent_ids`); a calibration's seed block must be among the first
    `contracts.registry.CALIBRATION_WINDOW`. Not given: the parent alone.
    """
    recent = recent_ids(parent_id, recent_block_ids)
    snapshot = state.snapshot()
    try:
        _apply_transaction(state, tx, height=height, params=params,
                           signature_verified=signature_verified, parent_id=parent_id,
                           recent_block_ids=recent)
    except BaseException:
        state.revert(snapshot)
        raise
    return tx.fee


def recent_ids(parent_id: bytes, recent_block_ids: Sequence[bytes]) -> tuple[bytes, ...]:
    """The recent block ids a transaction is applied with: those given (they must start with
    the parent), else the parent alone (none without a parent). Raises ValueError on a
    caller's mismatch: it is a bug, never a rule a transaction can break."""
    if not recent_block_ids:
        return (parent_id,) if parent_id else ()
    if recent_block_ids[0] != parent_id:
        raise ValueError("recent_block_ids must start with parent_id")
    return tuple(recent_block_ids)


def _apply_transaction(state: State, tx: Transaction, *, height: int, params: ChainParams,
                       signature_verified: bool, parent_id: bytes,
                       recent_block_ids: tuple[bytes, ...]) -> None:
    sender = state.account(tx.sender)
    kind = PAYLOAD_KINDS.get(type(tx.payload).KIND_ID)
    # the transaction must be for this chain
    require(tx.chain_id == params.chain_id, "tx.chain_id", f"chain {tx.chain_id}")
    # the payload kind must be registered
    require(kind is not None and kind.cls is type(tx.payload), "tx.payload_kind")
    # the signature must verify over the canonical unsigned bytes
    if not signature_verified:
        tx.verify_signature()
    # nonce must be the sender's next nonce
    require(tx.nonce == sender.nonce, "tx.nonce", f"expected {sender.nonce}, got {tx.nonce}")
    # the nonce must not overflow
    require(sender.nonce < MAX_U64, "tx.nonce_overflow")
    # the sender must afford the fee
    require(sender.balance >= tx.fee, "tx.insufficient_fee_balance",
            f"balance {sender.balance} < {tx.fee}")
    ctx = TxContext(sender=tx.sender, height=height, params=params, parent_id=parent_id,
                    recent_block_ids=recent_block_ids)
    # the begin-transaction hooks run, in order (the swarm's epoch table is recorded before
    # the first transaction of each epoch)
    for hook in BEGIN_TRANSACTION_HOOKS:
        hook(state, ctx)
    # pay the fee and consume the nonce (one write)
    state.set_account(tx.sender, Account(balance=sender.balance - tx.fee, nonce=sender.nonce + 1))
    assert kind is not None
    kind.apply(state, tx.payload, ctx)


def apply_block_transactions(
    state: State,
    transactions: Sequence[Transaction],
    *,
    height: int,
    miner: bytes,
    params: ChainParams,
    signatures_verified: bool = False,
    parent_id: bytes = b"",
    recent_block_ids: Sequence[bytes] = (),
) -> int:
    """Run the begin-block hooks, apply a block's transactions in order, then pay the miner
    subsidy + fees.

    Any invalid transaction invalidates the block (the error propagates; the caller aborts
    the block). Returns the total fees. ``signatures_verified``: every transaction's
    signature has been checked already (see `consensus.tx.signatures_valid`), so the
    sequential transition skips that rule; the outcome is the same, only faster.
    ``parent_id``/``recent_block_ids``: as for `apply_transaction` (the chain store gives the
    last `contracts.registry.CALIBRATION_WINDOW` block ids ending at the parent).
    """
    recent = recent_ids(parent_id, recent_block_ids)
    begin_block(state, height=height, miner=miner, params=params, parent_id=parent_id,
                recent_block_ids=recent)
    fees = 0
    for tx in transactions:
        fees += apply_transaction(state, tx, height=height, params=params,
                                  signature_verified=signatures_verified, parent_id=parent_id,
                                  recent_block_ids=recent)
    pay_block_reward(state, miner=miner, fees=fees, params=params)
    return fees
