"""Transactions: an Ed25519-signed, chain-bound, nonce-ordered request to run one payload.

The signature covers a domain tag plus the canonical encoding of every field but the
signature itself; the chain id inside it stops replay on other networks, the nonce stops
replay on this one. The id hashes the *signed* encoding (libsodium rejects non-canonical
signatures, so a third party cannot produce a second valid encoding of the same transaction).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

import nacl.exceptions
import nacl.signing

from contracts import PAYLOAD_CLASSES, Payload
from core.encoding import U64, Canonical, PublicKey, Signature64, Tagged, array_header, memo
from core.errors import ConsensusError, TransactionError

SIGNING_DOMAIN = b"pouwchain/tx/v1\x00"
_SIGNATURE_FIELD_BYTES = 2 + 64  # msgpack bin8 header + an Ed25519 signature
MAX_TX_SIZE = 8192


def _payload_classes() -> Mapping[int, type[Any]]:
    return PAYLOAD_CLASSES


@dataclasses.dataclass(frozen=True)
class Transaction(Canonical):
    """A signed transaction; encoded as [chain_id, sender, nonce, fee, [kind, payload], sig]."""

    TAG: ClassVar[bytes] = b"pouw/tx"
    MAX_SIZE: ClassVar[int] = MAX_TX_SIZE
    chain_id: U64
    sender: PublicKey
    nonce: U64
    fee: U64
    payload: Annotated[Payload, Tagged(_payload_classes)]
    signature: Signature64

    def signing_bytes(self) -> bytes:
        """The message the sender signs: domain tag + canonical unsigned encoding."""
        return memo(self, "_signing_bytes", self._unsigned_from_encoding)

    def _unsigned_from_encoding(self) -> bytes:
        """``encode(self, omit=("signature",))``, cut from the memoised full encoding.

        The full encoding is the 6-field array header, the first five fields' bytes, then the
        signature as msgpack bin8 (2-byte header + 64 bytes); the unsigned encoding is the
        5-field header and the same five fields' bytes.
        """
        full = self.encode()
        unsigned = array_header(5) + full[1:-_SIGNATURE_FIELD_BYTES]
        # (a test checks this equals the generic encoding with the field omitted)
        return SIGNING_DOMAIN + unsigned

    def verify_signature(self) -> None:
        """Raise `TransactionError` (rule ``tx.signature``) unless the signature is valid."""
        try:
            nacl.signing.VerifyKey(self.sender).verify(self.signing_bytes(), self.signature)
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
            raise TransactionError("tx.signature", f"bad signature: {exc}") from exc


def signatures_valid(transactions: Sequence[Transaction]) -> bool:
    """Whether every signature verifies: a pre-check (no rule order) for parallel callers.

    Pure and thread-safe: a node may run it on chunks of a block in a thread pool, then
    apply the block with ``signatures_verified=True`` if all chunks passed.
    """
    for tx in transactions:
        try:
            tx.verify_signature()
        except ConsensusError:  # a bad signature, or a field that does not even encode
            return False
    return True


def signing_key(seed: bytes) -> nacl.signing.SigningKey:
    """Ed25519 key from a 32-byte seed (wallets and tests keep only the seed)."""
    return nacl.signing.SigningKey(seed)


def public_key(seed: bytes) -> bytes:
    """The account address (Ed25519 public key) of a seed."""
    return bytes(signing_key(seed).verify_key)


def sign_transaction(
    seed: bytes, *, chain_id: int, nonce: int, fee: int, payload: Payload
) -> Transaction:
    """Build and sign a transaction from a 32-byte Ed25519 seed."""
    key = signing_key(seed)
    unsigned = Transaction(
        chain_id=chain_id,
        sender=bytes(key.verify_key),
        nonce=nonce,
        fee=fee,
        payload=payload,
        signature=bytes(64),
    )
    signature = key.sign(unsigned.signing_bytes()).signature
    return dataclasses.replace(unsigned, signature=bytes(signature))
