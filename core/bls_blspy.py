"""The blspy BLS backend: Chia's C++ ``blspy`` (``PopSchemeMPL``, the IETF proof-of-possession
scheme, the same DSTs as the py-ecc reference); ~1 ms for a 64-key FastAggregateVerify. blspy
releases the GIL. `BLSPY` is None where blspy does not import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.bls_base import SECRET_BYTES, BlsBackend, check_secret, is_signature_shaped

try:  # the native backend, used when it is installed
    import blspy as _blspy
except ImportError:  # pragma: no cover - depends on the environment
    _blspy = None


class BlspyBackend(BlsBackend[Any]):
    """The native backend: Chia's ``blspy`` (``PopSchemeMPL``, the same DSTs)."""

    name = "blspy"

    def __init__(self, module: Any) -> None:
        super().__init__()
        self._m = module
        self._scheme = module.PopSchemeMPL

    def _secret(self, secret: int) -> Any:
        check_secret(secret)
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
            if not is_signature_shaped(signature):
                raise ValueError("a signature is 96 bytes")
            try:
                points.append(self._m.G2Element.from_bytes_unchecked(signature))
            except (ValueError, RuntimeError) as exc:
                raise ValueError(f"invalid signature point: {exc}") from exc
        return bytes(self._scheme.aggregate(points))


BLSPY: BlsBackend[Any] | None = None if _blspy is None else BlspyBackend(_blspy)
