"""BLS12-381 signatures for finality votes: the IETF proof-of-possession scheme.

Two backends with one API and one meaning: `PY_ECC` (``py_ecc.bls.G2ProofOfPossession``,
pure Python, the reference and the test oracle) and, when ``blspy`` imports, `BLSPY`
(C++, measured ~1 ms for a 64-key FastAggregateVerify here against ~1.3 s for py-ecc;
docs/finality.md). `BACKEND` is the fastest available one. A test signs, aggregates and
verifies random and hostile cases with both and asserts byte-identical signatures and equal
verdicts (tests/core/test_bls.py).

Public keys are deserialised and subgroup-checked once (`BlsBackend.key_validate`, called
when a validator registers) and the point is cached by its bytes; aggregation sums points,
so verifying an aggregate costs one point addition per signer and one pairing check.

Secret keys are ints in ``[1, r)``; `derive_secret` is the one derivation (the IETF KeyGen:
the backends' own KeyGens differ, so only the 32-byte secret is ever stored).

py-ecc blocks for seconds: never call it on an event loop. blspy releases the GIL.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

# py_ecc's import raises the interpreter's recursion limit to 100,000 for the whole process:
# then a deep recursion anywhere (a 1,500-level nested JSON body) overflows the C stack and
# kills the node with SIGSEGV instead of raising RecursionError. Its BLS12-381 operations need
# well under 1,000 frames (the deepest, a cofactor multiplication, recurses once per scalar
# bit: ~640), so the limit is put back right after the import (tests/core/test_bls.py runs
# every py-ecc operation under the restored limit).
_RECURSION_LIMIT = min(sys.getrecursionlimit(), 1000)

from eth_typing import BLSPubkey, BLSSignature  # noqa: E402
from py_ecc.bls.ciphersuites import G2ProofOfPossession as _PyEccBls  # noqa: E402
from py_ecc.bls.g2_primitives import (  # noqa: E402
    G1_to_pubkey,
    G2_to_signature,
    pubkey_to_G1,
    signature_to_G2,
)
from py_ecc.optimized_bls12_381.optimized_curve import (  # noqa: E402
    Z1,
    Z2,
    add,
    curve_order,
    is_inf,
)

sys.setrecursionlimit(_RECURSION_LIMIT)

try:  # the native backend, used when it is installed
    import blspy as _blspy
except ImportError:  # pragma: no cover - depends on the environment
    _blspy = None

PUBKEY_BYTES = 48
SIGNATURE_BYTES = 96
SECRET_BYTES = 32
CURVE_ORDER: int = curve_order
# cached public key points per backend (a validator set is bounded by MAX_VALIDATORS; a
# process that sees more keys than this re-validates the oldest on their next use)
MAX_CACHED_KEYS = 1 << 16

P = TypeVar("P")


def derive_secret(seed: bytes) -> int:
    """The BLS secret key of a 32-byte seed (IETF KeyGen, as py-ecc computes it)."""
    if len(seed) < SECRET_BYTES:
        raise ValueError("a BLS seed must be at least 32 bytes")
    return int(_PyEccBls.KeyGen(seed))


def _check_secret(secret: int) -> None:
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
        return point is not None and _is_signature_shaped(proof) and self._pop_verify_point(
            point, pubkey, proof)

    def verify(self, pubkey: bytes, message: bytes, signature: bytes) -> bool:
        point = self.pubkey_point(pubkey)
        return (point is not None and _is_signature_shaped(signature)
                and self._verify_point(point, message, signature))

    def fast_aggregate_verify(self, pubkeys: Sequence[bytes], message: bytes,
                              signature: bytes) -> bool:
        """FastAggregateVerify: one message signed by every key; False for no keys."""
        if not pubkeys or not _is_signature_shaped(signature):
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


def _is_signature_shaped(signature: object) -> bool:
    return type(signature) is bytes and len(signature) == SIGNATURE_BYTES


PyEccPoint = Any  # py-ecc's optimized G1 point (a tuple of field elements)


class PyEccBackend(BlsBackend[PyEccPoint]):
    """The reference: ``py_ecc.bls.G2ProofOfPossession`` (slow: seconds per aggregate)."""

    name = "py-ecc"

    def secret_to_pubkey(self, secret: int) -> bytes:
        _check_secret(secret)
        return bytes(_PyEccBls.SkToPk(secret))

    def sign(self, secret: int, message: bytes) -> bytes:
        _check_secret(secret)
        return bytes(_PyEccBls.Sign(secret, message))

    def pop_prove(self, secret: int) -> bytes:
        _check_secret(secret)
        return bytes(_PyEccBls.PopProve(secret))

    def _pop_verify_point(self, point: PyEccPoint, pubkey: bytes, proof: bytes) -> bool:
        return bool(_PyEccBls.PopVerify(BLSPubkey(pubkey), BLSSignature(proof)))

    def _decode_pubkey(self, pubkey: bytes) -> PyEccPoint | None:
        if not _PyEccBls.KeyValidate(BLSPubkey(pubkey)):
            return None
        return pubkey_to_G1(BLSPubkey(pubkey))

    def _sum(self, points: Sequence[PyEccPoint]) -> PyEccPoint:
        total = Z1
        for point in points:
            total = add(total, point)
        return total

    def _is_infinity(self, point: PyEccPoint) -> bool:
        return bool(is_inf(point))

    def _verify_point(self, point: PyEccPoint, message: bytes, signature: bytes) -> bool:
        return bool(_PyEccBls.Verify(G1_to_pubkey(point), message, BLSSignature(signature)))

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        if not signatures:
            raise ValueError("no signatures to aggregate")
        total = Z2
        for signature in signatures:
            if not _is_signature_shaped(signature):
                raise ValueError("a signature is 96 bytes")
            try:
                point = signature_to_G2(BLSSignature(signature))
            except (ValueError, AssertionError) as exc:
                raise ValueError(f"invalid signature point: {exc}") from exc
            total = add(total, point)
        return bytes(G2_to_signature(total))


class BlspyBackend(BlsBackend[Any]):
    """The native backend: Chia's ``blspy`` (``PopSchemeMPL``, the same DSTs)."""

    name = "blspy"

    def __init__(self, module: Any) -> None:
        super().__init__()
        self._m = module
        self._scheme = module.PopSchemeMPL

    def _secret(self, secret: int) -> Any:
        _check_secret(secret)
        return self._m.PrivateKey.from_bytes(secret.to_bytes(SECRET_BYTES, "big"))

    def secret_to_pubkey(self, secret: int) -> bytes:
        return bytes(self._secret(secret).get_g1())

    def sign(self, secret: int, message: bytes) -> bytes:
        return bytes(self._scheme.sign(self._secret(secret), message))

    def pop_prove(self, secret: int) -> bytes:
        return bytes(self._scheme.pop_prove(self._secret(secret)))

    def _signature(self, signature: bytes) -> Any | None:
        try:
            return self._m.G2Element.from_bytes(signature)
        except (ValueError, RuntimeError):
            return None

    def _pop_verify_point(self, point: Any, pubkey: bytes, proof: bytes) -> bool:
        sig = self._signature(proof)
        return sig is not None and bool(self._scheme.pop_verify(point, sig))

    def _decode_pubkey(self, pubkey: bytes) -> Any | None:
        try:
            point = self._m.G1Element.from_bytes(pubkey)  # checks the subgroup
        except (ValueError, RuntimeError):
            return None
        return None if self._is_infinity(point) else point

    def _sum(self, points: Sequence[Any]) -> Any:
        total = self._m.G1Element()
        for point in points:
            total = total + point
        return total

    def _is_infinity(self, point: Any) -> bool:
        return point == self._m.G1Element()  # type: ignore[no-any-return]

    def _verify_point(self, point: Any, message: bytes, signature: bytes) -> bool:
        sig = self._signature(signature)
        return sig is not None and bool(self._scheme.verify(point, message, sig))

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        if not signatures:
            raise ValueError("no signatures to aggregate")
        points = []
        for signature in signatures:
            if not _is_signature_shaped(signature):
                raise ValueError("a signature is 96 bytes")
            try:
                points.append(self._m.G2Element.from_bytes_unchecked(signature))
            except (ValueError, RuntimeError) as exc:
                raise ValueError(f"invalid signature point: {exc}") from exc
        return bytes(self._scheme.aggregate(points))


PY_ECC: BlsBackend[Any] = PyEccBackend()
BLSPY: BlsBackend[Any] | None = None if _blspy is None else BlspyBackend(_blspy)
#: the backend consensus uses: the native one when it imports, else the reference
BACKEND: BlsBackend[Any] = PY_ECC if BLSPY is None else BLSPY


def available_backends() -> tuple[BlsBackend[Any], ...]:
    """Every backend importable here, the reference first."""
    return (PY_ECC,) if BLSPY is None else (PY_ECC, BLSPY)
