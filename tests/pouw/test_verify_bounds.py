"""The verifier's worst case is bounded: at most MAX_CHUNKS chunks replayed, checked at the
last chunk of the largest k (its time is measured by bench/pouw_overhead.py, not here)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pouw import (
    MAX_CERTIFICATE_BYTES,
    MAX_TARGET,
    Certificate,
    CertificateError,
    ParamsError,
    PouwParams,
    hashing,
    mine_product,
    noise,
    tile_ticket,
    verify_certificate,
)
from pouw.noise import chunk_permutation, permutations
from pouw.params import K_MAX, MAX_CHUNKS, NOISE_BLOCK, R_MAX, R_MIN

from .conftest import COMMITMENT, random_operands


def test_chunk_count_is_bounded() -> None:
    PouwParams(m=8, k=K_MAX, n=4, r=K_MAX // MAX_CHUNKS).validate()
    with pytest.raises(ParamsError, match="chunks"):
        PouwParams(m=8, k=K_MAX, n=4, r=K_MAX // MAX_CHUNKS // 2).validate()
    with pytest.raises(ParamsError, match="chunks"):
        PouwParams(m=8, k=R_MIN * (MAX_CHUNKS + 1), n=4, r=R_MIN).validate()


def test_k_is_bounded_by_k_max() -> None:
    """K_MAX bounds a certificate's size and its verification (the worst case below)."""
    PouwParams(m=8, k=K_MAX, n=4, r=256).validate()
    with pytest.raises(ParamsError, match="K_MAX"):
        PouwParams(m=8, k=K_MAX + 256, n=4, r=256).validate()
    a, b = random_operands(8, 64, 4, seed=1)
    cert = mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET, r=16,
                        backend="numpy").certificates[0]
    k = K_MAX + 256
    forged = dataclasses.replace(cert, params=PouwParams(m=8, k=k, n=4, r=256),
                                 rows_a=bytes(8 * k), cols_b=bytes(4 * k))
    assert len(cert.encode()) < MAX_CERTIFICATE_BYTES
    with pytest.raises(CertificateError):
        Certificate.decode(forged.encode())
    with pytest.raises(CertificateError, match="K_MAX"):
        verify_certificate(forged, commitment=COMMITMENT, target=MAX_TARGET)


def test_certificate_over_the_chunk_bound_is_rejected() -> None:
    a, b = random_operands(8, 64, 4, seed=1)
    cert = mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET, r=16,
                        backend="numpy").certificates[0]
    k = R_MIN * (MAX_CHUNKS + 1)
    forged = dataclasses.replace(cert, params=PouwParams(m=8, k=k, n=4, r=R_MIN),
                                 rows_a=bytes(8 * k), cols_b=bytes(4 * k))
    with pytest.raises(CertificateError, match="chunks"):
        verify_certificate(forged, commitment=COMMITMENT, target=MAX_TARGET)


def test_worst_case_certificate_last_chunk_of_largest_k_verifies() -> None:
    """k = K_MAX, r = K_MAX / MAX_CHUNKS, the last chunk: the most a verifier ever replays."""
    r = K_MAX // MAX_CHUNKS
    a, b = random_operands(8, K_MAX, 4, seed=6)
    result = mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET, r=r,
                          backend="numpy", max_wins=MAX_CHUNKS)
    last = result.certificates[-1]
    assert last.chunk == MAX_CHUNKS - 1
    assert verify_certificate(last, commitment=COMMITMENT, target=MAX_TARGET) \
        == result.wins[-1].value
    first = result.certificates[0]
    assert first.chunk == 0 and tile_ticket(first) == result.wins[0].value


def test_widest_chunk_is_bounded_and_its_last_chunk_verifies() -> None:
    """r = R_MAX is the other worst case: a verifier draws one 64-row block of E_L and of F_R
    (2·NOISE_BLOCK·r bytes) at any chunk, so r is bounded; its last chunk verifies."""
    with pytest.raises(ParamsError, match="power of two"):
        PouwParams(m=8, k=K_MAX, n=4, r=2 * R_MAX).validate()
    a, b = random_operands(8, K_MAX, 4, seed=7)
    result = mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET, r=R_MAX,
                          backend="numpy", max_wins=K_MAX // R_MAX)
    last = result.certificates[-1]
    assert last.chunk == K_MAX // R_MAX - 1
    assert verify_certificate(last, commitment=COMMITMENT, target=MAX_TARGET) \
        == result.wins[-1].value
    forged = dataclasses.replace(last, params=PouwParams(m=8, k=K_MAX, n=4, r=2 * R_MAX))
    with pytest.raises(CertificateError):
        verify_certificate(forged, commitment=COMMITMENT, target=MAX_TARGET)


@pytest.mark.parametrize("side", ["E", "F"])
def test_batched_permutations_equal_chunk_by_chunk(side: str) -> None:
    """The verifier's one-argsort permutations equal the spec's per-chunk rule."""
    seed = bytes(range(32))
    perm, signs = permutations(seed, side, 40, 16)
    tag = b"pouw.perm.E" if side == "E" else b"pouw.perm.F"
    for c in range(40):
        p, s = chunk_permutation(tag, seed, c, 16)
        assert np.array_equal(perm[c], p) and np.array_equal(signs[c], s)


def test_worst_case_verification_draws_only_the_replayed_chunks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The verifier's work is bounded by what it replays, not by the job's m, n or its later
    chunks: at the last chunk of the largest k it draws exactly 5·r XOF bytes per side and
    chunk (2·5·K_MAX in all) plus one E_L and one F_R block, and at chunk 0 one chunk's worth.
    Its time at both ends is reported by bench/pouw_overhead.py."""
    r = K_MAX // MAX_CHUNKS
    a, b = random_operands(8, K_MAX, 4, seed=6)
    result = mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET, r=r,
                          backend="numpy", max_wins=MAX_CHUNKS)
    drawn: list[int] = []
    real_xof, real_streams = hashing.xof, hashing.xof_streams

    def counting_xof(tag: bytes, seed: bytes, index: int, length: int) -> bytes:
        drawn.append(length)
        return real_xof(tag, seed, index, length)

    def counting_streams(tag: bytes, seed: bytes, indices: range, length: int) -> bytes:
        drawn.append(length * len(indices))
        return real_streams(tag, seed, indices, length)

    monkeypatch.setattr(noise, "xof", counting_xof)
    monkeypatch.setattr(noise, "xof_streams", counting_streams)
    blocks = 2 * NOISE_BLOCK * r  # one block of E_L rows, one of F_R columns
    for cert, chunks in ((result.certificates[0], 1), (result.certificates[-1], MAX_CHUNKS)):
        drawn.clear()
        verify_certificate(cert, commitment=COMMITMENT, target=MAX_TARGET)
        assert sum(drawn) == 2 * 5 * r * chunks + blocks
    assert sum(drawn) == 10 * K_MAX + blocks
