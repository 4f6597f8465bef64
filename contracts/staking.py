"""Staking: bond balance, begin unbonding (delayed release), withdraw matured stake.

Unbonding is delayed by ``params.unbonding_delay`` blocks so stake stays slashable for a
while after its owner stops participating (and cannot be moved instantly between forks).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from contracts.bank import credit, debit
from contracts.base import Payload, PayloadKind, TxContext, require
from core.encoding import MAX_U64, U64
from core.records import Unbonding
from core.state import State


@dataclasses.dataclass(frozen=True)
class Stake(Payload):
    """Bond ``amount`` of the sender's balance."""

    KIND_ID: ClassVar[int] = 1
    amount: U64


@dataclasses.dataclass(frozen=True)
class BeginUnstake(Payload):
    """Move ``amount`` of bonded stake to unbonding, released after the unbonding delay."""

    KIND_ID: ClassVar[int] = 2
    amount: U64


@dataclasses.dataclass(frozen=True)
class Withdraw(Payload):
    """Return every matured unbonding entry to the sender's balance."""

    KIND_ID: ClassVar[int] = 3


def apply_stake(state: State, payload: Stake, ctx: TxContext) -> None:
    """Stake rules, in order."""
    record = state.stake(ctx.sender)
    # amount must be positive
    require(payload.amount > 0, "stake.zero_amount")
    # bonded stake must not overflow u64
    require(record.bonded + payload.amount <= MAX_U64, "stake.overflow")
    # sender must hold the amount (the fee is already paid)
    debit(state, ctx.sender, payload.amount, rule="stake.insufficient_balance")
    state.set_stake(ctx.sender, dataclasses.replace(record, bonded=record.bonded + payload.amount))


def apply_begin_unstake(state: State, payload: BeginUnstake, ctx: TxContext) -> None:
    """Begin-unstake rules, in order."""
    record = state.stake(ctx.sender)
    release = ctx.height + ctx.params.unbonding_delay
    # amount must be positive
    require(payload.amount > 0, "unstake.zero_amount")
    # amount must not exceed the bonded stake
    require(payload.amount <= record.bonded, "unstake.insufficient_stake")
    # the number of pending unbonding entries is bounded
    require(len(record.unbonding) < ctx.params.max_unbonding_entries, "unstake.too_many_entries")
    # the release height must fit u64
    require(release <= MAX_U64, "unstake.release_overflow")
    entry = Unbonding(release_height=release, amount=payload.amount)
    state.set_stake(
        ctx.sender,
        dataclasses.replace(
            record, bonded=record.bonded - payload.amount, unbonding=(*record.unbonding, entry)
        ),
    )


def apply_withdraw(state: State, payload: Withdraw, ctx: TxContext) -> None:
    """Withdraw rules, in order."""
    record = state.stake(ctx.sender)
    matured = [u for u in record.unbonding if u.release_height <= ctx.height]
    pending = tuple(u for u in record.unbonding if u.release_height > ctx.height)
    # at least one unbonding entry must have matured
    require(bool(matured), "withdraw.nothing_matured")
    state.set_stake(ctx.sender, dataclasses.replace(record, unbonding=pending))
    # the released amount must fit the balance
    credit(state, ctx.sender, sum(u.amount for u in matured), rule="withdraw.overflow")


def slash_stake(state: State, address: bytes, amount: int) -> int:
    """Take up to ``amount`` from ``address``'s stake and return how much was taken (burned
    or handed on by the caller): bonded stake first, then pending unbonding entries, the
    latest release first (stake stays slashable while it unbonds)."""
    record = state.stake(address)
    from_bonded = min(amount, record.bonded)
    rest = amount - from_bonded
    kept: list[Unbonding] = []
    for entry in reversed(record.unbonding):
        take = min(rest, entry.amount)
        rest -= take
        if entry.amount > take:
            kept.append(Unbonding(release_height=entry.release_height, amount=entry.amount - take))
    state.set_stake(address, dataclasses.replace(
        record, bonded=record.bonded - from_bonded, unbonding=tuple(reversed(kept))))
    return amount - rest


STAKE = PayloadKind(Stake, apply_stake)
BEGIN_UNSTAKE = PayloadKind(BeginUnstake, apply_begin_unstake)
WITHDRAW = PayloadKind(Withdraw, apply_withdraw)
