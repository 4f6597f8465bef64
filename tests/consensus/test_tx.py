"""Transaction signatures: valid ones verify, any tampering is caught with a named rule."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.genesis import dev_seed
from consensus.tx import SIGNING_DOMAIN, Transaction, public_key, sign_transaction
from contracts import (
    PAYLOAD_CLASSES,
    PAYLOAD_KINDS,
    BeginEscrowRelease,
    BeginUnstake,
    ClaimEscrowRelease,
    DepositEscrow,
    RegisterSwarmNode,
    Stake,
    Transfer,
    Withdraw,
)
from core.errors import TransactionError

SEED = dev_seed(1)


def _tx() -> Transaction:
    return sign_transaction(
        SEED, chain_id=1337, nonce=3, fee=7, payload=Transfer(to=b"\x02" * 32, amount=100)
    )


def test_signed_transaction_verifies() -> None:
    tx = _tx()
    tx.verify_signature()
    assert tx.sender == public_key(SEED)
    assert Transaction.decode(tx.encode()) == tx
    assert tx.signing_bytes().startswith(SIGNING_DOMAIN)
    assert tx.signing_bytes()[len(SIGNING_DOMAIN):] != tx.encode()  # signature excluded


def test_signing_is_deterministic_and_id_covers_signature() -> None:
    assert _tx() == _tx()  # Ed25519 signatures are deterministic
    assert _tx().id() != dataclasses.replace(_tx(), signature=bytes(64)).id()


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": 1338},
        {"nonce": 4},
        {"fee": 6},
        {"sender": public_key(dev_seed(2))},
        {"payload": Transfer(to=b"\x02" * 32, amount=101)},
        {"payload": Transfer(to=b"\x03" * 32, amount=100)},
        {"payload": Stake(amount=100)},
        {"payload": RegisterSwarmNode(models=(bytes(32),))},
    ],
)
def test_tampered_field_breaks_signature(change: dict[str, object]) -> None:
    bad = dataclasses.replace(_tx(), **change)  # type: ignore[arg-type]
    with pytest.raises(TransactionError) as info:
        bad.verify_signature()
    assert info.value.rule == "tx.signature"


@pytest.mark.parametrize("position", [0, 31, 32, 63])
def test_flipped_signature_bit_fails(position: int) -> None:
    tx = _tx()
    sig = bytearray(tx.signature)
    sig[position] ^= 1
    with pytest.raises(TransactionError, match=r"tx\.signature"):
        dataclasses.replace(tx, signature=bytes(sig)).verify_signature()


def test_invalid_public_key_is_a_signature_error() -> None:
    # not a point on the curve / small order: must be rejected, not crash
    for sender in (bytes(32), b"\xff" * 32):
        with pytest.raises(TransactionError, match=r"tx\.signature"):
            dataclasses.replace(_tx(), sender=sender).verify_signature()


def test_signature_from_other_key_fails() -> None:
    other = sign_transaction(
        dev_seed(2), chain_id=1337, nonce=3, fee=7, payload=Transfer(to=b"\x02" * 32, amount=100)
    )
    forged = dataclasses.replace(_tx(), signature=other.signature)
    with pytest.raises(TransactionError, match=r"tx\.signature"):
        forged.verify_signature()


def test_payload_registry_is_consistent() -> None:
    """Each registered kind id maps to its class, whose apply function is registered with it."""

    # 5-7: jobs; 10, 11: swarm; 12-14: swarm escrow; 15-17: swarm inclusion window;
    # 18-20: finality (validator registration, vote aggregates, slashing evidence)
    assert set(PAYLOAD_KINDS) == {0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17,
                                  18, 19, 20}
    for kind_id, kind in PAYLOAD_KINDS.items():
        assert kind.cls.KIND_ID == kind_id
        assert PAYLOAD_CLASSES[kind_id] is kind.cls
        assert callable(kind.apply)


def test_every_kind_signs_and_round_trips() -> None:
    payloads = [Transfer(to=bytes(32), amount=1), Stake(amount=1), BeginUnstake(amount=1),
                Withdraw(), RegisterSwarmNode(models=(bytes(32),), endpoint=b"e"),
                DepositEscrow(amount=1), BeginEscrowRelease(amount=2), ClaimEscrowRelease()]
    for payload in payloads:
        t = sign_transaction(SEED, chain_id=1, nonce=0, fee=0, payload=payload)
        t.verify_signature()
        assert Transaction.decode(t.encode()) == t
    ids = {sign_transaction(SEED, chain_id=1, nonce=0, fee=0, payload=p).id() for p in payloads}
    assert len(ids) == len(payloads)
