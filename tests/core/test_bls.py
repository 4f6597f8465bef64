"""The BLS backends agree: byte-identical keys, signatures and aggregates, equal verdicts.

py-ecc is the reference (the oracle); every other importable backend (blspy) must match it
on random cases and on hostile inputs: points off the subgroup, bytes off the curve, the
point at infinity, a wrong proof of possession, an empty aggregate, keys that cancel out.
py-ecc costs ~0.2-1.5 s per operation, so the random cases are few and small.
"""

from __future__ import annotations

import random
import sys
from typing import Any

import pytest
from py_ecc.bls.ciphersuites import G2ProofOfPossession
from py_ecc.bls.g2_primitives import G1_to_pubkey, G2_to_signature, subgroup_check
from py_ecc.bls.hash_to_curve import map_to_curve_G1, map_to_curve_G2
from py_ecc.fields import optimized_bls12_381_FQ as FQ
from py_ecc.fields import optimized_bls12_381_FQ2 as FQ2
from py_ecc.optimized_bls12_381.optimized_curve import curve_order

from core.bls import BACKEND, BLSPY, CURVE_ORDER, BlsBackend, derive_secret
from core.bls_pyecc import PY_ECC, available_backends

NATIVE = [b for b in available_backends() if b is not PY_ECC]
needs_native = pytest.mark.skipif(not NATIVE, reason="no native BLS backend installed")
INFINITY_PUBKEY = b"\xc0" + bytes(47)
INFINITY_SIGNATURE = b"\xc0" + bytes(95)
MESSAGE = b"\x11" * 32


def _off_subgroup_pubkey() -> bytes:
    """A G1 curve point outside the prime-order subgroup (the map to the curve before the
    cofactor is cleared)."""
    for u in range(1, 100):
        point = map_to_curve_G1(FQ(u))
        if not subgroup_check(point):
            return bytes(G1_to_pubkey(point))
    raise AssertionError("no off-subgroup G1 point found")


def _off_subgroup_signature() -> bytes:
    for u in range(1, 100):
        point = map_to_curve_G2(FQ2([u, 1]))
        if not subgroup_check(point):
            return bytes(G2_to_signature(point))
    raise AssertionError("no off-subgroup G2 point found")


def _negated(pubkey: bytes) -> bytes:
    """The compressed encoding of -P: the same x with the y sign bit flipped."""
    return bytes([pubkey[0] ^ 0x20]) + pubkey[1:]


def _verdicts(backend: BlsBackend[Any], pubkeys: list[bytes], signature: bytes) -> tuple[Any, ...]:
    return (tuple(backend.key_validate(pk) for pk in pubkeys),
            tuple(backend.verify(pk, MESSAGE, signature) for pk in pubkeys),
            backend.fast_aggregate_verify(pubkeys, MESSAGE, signature))


def test_importing_the_backends_leaves_the_recursion_limit_alone() -> None:
    """py_ecc raises it to 100,000 at import, which turns deep recursion into a segfault;
    core.bls puts it back (every py-ecc operation in this module runs under it)."""
    assert sys.getrecursionlimit() <= 1000


def _aggregates(backend: BlsBackend[Any], signature: bytes) -> bool:
    """Whether ``backend`` accepts ``signature`` as an aggregate's part."""
    try:
        backend.aggregate([signature])
    except ValueError:
        return False
    return True


def test_the_backend_in_use_is_the_native_one_when_it_imports() -> None:
    assert BACKEND is (BLSPY if BLSPY is not None else PY_ECC)
    assert available_backends()[0] is PY_ECC


def test_derive_secret_is_the_ietf_keygen_and_rejects_short_seeds() -> None:
    secret = derive_secret(b"\x01" * 32)
    assert 0 < secret < CURVE_ORDER
    assert derive_secret(b"\x01" * 32) == secret != derive_secret(b"\x02" * 32)
    with pytest.raises(ValueError):
        derive_secret(b"\x01" * 31)
    assert CURVE_ORDER == curve_order
    rng = random.Random(12)
    for seed in [b"\x01" * 32, b"\x00" * 32, b"\xff" * 48,
                 *(rng.randbytes(rng.randint(32, 80)) for _ in range(20))]:
        assert derive_secret(seed) == G2ProofOfPossession.KeyGen(seed)  # the reference's
    for backend in available_backends():
        with pytest.raises(ValueError):
            backend.sign(0, MESSAGE)
        with pytest.raises(ValueError):
            backend.secret_to_pubkey(CURVE_ORDER)


@needs_native
@pytest.mark.parametrize("case", range(3))
def test_random_cases_match_the_reference_byte_for_byte(case: int) -> None:
    rng = random.Random(case)
    secrets = [rng.randrange(1, CURVE_ORDER) for _ in range(rng.randint(1, 3))]
    message = rng.randbytes(32)
    for native in NATIVE:
        pubkeys = [PY_ECC.secret_to_pubkey(s) for s in secrets]
        assert [native.secret_to_pubkey(s) for s in secrets] == pubkeys
        signatures = [PY_ECC.sign(s, message) for s in secrets]
        assert [native.sign(s, message) for s in secrets] == signatures
        assert native.pop_prove(secrets[0]) == PY_ECC.pop_prove(secrets[0])
        aggregate = PY_ECC.aggregate(signatures)
        assert native.aggregate(signatures) == aggregate
        for backend in (PY_ECC, native):
            assert backend.fast_aggregate_verify(pubkeys, message, aggregate)
            assert not backend.fast_aggregate_verify(pubkeys, message + b"x", aggregate)
            assert backend.verify(pubkeys[0], message, signatures[0])
            assert backend.pop_verify(pubkeys[0], PY_ECC.pop_prove(secrets[0]))
        if len(pubkeys) > 1:  # one signer missing from the aggregate
            assert native.fast_aggregate_verify(pubkeys, message, signatures[0]) is False
            assert PY_ECC.fast_aggregate_verify(pubkeys, message, signatures[0]) is False


@needs_native
def test_hostile_points_get_the_same_verdicts() -> None:
    secret = derive_secret(b"\x05" * 32)
    good = PY_ECC.secret_to_pubkey(secret)
    signature = PY_ECC.sign(secret, MESSAGE)
    off_subgroup = _off_subgroup_pubkey()
    off_curve = b"\x80" + b"\xff" * 47  # x >= p: not a field element
    wrong_flags = bytes([good[0] & 0x7F]) + good[1:]  # compression bit cleared
    non_canonical = [b"\xc0" + bytes(46) + b"\x01",  # infinity with a stray bit
                     b"\xe0" + bytes(47),  # infinity with the sign bit
                     bytes([good[0] | 0x40]) + good[1:]]  # a point flagged as infinity
    pubkeys = [good, off_subgroup, off_curve, wrong_flags, INFINITY_PUBKEY, _negated(good),
               *non_canonical]
    bad_signatures = [_off_subgroup_signature(), INFINITY_SIGNATURE, b"\x80" + b"\xff" * 95,
                      signature[:95]]
    for native in NATIVE:
        assert _verdicts(native, pubkeys, signature) == _verdicts(PY_ECC, pubkeys, signature)
        assert _verdicts(native, [good], signature)[0] == (True,)
        assert native.key_validate(off_subgroup) is False
        assert native.key_validate(INFINITY_PUBKEY) is False
        for bad in bad_signatures:
            assert native.verify(good, MESSAGE, bad) is PY_ECC.verify(good, MESSAGE, bad) is False
            assert (native.fast_aggregate_verify([good], MESSAGE, bad)
                    is PY_ECC.fast_aggregate_verify([good], MESSAGE, bad) is False)
        for odd in (b"\xc0" + bytes(94) + b"\x01", b"\xe0" + bytes(95),
                    bytes([signature[0] | 0x40]) + signature[1:],
                    bytes([signature[0] ^ 0x20]) + signature[1:]):  # non-canonical, negated
            assert native.verify(good, MESSAGE, odd) is PY_ECC.verify(good, MESSAGE, odd)
            assert _aggregates(native, odd) is _aggregates(PY_ECC, odd)
        for bad in bad_signatures[2:]:  # not a curve point, or not 96 bytes
            for backend in (PY_ECC, native):
                with pytest.raises(ValueError):
                    backend.aggregate([signature, bad])
        # Aggregate (as the IETF's) decodes without the subgroup check; the aggregate's
        # verification catches an off-subgroup (or infinity) part
        for odd in bad_signatures[:2]:
            combined = PY_ECC.aggregate([signature, odd])
            assert native.aggregate([signature, odd]) == combined
            assert native.verify(good, MESSAGE, combined) is PY_ECC.verify(
                good, MESSAGE, combined) is (odd == INFINITY_SIGNATURE)


@needs_native
def test_wrong_proof_of_possession_empty_aggregate_and_cancelling_keys() -> None:
    secret, other = derive_secret(b"\x06" * 32), derive_secret(b"\x07" * 32)
    pubkey = PY_ECC.secret_to_pubkey(secret)
    wrong_proofs = [PY_ECC.pop_prove(other),  # another key's proof
                    PY_ECC.sign(secret, pubkey),  # the key signed under the message DST
                    INFINITY_SIGNATURE]
    for native in NATIVE:
        for proof in wrong_proofs:
            assert native.pop_verify(pubkey, proof) is PY_ECC.pop_verify(pubkey, proof) is False
        assert native.pop_verify(INFINITY_PUBKEY, INFINITY_SIGNATURE) is False
        assert PY_ECC.pop_verify(INFINITY_PUBKEY, INFINITY_SIGNATURE) is False
        for backend in (PY_ECC, native):
            with pytest.raises(ValueError):
                backend.aggregate([])
            assert backend.fast_aggregate_verify([], MESSAGE, INFINITY_SIGNATURE) is False
            # P + (-P) is the point at infinity: it must verify nothing, not everything
            cancelling = [pubkey, _negated(pubkey)]
            assert backend.fast_aggregate_verify(cancelling, MESSAGE, INFINITY_SIGNATURE) is False


def test_public_key_points_are_validated_once_and_cached() -> None:
    backend = BACKEND
    pubkey = backend.secret_to_pubkey(derive_secret(b"\x08" * 32))
    assert backend.key_validate(pubkey)
    point = backend.pubkey_point(pubkey)
    assert point is not None and backend.pubkey_point(pubkey) is point  # no second decode
    assert backend.pubkey_point(_off_subgroup_pubkey()) is None
