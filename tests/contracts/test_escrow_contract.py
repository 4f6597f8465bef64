"""Swarm escrow: deposit locks funds, release is delayed, settlements draw from the escrow."""

from __future__ import annotations

import pytest

from consensus.genesis import DEV_BALANCE
from contracts import PAYLOAD_CLASSES, BeginEscrowRelease, ClaimEscrowRelease, DepositEscrow
from contracts.escrow import ESCROW_RELEASE_DELAY, SwarmEscrow, escrow_of, pay_fee
from core.errors import TransactionError
from tests.framework.chain import Chain, addr, apply, balance, tx

CLIENT = 1
FEE = 10


def test_kinds_are_registered() -> None:
    assert (PAYLOAD_CLASSES[12], PAYLOAD_CLASSES[13], PAYLOAD_CLASSES[14]) == (
        DepositEscrow, BeginEscrowRelease, ClaimEscrowRelease)


def test_deposit_release_claim(chain: Chain) -> None:
    state = chain.state
    apply(state, tx(CLIENT, 0, DepositEscrow(amount=5_000), fee=FEE))
    assert balance(state, CLIENT) == DEV_BALANCE - FEE - 5_000
    assert escrow_of(state, addr(CLIENT)) == SwarmEscrow(locked=5_000, releasing=0,
                                                         release_height=0)
    apply(state, tx(CLIENT, 1, BeginEscrowRelease(amount=2_000), fee=FEE), height=10)
    assert escrow_of(state, addr(CLIENT)) == SwarmEscrow(
        locked=3_000, releasing=2_000, release_height=10 + ESCROW_RELEASE_DELAY)
    with pytest.raises(TransactionError) as err:
        apply(state, tx(CLIENT, 2, ClaimEscrowRelease(), fee=FEE),
              height=9 + ESCROW_RELEASE_DELAY)
    assert err.value.rule == "escrow.not_matured"
    apply(state, tx(CLIENT, 2, ClaimEscrowRelease(), fee=FEE), height=10 + ESCROW_RELEASE_DELAY)
    assert balance(state, CLIENT) == DEV_BALANCE - 3 * FEE - 3_000
    assert escrow_of(state, addr(CLIENT)).releasing == 0


@pytest.mark.parametrize(("payload", "rule"), [
    (DepositEscrow(amount=0), "escrow.zero_amount"),
    (DepositEscrow(amount=DEV_BALANCE), "escrow.insufficient_balance"),  # the fee is paid first
    (BeginEscrowRelease(amount=0), "escrow.zero_amount"),
    (BeginEscrowRelease(amount=1), "escrow.insufficient_escrow"),
    (ClaimEscrowRelease(), "escrow.nothing_releasing"),
])
def test_bad_escrow_transactions_leave_no_trace(chain: Chain, payload: object,
                                                rule: str) -> None:
    root = chain.state.root()
    with pytest.raises(TransactionError) as err:
        apply(chain.state, tx(CLIENT, 0, payload, fee=FEE))  # type: ignore[arg-type]
    assert err.value.rule == rule
    assert chain.state.root() == root


def test_fees_come_from_locked_then_releasing_then_balance(chain: Chain) -> None:
    state = chain.state
    client = addr(CLIENT)
    apply(state, tx(CLIENT, 0, DepositEscrow(amount=300), fee=FEE))
    apply(state, tx(CLIENT, 1, BeginEscrowRelease(amount=100), fee=FEE), height=5)
    start = balance(state, CLIENT)
    assert pay_fee(state, client, 150, rule="t") == 150  # locked 200 -> 50
    assert escrow_of(state, client) == SwarmEscrow(locked=50, releasing=100,
                                                   release_height=5 + ESCROW_RELEASE_DELAY)
    assert pay_fee(state, client, 120, rule="t") == 120  # locked 50, then 70 releasing
    assert escrow_of(state, client) == SwarmEscrow(locked=0, releasing=30,
                                                   release_height=5 + ESCROW_RELEASE_DELAY)
    assert pay_fee(state, client, 50, rule="t") == 30  # releasing 30, then 20 from balance
    assert escrow_of(state, client) == SwarmEscrow(locked=0, releasing=0, release_height=0)
    assert balance(state, CLIENT) == start - 20
    with pytest.raises(TransactionError) as err:
        pay_fee(state, client, DEV_BALANCE, rule="swarm.insufficient_client_balance")
    assert err.value.rule == "swarm.insufficient_client_balance"
