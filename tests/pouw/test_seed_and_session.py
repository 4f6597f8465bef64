"""Seed binding (no grinding), streaming sessions, commitment switches."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pouw import MAX_TARGET, MiningSession, WinningTicket, mine_product, verify_certificate
from pouw.hashing import derive_seed
from pouw.noise import noise_factors, noisy_left, noisy_right
from pouw.params import PouwParams

from .conftest import COMMITMENT, random_operands

PARAMS = PouwParams(m=16, k=64, n=8, r=16)


def _noise(commitment: bytes, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    result = mine_product(a, b, commitment=commitment, target=0, r=16)
    seed = derive_seed(commitment=commitment, params_bytes=PARAMS.to_bytes(),
                       root_a=result.root_a, root_b=result.root_b)
    f = noise_factors(seed, PARAMS)
    return noisy_left(a, f) - a, noisy_right(b, f) - b


@pytest.mark.parametrize("which", ["commitment", "A", "B"])
@pytest.mark.parametrize("position", [0, 5, 31])
def test_one_byte_changes_the_noise(which: str, position: int) -> None:
    a, b = random_operands(16, 64, 8, seed=9)
    commitment = bytearray(COMMITMENT)
    e0, f0 = _noise(bytes(commitment), a, b)
    if which == "commitment":
        commitment[position] ^= 0x80
    elif which == "A":
        a = a.copy()
        a.flat[position] = (int(a.flat[position]) + 1) % 64
    else:
        b = b.copy()
        b.flat[position] = (int(b.flat[position]) + 1) % 64
    e1, f1 = _noise(bytes(commitment), a, b)
    assert not np.array_equal(e0, e1)
    assert not np.array_equal(f0, f1)


def test_noise_is_deterministic_and_in_range() -> None:
    a, b = random_operands(16, 64, 8, seed=9)
    e0, f0 = _noise(COMMITMENT, a, b)
    e1, f1 = _noise(COMMITMENT, a, b)
    assert np.array_equal(e0, e1) and np.array_equal(f0, f1)
    assert e0.min() >= -64 and e0.max() <= 64 and f0.min() >= -64 and f0.max() <= 64


def test_noise_has_rank_r_per_chunk() -> None:
    """Each chunk's noise product E_c·F_c has full rank r: no low-rank shortcut."""
    params = PouwParams(m=64, k=64, n=64, r=32)
    f = noise_factors(b"\x07" * 32, params)
    e = noisy_left(np.zeros((64, 64), np.int8), f).astype(np.float64)
    fn = noisy_right(np.zeros((64, 64), np.int8), f).astype(np.float64)
    for c in range(params.chunks):
        block = e[:, c * 32:(c + 1) * 32] @ fn[c * 32:(c + 1) * 32]
        assert np.linalg.matrix_rank(block) == 32


def test_stream_reports_tickets_through_callback() -> None:
    seen: list[WinningTicket] = []
    session = MiningSession(commitment=COMMITMENT, target=MAX_TARGET >> 13, r=32, max_wins=2,
                            on_ticket=seen.append)
    jobs = [random_operands(32, 128, 16, seed=s) for s in range(3)]
    results = list(session.stream(jobs))
    assert [len(r.wins) for r in results] == [2, 2, 2]
    assert seen == [w for r in results for w in r.wins]
    for (a, b), result in zip(jobs, results, strict=True):
        assert np.array_equal(result.product, a.astype(np.int64) @ b.astype(np.int64))
        for cert in result.certificates:
            verify_certificate(cert, commitment=COMMITMENT, target=MAX_TARGET >> 13)


def test_commitment_switch_mid_job_marks_stale_and_next_job_uses_new_tip() -> None:
    new_tip = b"\x42" * 32
    session_box: list[MiningSession] = []

    def switch(win: WinningTicket) -> None:
        if win.certificate.commitment != new_tip:  # a new tip arrives after the first win
            session_box[0].set_commitment(new_tip, target=MAX_TARGET >> 15)

    session = MiningSession(commitment=COMMITMENT, target=MAX_TARGET >> 15, r=16, max_wins=10,
                            on_ticket=switch)
    session_box.append(session)
    a, b = random_operands(64, 256, 32, seed=4)
    first = session.mine(a, b)
    assert first.stale and len(first.wins) >= 1
    assert all(c.commitment == COMMITMENT for c in first.certificates)
    assert np.array_equal(first.product, a.astype(np.int64) @ b.astype(np.int64))
    second = session.mine(a, b)
    assert second.commitment == new_tip and not second.stale
    for cert in second.certificates:
        verify_certificate(cert, commitment=new_tip, target=MAX_TARGET >> 15)


def test_set_commitment_is_thread_safe_and_validates() -> None:
    session = MiningSession(commitment=COMMITMENT, target=1)
    with pytest.raises(ValueError):
        session.set_commitment(b"short")
    with pytest.raises(ValueError):
        session.set_commitment(COMMITMENT, target=-1)
    threads = [threading.Thread(target=session.set_commitment, args=(bytes([i]) * 32,))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a, b = random_operands(8, 16, 4)
    assert session.mine(a, b).commitment in {bytes([i]) * 32 for i in range(8)}


def test_commit_callback_binds_the_job_to_its_roots() -> None:
    """A miner builds the header from the operand roots, then mines under its hash."""
    seen: list[tuple[bytes, bytes]] = []

    def commit(root_a: bytes, root_b: bytes, params: PouwParams) -> bytes:
        seen.append((root_a, root_b))
        return derive_seed(commitment=COMMITMENT, params_bytes=params.to_bytes(),
                           root_a=root_a, root_b=root_b)

    session = MiningSession(commitment=COMMITMENT, target=MAX_TARGET >> 13, r=32, max_wins=1)
    a, b = random_operands(32, 128, 16, seed=21)
    result = session.mine(a, b, commit=commit)
    assert seen == [(result.root_a, result.root_b)]
    assert result.commitment == commit(result.root_a, result.root_b, result.params)
    for cert in result.certificates:
        verify_certificate(cert, commitment=result.commitment, target=MAX_TARGET >> 13)
