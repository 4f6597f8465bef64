"""The py-ecc BLS backend: ``py_ecc.bls.G2ProofOfPossession``, pure Python, the reference and
the test oracle (tests/core/test_bls.py compares every other backend with it).

It is the slow fallback (~1.3 s for a 64-key FastAggregateVerify against ~1 ms for blspy;
docs/finality.md) and costs 0.3 s to import on a quiet machine, 2.3 s under load: core.bls
imports this module only where blspy is not installed. py-ecc blocks for seconds: never call
it on an event loop.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

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
    is_inf,
)

sys.setrecursionlimit(_RECURSION_LIMIT)

from core.bls_base import BlsBackend, check_secret, is_signature_shaped  # noqa: E402
from core.bls_blspy import BLSPY  # noqa: E402

PyEccPoint = Any  # py-ecc's optimized G1 point (a tuple of field elements)


class PyEccBackend(BlsBackend[PyEccPoint]):
    """The reference: ``py_ecc.bls.G2ProofOfPossession`` (slow: seconds per aggregate)."""

    name = "py-ecc"

    def secret_to_pubkey(self, secret: int) -> bytes:
        check_secret(secret)
        return bytes(_PyEccBls.SkToPk(secret))

    def sign(self, secret: int, message: bytes) -> bytes:
        check_secret(secret)
        return bytes(_PyEccBls.Sign(secret, message))

    def pop_prove(self, secret: int) -> bytes:
        check_secret(secret)
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
            if not is_signature_shaped(signature):
                raise ValueError("a signature is 96 bytes")
            try:
                point = signature_to_G2(BLSSignature(signature))
            except (ValueError, AssertionError) as exc:
                raise ValueError(f"invalid signature point: {exc}") from exc
            total = add(total, point)
        return bytes(G2_to_signature(total))


PY_ECC: BlsBackend[Any] = PyEccBackend()


def available_backends() -> tuple[BlsBackend[Any], ...]:
    """Every backend importable here, the reference first (for comparing and benchmarking)."""
    return (PY_ECC,) if BLSPY is None else (PY_ECC, BLSPY)
