"""Balances: transfers and the credit/debit primitives every contract uses."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from contracts.base import Payload, PayloadKind, TxContext, require
from core.encoding import MAX_U64, U64, PublicKey
from core.records import Account
from core.state import State


def credit(state: State, address: bytes, amount: int, *, rule: str = "balance.overflow") -> None:
    """Add to a balance; a u64 overflow breaks ``rule``."""
    account = state.account(address)
    # the new balance must fit in u64
    require(account.balance + amount <= MAX_U64, rule)
    state.set_account(address, account.with_balance(account.balance + amount))


def debit(state: State, address: bytes, amount: int, *, rule: str) -> None:
    """Subtract from a balance; insufficient funds break ``rule``."""
    account = state.account(address)
    # the balance must cover the amount
    require(account.balance >= amount, rule, f"balance {account.balance} < {amount}")
    state.set_account(address, account.with_balance(account.balance - amount))


@dataclasses.dataclass(frozen=True)
class Transfer(Payload):
    """Move ``amount`` from the sender to ``to``."""

    KIND_ID: ClassVar[int] = 0
    to: PublicKey
    amount: U64


def apply_transfer(state: State, payload: Transfer, ctx: TxContext) -> None:
    """Transfer rules, in order."""
    # amount must be positive
    require(payload.amount > 0, "transfer.zero_amount")
    # sender must hold the amount (the fee is already paid)
    debit(state, ctx.sender, payload.amount, rule="transfer.insufficient_balance")
    # recipient's balance must not overflow
    credit(state, payload.to, payload.amount, rule="transfer.overflow")


TRANSFER = PayloadKind(Transfer, apply_transfer)
__all__ = ["TRANSFER", "Account", "Transfer", "apply_transfer", "credit", "debit"]
