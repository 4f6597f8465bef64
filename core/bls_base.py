"""The BLS12-381 signature scheme for finality votes (the IETF proof-of-possession scheme):
what every backend shares, with no curve library imported.

`BlsBackend` is the one API (core.bls picks the backend in use: blspy where it imports, else
the py-ecc reference of core.bls_pyecc). Public keys are deserialised and subgroup-checked
once (`BlsBackend.key_validate`, called when a validator registers) and the point is cached by
its bytes; aggregation sums points, so verifying an aggregate costs one point addition per
signer and one pairing check.

Secret keys are ints in ``[1, r)``; `derive_secret` is the one derivation (the IETF KeyGen,
computed here with hashlib so that no curve library is needed for it; the backends' own
KeyGens differ, so only the 32-byte secret is ever stored).
"""

from __future__ import annotations

import abc
import hashlib
import hmac
from collections.abc import Sequence
from typing import Generic, TypeVar

PUBKEY_BYTES = 48
SIGNATURE_BYTES = 96
SECRET_BYTES = 32
#: r, the order of BLS12-381's G1 and G2 subgroups (py_ecc's curve_order: a test checks)
CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
# cached public key points per backend (a validator set is bounded by MAX_VALIDATORS; a
# process that sees more keys than this re-validates the oldest on their next use)
MAX_CACHED_KEYS = 1 << 16
#: the IETF KeyGen's output length L = ceil(3 * ceil(log2(r)) / 16) bytes
_KEYGEN_BYTES = 48

P = TypeVar("P")


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand with SHA-256 (RFC 5869)."""
    okm = b""
    block = b""
    counter = 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def derive_secret(seed: bytes) -> int:
    """The BLS secret key of a 32-byte seed: the IETF KeyGen (draft-irtf-cfrg-bls-signature
    §2.3, empty key_info), equal to py-ecc's G2ProofOfPossession.KeyGen (tests/core/test_bls.py)."""
    if len(seed) < SECRET_BYTES:
        raise ValueError("a BLS seed must be at least 32 bytes")
    salt = b"BLS-SIG-KEYGEN-SALT-"
    secret = 0
    while secret == 0:
        salt = hashlib.sha256(salt).digest()
        prk = hmac.new(salt, bytes(seed) + b"\x00", hashlib.sha256).digest()
        okm = _hkdf_expand(prk, _KEYGEN_BYTES.to_bytes(2, "big"), _KEYGEN_BYTES)
        secret = int.from_bytes(okm, "big") % CURVE_ORDER
    return secret


def check_secret(secret: int) -> None:
    """Raise ValueError unless ``secret`` is a secret key (an int in [1, r))."""
    if type(secret) is not int or not 0 < secret < CURVE_ORDER:
        raise ValueError("a BLS secret key is an int in [1, r)")


class BlsBackend(abc.ABC, Generic[P]):
    """One implementation of the scheme; ``P`` is its public key point type.

    Verdict methods return False (never raise) on any malformed input; `aggregate` raises
    `ValueError` on an empty list or bytes that are not a G2 curve point. As the IETF
    Aggregate, it does not check the subgroup (verification checks the aggregate's): the
    node aggregates votes it verified one by one, and the subgroup check is most of the cost
    of decoding (16 ms against 1.7 ms for 64 signatures with blspy here).
    """

    name: str

    def __init__(self) -> None:
        self._points: dict[bytes, P] = {}

    # -- what each backend implements ------------------------------------------------------
    @abc.abstractmethod
    def secret_to_pubkey(self, secret: int) -> bytes: ...

    @abc.abstractmethod
    def sign(self, secret: int, message: bytes) -> bytes: ...

    @abc.abstractmethod
    def pop_prove(self, secret: int) -> bytes:
        """The proof of possession: a signature of the public key under the POP tag."""

    @abc.abstractmethod
    def _pop_verify_point(self, point: P, pubkey: bytes, proof: bytes) -> bool: ...

    @abc.abstractmethod
    def _decode_pubkey(self, pubkey: bytes) -> P | None:
        """The point, or None unless it decodes, is in G1 and is not infinity."""

    @abc.abstractmethod
    def _sum(self, points: Sequence[P]) -> P: ...

    @abc.abstractmethod
    def _is_infinity(self, point: P) -> bool: ...

    @abc.abstractmethod
    def _verify_point(self, point: P, message: bytes, signature: bytes) -> bool: ...

    @abc.abstractmethod
    def aggregate(self, signatures: Sequence[bytes]) -> bytes: ...

    # -- shared on top ---------------------------------------------------------------------
    def pubkey_point(self, pubkey: bytes) -> P | None:
        """The cached point of a valid public key (validated once per process)."""
        point = self._points.get(pubkey)
        if point is not None:
            return point
        if type(pubkey) is not bytes or len(pubkey) != PUBKEY_BYTES:
            return None
        point = self._decode_pubkey(pubkey)
        if point is None:
            return None
        if len(self._points) >= MAX_CACHED_KEYS:
            del self._points[next(iter(self._points))]
        self._points[pubkey] = point
        return point

    def key_validate(self, pubkey: bytes) -> bool:
        """KeyValidate: decodes, in the subgroup, not infinity (and caches the point)."""
        return self.pubkey_point(pubkey) is not None

    def pop_verify(self, pubkey: bytes, proof: bytes) -> bool:
        point = self.pubkey_point(pubkey)
        return point is not None and is_signature_shaped(proof) and self._pop_verify_point(
            point, pubkey, proof)

    def verify(self, pubkey: bytes, message: bytes, signature: bytes) -> bool:
        point = self.pubkey_point(pubkey)
        return (point is not None and is_signature_shaped(signature)
                and self._verify_point(point, message, signature))

    def fast_aggregate_verify(self, pubkeys: Sequence[bytes], message: bytes,
                              signature: bytes) -> bool:
        """FastAggregateVerify: one message signed by every key; False for no keys."""
        if not pubkeys or not is_signature_shaped(signature):
            return False
        points = []
        for pubkey in pubkeys:
            point = self.pubkey_point(pubkey)
            if point is None:
                return False
            points.append(point)
        total = self._sum(points)
        # an aggregate key at infinity (keys cancelling out) verifies nothing
        return not self._is_infinity(total) and self._verify_point(total, message, signature)


def is_signature_shaped(signature: object) -> bool:
    """Whether ``signature`` is bytes of a compressed G2 point's length."""
    return type(signature) is bytes and len(signature) == SIGNATURE_BYTES
