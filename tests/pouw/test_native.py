"""The fused native kernel equals the numpy reference bit for bit: the final accumulator, every
tile state after every chunk, and the prefilter candidates, on both of its code paths."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pouw import MAX_TARGET, MiningSession, available_backends, mine_product, native
from pouw.noise import (
    denoise_operands,
    left_wide_factor,
    noise_factors,
    noisy_left,
    noisy_right,
    right_wide_factor,
)
from pouw.params import K_MAX, R_MAX, TILE_H, TILE_W, VALUE_MAX, VALUE_MIN, PouwParams
from pouw.tickets import advance_states, fold_tiles, initial_states

from .conftest import COMMITMENT, random_operands

pytestmark = pytest.mark.skipif(not native.available(),
                                reason="native kernel not built (python setup.py build_ext)")

#: Every code path this CPU runs: portable (0), AVX-512 VNNI (2), AMX (3).
ISAS = [isa for isa in (0, 1, 2, 3) if native.available() and isa <= native.best_isa()]


def kernel_reference(a: np.ndarray, b: np.ndarray, r: int, states: np.ndarray, limit: int,
              row_tile0: int, digits: list[tuple[np.ndarray, np.ndarray]] | None = None,
              ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, int]]]:
    """Chunk by chunk with int64 products, pouw.tickets' fold and mixer; then minus
    Σ 128^l · Left_l·Right_l (the denoising digits), wrapped to int32."""
    m, k = a.shape
    acc = np.zeros((m, b.shape[1]), dtype=np.int64)
    candidates = []
    for c in range(k // r):
        acc += a[:, c * r:(c + 1) * r].astype(np.int64) @ b[c * r:(c + 1) * r].astype(np.int64)
        states = advance_states(states, fold_tiles(acc.astype(np.int32)))
        for i, j in np.argwhere(states <= np.uint64(limit)):
            candidates.append((c, row_tile0 + int(i), int(j), int(states[i, j])))
    for power, (left, right) in enumerate(digits or []):
        acc -= (128**power) * (left.astype(np.int64) @ right.astype(np.int64))
    wrapped = (acc & 0xFFFFFFFF).astype(np.uint32).view(np.int32)
    return wrapped, states, candidates


def run_kernel(a: np.ndarray, b: np.ndarray, r: int, states: np.ndarray, limit: int,
               row_tile0: int, isa: int, digits: list[tuple[np.ndarray, np.ndarray]] | None = None,
               ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, int]]]:
    got_states = states.copy()
    denoise = None
    if digits:
        # the kernel reads digit rows at the panel's offset: pad rows above it
        pad = row_tile0 * TILE_H
        lefts = [np.concatenate([np.zeros((pad, left.shape[1]), np.int8), left])
                 for left, _ in digits]
        denoise = native.pack_denoise(lefts, [right for _, right in digits])
    out, cands = native.fused_panel(native.biased_left(a), native.pack_right(b, r),
                                    row_tile0=row_tile0, states=got_states, limit=limit,
                                    max_candidates=a.size * b.shape[1] // r + 1,
                                    denoise=denoise, isa=isa)
    assert cands is not None
    listed = [(int(x["chunk"]), int(x["tile_row"]), int(x["tile_col"]), int(x["state"]))
              for x in cands]
    return out, got_states, listed


def entries(draw: st.DrawFn, shape: tuple[int, int], style: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if style == "uniform":
        return rng.integers(-128, 128, shape, dtype=np.int8)
    if style == "extreme":
        return rng.choice(np.array([-128, 127], dtype=np.int8), shape)
    if style == "min":
        return np.full(shape, -128, np.int8)
    if style == "max":
        return np.full(shape, 127, np.int8)
    if style == "zero":
        return np.zeros(shape, np.int8)
    return rng.choice(np.array([-128, -1, 0, 1, 127], dtype=np.int8), shape)


STYLES = ["uniform", "extreme", "min", "max", "zero", "sparse"]


@st.composite
def kernel_jobs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, int, int,
                                          list[tuple[np.ndarray, np.ndarray]]]:
    r = draw(st.sampled_from([16, 32, 64, 128]))
    k = r * draw(st.integers(1, 4))
    m = TILE_H * draw(st.sampled_from([1, 2, 3, 4, 5, 8]))  # 32, 64: AMX blocks
    n = TILE_W * draw(st.integers(1, 20))  # covers n off the kernel's 32-column blocks
    a = entries(draw, (m, k), draw(st.sampled_from(STYLES)), draw(st.integers(0, 2**32 - 1)))
    b = entries(draw, (k, n), draw(st.sampled_from(STYLES)), draw(st.integers(0, 2**32 - 1)))
    limit = draw(st.sampled_from([0, 2**60, 2**63, 2**64 - 1])
                 | st.integers(0, 2**64 - 1))
    row_tile0 = draw(st.integers(0, 40))
    digit_style = draw(st.sampled_from(["uniform", "extreme", "min", "max"]))
    digits = [(np.clip(entries(draw, (m, 2 * r), digit_style, seed), -64, 63),
               np.clip(entries(draw, (2 * r, n), digit_style, seed + 1), -64, 63))
              for seed in draw(st.lists(st.integers(0, 2**31), max_size=3))]
    return a, b, r, limit, row_tile0, digits


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=60, deadline=None)
@given(job=kernel_jobs())
def test_kernel_matches_reference(isa: int, job: tuple[np.ndarray, np.ndarray, int, int, int,
                                                       list[tuple[np.ndarray, np.ndarray]]]
                                  ) -> None:
    a, b, r, limit, row_tile0, digits = job
    states = initial_states(0x0123456789ABCDEF,
                            np.arange(row_tile0, row_tile0 + a.shape[0] // TILE_H)[:, None],
                            np.arange(b.shape[1] // TILE_W)[None, :])
    want_out, want_states, want_cands = kernel_reference(a, b, r, states, limit, row_tile0, digits)
    out, got_states, cands = run_kernel(a, b, r, states, limit, row_tile0, isa, digits)
    assert np.array_equal(out, want_out)
    assert np.array_equal(got_states, want_states)
    assert cands == sorted(want_cands)


@pytest.mark.parametrize("isa", ISAS)
def test_kernel_largest_k_extremes(isa: int) -> None:
    """k = K_MAX at the int8 range ends: biased accumulators and the compensation
    come closest to 2^31 here, and the unbiased result must still be exact."""
    k, r = K_MAX, R_MAX
    a = np.full((16, k), -128, np.int8)
    a[1::2] = 127
    b = np.full((k, 64), -128, np.int8)
    b[:, 1::3] = 127
    states = initial_states(7, np.arange(2)[:, None], np.arange(16)[None, :])
    want_out, want_states, want_cands = kernel_reference(a, b, r, states, 2**63, 0)
    out, got_states, cands = run_kernel(a, b, r, states, 2**63, 0, isa)
    assert np.array_equal(out, want_out)
    assert np.array_equal(got_states, want_states)
    assert cands == sorted(want_cands)


def test_kernel_reports_candidate_overflow() -> None:
    a, b = random_operands(16, 64, 32, seed=2)
    states = initial_states(1, np.arange(2)[:, None], np.arange(8)[None, :])
    _, cands = native.fused_panel(native.biased_left(a), native.pack_right(b, 16), row_tile0=0,
                                  states=states, limit=2**64 - 1, max_candidates=10)
    assert cands is None  # 64 candidates, room for 10: the caller must take the chunked path


@pytest.mark.parametrize("target", [0, MAX_TARGET >> 12, MAX_TARGET >> 6, MAX_TARGET])
def test_native_mining_equals_numpy(target: int) -> None:
    """Whole jobs (several panels, wins in order, the overflow fallback at MAX_TARGET)."""
    a, b = random_operands(96, 256, 68, seed=9)  # m = 3·32 and r = 64: the AMX path too
    want = mine_product(a, b, commitment=COMMITMENT, target=target, r=64, backend="numpy",
                        max_wins=7)
    for backend in [name for name in available_backends() if name.startswith("native")]:
        got = mine_product(a, b, commitment=COMMITMENT, target=target, r=64, backend=backend,
                           max_wins=7)
        assert got.backend.startswith("native-")
        assert np.array_equal(got.product, want.product)
        assert [c.encode() for c in got.certificates] == [c.encode() for c in want.certificates]


def test_native_mining_with_small_panels_keeps_win_order() -> None:
    """Wins are listed panel by panel, then by chunk, then row-major, as the chunked path does."""
    a, b = random_operands(64, 128, 40, seed=4)
    results = []
    for backend in ["numpy", "native"]:
        session = MiningSession(commitment=COMMITMENT, target=MAX_TARGET >> 7, backend=backend,
                                r=16, panel_rows=16, max_wins=12)
        results.append(session.mine(a, b))
    want, got = results
    assert len(want.wins) >= 2
    assert [c.encode() for c in got.certificates] == [c.encode() for c in want.certificates]
    assert np.array_equal(got.product, want.product)


@st.composite
def noise_jobs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, bytes, PouwParams]:
    r = draw(st.sampled_from([16, 32, 64, 128]))
    params = PouwParams(m=TILE_H * draw(st.integers(1, 9)), k=r * draw(st.integers(1, 4)),
                        n=TILE_W * draw(st.integers(1, 20)), r=r)
    style = draw(st.sampled_from(["uniform", "extreme", "min", "max", "zero"]))
    seed = draw(st.integers(0, 2**32 - 1))
    a, b = (np.clip(entries(draw, shape, style, seed + i), VALUE_MIN, VALUE_MAX)
            for i, shape in enumerate([(params.m, params.k), (params.k, params.n)]))
    return a, b, draw(st.binary(min_size=32, max_size=32)), params


@pytest.mark.parametrize("isa", ISAS)
@settings(max_examples=40, deadline=None)
@given(job=noise_jobs())
def test_noisy_operands_match_reference(
        isa: int, job: tuple[np.ndarray, np.ndarray, bytes, PouwParams]) -> None:
    """The C noise phase equals pouw.noise's: A' + 128, B' packed with its compensation, and
    Y = A'·F_L, Z = E_R·B against int64 products with the dense signed-permutation stacks."""
    a, b, seed, params = job
    f = noise_factors(seed, params)
    got = native.noisy_operands(a, b, f, isa=isa)
    a_noisy, b_noisy = noisy_left(a, f), noisy_right(b, f)
    assert np.array_equal(got.left_biased, native.biased_left(a_noisy))
    packed = native.pack_right(b_noisy, params.r)
    assert np.array_equal(got.right.blocks, packed.blocks)
    assert np.array_equal(got.right.compensation, packed.compensation)
    assert np.array_equal(got.y, a_noisy.astype(np.int64) @ right_wide_factor(f).astype(np.int64))
    assert np.array_equal(got.z, left_wide_factor(f).astype(np.int64) @ b.astype(np.int64))


@settings(max_examples=40, deadline=None)
@given(job=noise_jobs())
def test_denoise_job_matches_reference(job: tuple[np.ndarray, np.ndarray, bytes, PouwParams]
                                       ) -> None:
    """The C digit pairs equal pack_denoise of pouw.noise.denoise_operands, at the largest
    |Y| and |Z| the operands allow (entries at the int7 ends make them extreme)."""
    a, b, seed, params = job
    f = noise_factors(seed, params)
    noisy = native.noisy_operands(a, b, f)
    got = native.denoise_job(noisy.y, noisy.z, f, k=params.k)
    want = native.pack_denoise(*denoise_operands(noisy.y, noisy.z, f, k=params.k))
    assert got.depth == want.depth
    for name in ("left", "right", "compensation"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


def test_denoise_job_refuses_values_past_the_limb_bound() -> None:
    params = PouwParams(m=8, k=16, n=4, r=16)
    f = noise_factors(bytes(32), params)
    y = np.full((8, 16), 64 * 128 * 128, dtype=np.int32)  # needs a third digit (bound: 2)
    with pytest.raises(OverflowError):
        native.denoise_job(y, np.zeros((16, 4), np.int32), f, k=params.k)
