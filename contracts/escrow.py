"""Swarm escrow: a client locks funds that swarm rounds draw their fees from.

A swarm round does its work before anything reaches the chain (the fast path), and its
settlement lands up to `MAX_SETTLEMENT_LAG` blocks later. If the fee came straight from the
client's balance, a client could ask, take the answer and empty its account before the
settlement lands, and the nodes would have worked for nothing. So a client first locks funds
with ``DepositEscrow``; a node serving a request from another client checks that the
client's locked escrow covers the fee (and the fees of its rounds still in flight), and
settlements draw from the escrow first. Getting funds out is slow on purpose:
``BeginEscrowRelease`` moves an amount to *releasing*, which still pays settlements, and
``ClaimEscrowRelease`` returns it to the balance only `ESCROW_RELEASE_DELAY` blocks later,
after every round that could have counted on it has had its window to settle.

State layout: ``swescrow/<client>`` -> `SwarmEscrow` (absent == nothing locked).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from contracts.bank import credit, debit
from contracts.base import Payload, PayloadKind, TxContext, require
from core.encoding import MAX_U64, U64, Canonical
from core.state import State

ESCROW_PREFIX = b"swescrow/"
#: Blocks between beginning a release and claiming it: twice the settlement window
#: (contracts.swarm.MAX_SETTLEMENT_LAG), so every round asked while the funds were locked
#: can settle before they leave.
ESCROW_RELEASE_DELAY = 200


@dataclasses.dataclass(frozen=True)
class SwarmEscrow(Canonical):
    """A client's escrow: ``locked`` backs new requests; ``releasing`` still pays
    settlements and becomes claimable at ``release_height``."""

    TAG: ClassVar[bytes] = b"pouw/swescrow"
    locked: U64
    releasing: U64
    release_height: U64


EMPTY = SwarmEscrow(locked=0, releasing=0, release_height=0)


@dataclasses.dataclass(frozen=True)
class DepositEscrow(Payload):
    """Lock ``amount`` of the sender's balance for swarm fees."""

    KIND_ID: ClassVar[int] = 12
    amount: U64


@dataclasses.dataclass(frozen=True)
class BeginEscrowRelease(Payload):
    """Move ``amount`` of locked escrow to releasing (claimable after the release delay)."""

    KIND_ID: ClassVar[int] = 13
    amount: U64


@dataclasses.dataclass(frozen=True)
class ClaimEscrowRelease(Payload):
    """Return the matured releasing amount to the sender's balance."""

    KIND_ID: ClassVar[int] = 14


def escrow_of(state: State, client: bytes) -> SwarmEscrow:
    return state.record(ESCROW_PREFIX + client, SwarmEscrow) or EMPTY


def _set_escrow(state: State, client: bytes, escrow: SwarmEscrow) -> None:
    state.set_record(ESCROW_PREFIX + client, None if escrow == EMPTY else escrow)


def apply_deposit_escrow(state: State, payload: DepositEscrow, ctx: TxContext) -> None:
    """Deposit rules, in order."""
    escrow = escrow_of(state, ctx.sender)
    # amount must be positive
    require(payload.amount > 0, "escrow.zero_amount")
    # the locked amount must fit u64
    require(escrow.locked + payload.amount <= MAX_U64, "escrow.overflow")
    # the sender must hold the amount (the fee is already paid)
    debit(state, ctx.sender, payload.amount, rule="escrow.insufficient_balance")
    _set_escrow(state, ctx.sender, dataclasses.replace(
        escrow, locked=escrow.locked + payload.amount))


def apply_begin_escrow_release(state: State, payload: BeginEscrowRelease,
                               ctx: TxContext) -> None:
    """Begin-release rules, in order. A second release adds to the first and restarts
    the delay (one releasing amount per client keeps the record fixed-size)."""
    escrow = escrow_of(state, ctx.sender)
    release = ctx.height + ESCROW_RELEASE_DELAY
    # amount must be positive
    require(payload.amount > 0, "escrow.zero_amount")
    # amount must not exceed the locked escrow
    require(payload.amount <= escrow.locked, "escrow.insufficient_escrow",
            f"locked {escrow.locked} < {payload.amount}")
    # the releasing amount and the release height must fit u64
    require(escrow.releasing + payload.amount <= MAX_U64 and release <= MAX_U64,
            "escrow.overflow")
    _set_escrow(state, ctx.sender, SwarmEscrow(
        locked=escrow.locked - payload.amount, releasing=escrow.releasing + payload.amount,
        release_height=release))


def apply_claim_escrow_release(state: State, payload: ClaimEscrowRelease,
                               ctx: TxContext) -> None:
    """Claim rules, in order."""
    escrow = escrow_of(state, ctx.sender)
    # something must be releasing
    require(escrow.releasing > 0, "escrow.nothing_releasing")
    # the release delay must have passed
    require(escrow.release_height <= ctx.height, "escrow.not_matured",
            f"claimable at height {escrow.release_height}")
    _set_escrow(state, ctx.sender, dataclasses.replace(escrow, releasing=0, release_height=0))
    # the claimed amount must fit the balance
    credit(state, ctx.sender, escrow.releasing, rule="escrow.overflow")


def pay_fee(state: State, client: bytes, fee: int, *, rule: str) -> int:
    """Take a swarm fee: from the client's locked escrow, then its releasing escrow, then
    its balance (a client's own node may serve it unescrowed; other nodes check
    `escrow_of(...).locked` before serving). Returns how much came from the escrow;
    ``rule`` breaks if all three together fall short."""
    escrow = escrow_of(state, client)
    from_locked = min(fee, escrow.locked)
    from_releasing = min(fee - from_locked, escrow.releasing)
    rest = fee - from_locked - from_releasing
    # the escrow and the balance together must cover the fee
    debit(state, client, rest, rule=rule)
    releasing = escrow.releasing - from_releasing
    _set_escrow(state, client, SwarmEscrow(
        locked=escrow.locked - from_locked, releasing=releasing,
        release_height=escrow.release_height if releasing else 0))
    return from_locked + from_releasing


def refund_fee(state: State, client: bytes, fee: int, *, from_escrow: int, rule: str) -> None:
    """Give back a fee `pay_fee` took (a voided swarm settlement): the ``from_escrow`` part to
    the client's locked escrow, where a new settlement of the round takes it from first (it
    may have come from releasing escrow: the client begins that release again), the rest to
    its balance. ``rule`` breaks if an amount does not fit."""
    escrow = escrow_of(state, client)
    # the locked escrow must fit u64
    require(escrow.locked + from_escrow <= MAX_U64, rule)
    _set_escrow(state, client, dataclasses.replace(escrow, locked=escrow.locked + from_escrow))
    credit(state, client, fee - from_escrow, rule=rule)


DEPOSIT_ESCROW = PayloadKind(DepositEscrow, apply_deposit_escrow)
BEGIN_ESCROW_RELEASE = PayloadKind(BeginEscrowRelease, apply_begin_escrow_release)
CLAIM_ESCROW_RELEASE = PayloadKind(ClaimEscrowRelease, apply_claim_escrow_release)
