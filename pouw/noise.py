"""Seeded low-rank noise E = E_L·E_R on A and F = F_L·F_R on B, and cheap denoising.

E_L (m×r) and F_R (r×n) are dense, uniform in [-64, 63], expanded from the seed.
E_R (r×k) and F_L (k×r) are stacks of k/r signed r×r permutations, so each chunk of E is
a signed column permutation of E_L. Every chunk's noise product E_ℓ·F_ℓ = E_L·Q_ℓ·F_R
has full rank r: no shortcut beats the honest h·w·r multiply-accumulates per ticket,
even for zero operands, while E stays in [-64, 64] so A + E fits int8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pouw.hashing import xof, xof_streams
from pouw.params import NOISE_BLOCK, R_MAX, PouwParams

_EL = b"pouw.noise.EL"
_FR = b"pouw.noise.FR"
_PERM_E = b"pouw.perm.E"
_PERM_F = b"pouw.perm.F"

#: Bits of a position within a chunk (r <= R_MAX, a power of two).
_POSITION_BITS = (R_MAX - 1).bit_length()

#: Digits of the base-128 split used to run denoising products on int8 hardware.
LIMB_BASE = 128


def _uniform_block(tag: bytes, seed: bytes, block: int, r: int) -> np.ndarray:
    raw = np.frombuffer(xof(tag, seed, block, NOISE_BLOCK * r), dtype=np.uint8)
    return ((raw & 0x7F).astype(np.int16) - 64).astype(np.int8).reshape(NOISE_BLOCK, r)


def _uniform_rows(tag: bytes, seed: bytes, start: int, stop: int, r: int) -> np.ndarray:
    first, last = start // NOISE_BLOCK, (stop - 1) // NOISE_BLOCK
    blocks = [_uniform_block(tag, seed, b, r) for b in range(first, last + 1)]
    stacked = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    offset = first * NOISE_BLOCK
    return stacked[start - offset : stop - offset]


def left_noise_rows(seed: bytes, start: int, stop: int, r: int) -> np.ndarray:
    """Rows [start, stop) of E_L, shape (stop-start, r), int8 in [-64, 63]."""
    return _uniform_rows(_EL, seed, start, stop, r)


def right_noise_cols(seed: bytes, start: int, stop: int, r: int) -> np.ndarray:
    """Columns [start, stop) of F_R, shape (r, stop-start), int8 in [-64, 63]."""
    return np.ascontiguousarray(_uniform_rows(_FR, seed, start, stop, r).T)


def chunk_permutation(tag: bytes, seed: bytes, chunk: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(permutation, signs) of one chunk: a stable argsort of XOF keys, sign = low bit."""
    raw = xof(tag, seed, chunk, 5 * r)
    keys = np.frombuffer(raw[: 4 * r], dtype="<u4")
    perm = np.argsort(keys, kind="stable").astype(np.int64)
    signs = (1 - 2 * (np.frombuffer(raw[4 * r :], dtype=np.uint8) & 1)).astype(np.int8)
    return perm, signs


def permutations(seed: bytes, side: str, chunks: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Stacked (chunks×r) permutations and signs for side 'E' or 'F'."""
    tag = _PERM_E if side == "E" else _PERM_F
    raw = np.frombuffer(xof_streams(tag, seed, range(chunks), 5 * r),
                        dtype=np.uint8).reshape(chunks, 5 * r)
    keys = np.ascontiguousarray(raw[:, : 4 * r]).view("<u4")
    # chunk_permutation's stable argsort for every chunk at once: sorting key·2^b + position
    # (all distinct, positions < R_MAX = 2^b) orders equal keys by position, as a stable
    # sort does, and np.sort of distinct uint64 is several times faster than argsort
    tagged = (keys.astype(np.uint64) << np.uint64(_POSITION_BITS)) | np.arange(r, dtype=np.uint64)
    perm = (np.sort(tagged, axis=1) & np.uint64(R_MAX - 1)).astype(np.int64)
    signs = (1 - 2 * (raw[:, 4 * r :] & 1)).astype(np.int8)
    return perm, signs


@dataclass(frozen=True)
class NoiseFactors:
    """Everything the noise of one job is made of (or the slice a verifier needs)."""

    left: np.ndarray  # E_L rows, (rows, r) int8
    right: np.ndarray  # F_R columns, (r, cols) int8
    perm_e: np.ndarray  # (chunks, r): E[:, ℓr+i] = sign_e[ℓ,i] · E_L[:, perm_e[ℓ,i]]
    sign_e: np.ndarray
    perm_f: np.ndarray  # (chunks, r): F[ℓr+i, :] = sign_f[ℓ,i] · F_R[perm_f[ℓ,i], :]
    sign_f: np.ndarray


def noise_factors(
    seed: bytes,
    params: PouwParams,
    *,
    rows: tuple[int, int] | None = None,
    cols: tuple[int, int] | None = None,
    chunks: int | None = None,
) -> NoiseFactors:
    """The job's noise, or only the given rows of E_L / columns of F_R and first chunks."""
    row_lo, row_hi = rows if rows is not None else (0, params.m)
    col_lo, col_hi = cols if cols is not None else (0, params.n)
    count = params.chunks if chunks is None else chunks
    perm_e, sign_e = permutations(seed, "E", count, params.r)
    perm_f, sign_f = permutations(seed, "F", count, params.r)
    return NoiseFactors(
        left=left_noise_rows(seed, row_lo, row_hi, params.r),
        right=right_noise_cols(seed, col_lo, col_hi, params.r),
        perm_e=perm_e,
        sign_e=sign_e,
        perm_f=perm_f,
        sign_f=sign_f,
    )


def _signed_index(perm: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Flat indices into [X, -X]: position i of chunk c takes column perm[c,i] of X or -X."""
    r = perm.shape[1]
    flat: np.ndarray = (perm + r * (sign < 0)).reshape(-1)
    return flat


def _add_noise(x: np.ndarray, factor: np.ndarray, perm: np.ndarray, sign: np.ndarray, *,
               axis: int) -> np.ndarray:
    """x + the signed permutation of ``factor`` along ``axis`` (x cut to its first chunks·r
    entries there): one rule for both sides, A's columns and B's rows."""
    chunks, r = perm.shape
    doubled = np.concatenate([factor, -factor], axis=axis)
    noise = np.take(doubled, _signed_index(perm, sign), axis=axis)
    keep = [slice(None)] * x.ndim
    keep[axis] = slice(0, chunks * r)
    out: np.ndarray = x[tuple(keep)] + noise
    return out


def noisy_left(a: np.ndarray, f: NoiseFactors) -> np.ndarray:
    """A' = A + E as int8 (rows of A matching f.left; first chunks·r columns)."""
    return _add_noise(a, f.left, f.perm_e, f.sign_e, axis=1)


def noisy_right(b: np.ndarray, f: NoiseFactors) -> np.ndarray:
    """B' = B + F as int8 (columns of B matching f.right; first chunks·r rows)."""
    return _add_noise(b, f.right, f.perm_f, f.sign_f, axis=0)


def right_wide_factor(f: NoiseFactors) -> np.ndarray:
    """F_L (k×r int8): F[cr+i, :] = sign_f[c,i]·F_R[perm_f[c,i], :], so Y = A'·F_L."""
    chunks, r = f.perm_f.shape
    out = np.zeros((chunks * r, r), dtype=np.int8)
    out[np.arange(chunks * r), f.perm_f.reshape(-1)] = f.sign_f.reshape(-1)
    return out


def left_wide_factor(f: NoiseFactors) -> np.ndarray:
    """E_R (r×k int8): E[:, cr+i] = sign_e[c,i]·E_L[:, perm_e[c,i]], so Z = E_R·B."""
    chunks, r = f.perm_e.shape
    out = np.zeros((r, chunks * r), dtype=np.int8)
    out[f.perm_e.reshape(-1), np.arange(chunks * r)] = f.sign_e.reshape(-1)
    return out


def limb_count(bound: int) -> int:
    """Balanced base-128 digits in [-64, 63] needed to represent every |x| <= bound."""
    cover, limbs = 63, 1
    while cover < bound:
        cover = cover * LIMB_BASE + 63
        limbs += 1
    return limbs


def split_limbs(x: np.ndarray, limbs: int) -> list[np.ndarray]:
    """x = Σ_j 128^j · digit_j with every digit int8 in [-64, 63] (lowest first)."""
    digits = []
    rest = x.astype(np.int32)
    for _ in range(limbs):
        digit = ((rest + 64) & (LIMB_BASE - 1)) - 64
        digits.append(digit.astype(np.int8))
        rest = (rest - digit) >> 7
    if np.any(rest):
        raise OverflowError("value exceeds the limb bound")
    return digits


def denoise_limbs(k: int, r: int) -> int:
    """L, the digits of Y and Z: |Y| <= 128·k/r (A' entries times ±1 over k/r chunks) and
    |Z| <= 64·k/r."""
    return limb_count(max(128 * (k // r), 64 * (k // r)))


def denoise_operands(
    y: np.ndarray, z: np.ndarray, f: NoiseFactors, *, k: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Int8 (left, right) pairs whose products, Horner-combined in base 128, give the
    correction D = Y·F_R + E_L·Z, so that A·B = A'·B' − D.

    Left_j = [Y_j | E_L] (rows × 2r), Right_j = [F_R ; Z_j] (2r × cols).
    """
    limbs = denoise_limbs(k, f.perm_e.shape[1])
    y_digits = split_limbs(y, limbs)
    z_digits = split_limbs(z, limbs)
    lefts = [np.ascontiguousarray(np.concatenate([yd, f.left], axis=1)) for yd in y_digits]
    rights = [np.ascontiguousarray(np.concatenate([f.right, zd], axis=0)) for zd in z_digits]
    return lefts, rights
