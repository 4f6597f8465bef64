"""The fused native mining kernel (pouw/_native/fused.c), loaded through ctypes.

One pass per row panel computes the r-deep chunk products with the accumulators in
registers, folds each 8×4 tile after every chunk and advances its ticket state in place;
the int32 partial product is never written per chunk, only the final A'·B'. Tiles whose
state passes the cheap prefilter (pouw.tickets.candidate_mask) come back as candidates.
Built by setup.py (optional: when it is absent, available() is False and pouw mines with
the torch path). ctypes releases the GIL during the call; OpenMP spreads the work.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from pouw._native import built_library
from pouw.noise import NoiseFactors, denoise_limbs
from pouw.params import PREFILTER_BITS, TILE_H, TILE_W

#: Columns per kernel block (8 tiles of 4): packed B' is padded to a multiple of this.
BLOCK_COLS = 32

#: What the kernel runs: the portable C path, AVX2 (exact fp32 FMA: AVX2 has no exact 8-bit
#: dot product), AVX-512 VNNI, or AMX tiles (with VNNI folds).
ISA_NAMES = {0: "portable", 1: "avx2", 2: "avx512vnni", 3: "amx"}

#: One prefilter candidate: (tile row, tile column, chunk, state), as fused.c lays it out.
CANDIDATE_DTYPE = np.dtype([("tile_row", "<i4"), ("tile_col", "<i4"), ("chunk", "<i4"),
                            ("pad", "<i4"), ("state", "<u8")])

_P = ctypes.c_void_p
_I64 = ctypes.c_int64


def _load() -> ctypes.CDLL | None:
    lib = built_library("_fused")
    if lib is None:
        return None
    try:
        lib.pouw_noisy_left.argtypes = [_P, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P,
                                        ctypes.c_int]
        lib.pouw_noisy_right.argtypes = [_P, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P, _P, _P]
        lib.pouw_denoise_operands.argtypes = [_P, _P, _I64, _I64, _P, _P, _I64, _I64, _P, _P,
                                              _P]
    except (OSError, AttributeError):  # absent, or built from an older fused.c: not used
        return None
    lib.pouw_noisy_left.restype = None
    lib.pouw_noisy_right.restype = None
    lib.pouw_denoise_operands.restype = _I64
    lib.pouw_pack_b.argtypes = [_P, _I64, _I64, _I64, _P, _P]
    lib.pouw_pack_b.restype = None
    lib.pouw_fused.argtypes = [_P, _P, _P, _I64, _I64, _I64, _I64, _I64, _P, ctypes.c_uint64,
                               _P, _P, _I64, _P, _P, _P, _I64, _I64, _I64, _I64, ctypes.c_int]
    lib.pouw_fused.restype = _I64
    lib.pouw_best_isa.argtypes = []
    lib.pouw_best_isa.restype = ctypes.c_int
    lib.pouw_threads.argtypes = []
    lib.pouw_threads.restype = ctypes.c_int
    return lib


_LIB = _load()


def available() -> bool:
    """Whether the extension was built and loads here."""
    return _LIB is not None


def _lib() -> ctypes.CDLL:
    if _LIB is None:
        raise RuntimeError("the native PoUW kernel is not built (python setup.py build_ext)")
    return _LIB


def best_isa() -> int:
    """The fastest instruction set the kernel can use on this CPU (see ISA_NAMES)."""
    return int(_lib().pouw_best_isa())


def threads() -> int:
    """OpenMP threads the kernel runs on."""
    return int(_lib().pouw_threads())


def set_threads(count: int) -> None:
    """The kernel's OpenMP threads for the calling thread (libgomp keeps the setting per
    thread; the symbol resolves through the extension's own libgomp dependency)."""
    _lib().omp_set_num_threads(ctypes.c_int(max(1, count)))


@dataclass(frozen=True)
class PackedRight:
    """B' laid out for the kernel, with the per-chunk bias compensation of the u8 left side."""

    blocks: np.ndarray  # int8, (n padded to BLOCK_COLS) · k bytes
    compensation: np.ndarray  # uint32 (chunks, n padded): 128 · column sums of B' to chunk c
    k: int
    n: int
    r: int


def pack_right(b_noisy: np.ndarray, r: int) -> PackedRight:
    """Pack B' (k×n int8) once per job."""
    b = np.ascontiguousarray(b_noisy, dtype=np.int8)
    k, n = b.shape
    padded = -(-n // BLOCK_COLS) * BLOCK_COLS
    blocks = np.empty(padded * k, dtype=np.int8)
    compensation = np.empty((k // r, padded), dtype=np.uint32)
    _lib().pouw_pack_b(b.ctypes.data, k, n, r, blocks.ctypes.data, compensation.ctypes.data)
    return PackedRight(blocks=blocks, compensation=compensation, k=k, n=n, r=r)


@dataclass(frozen=True)
class NoisyOperands:
    """What the noise phase (docs/pouw.md §5-7) hands the kernel, made in two passes over A
    and B by pouw_noisy_left/right: no E, F, F_L or E_R matrix is ever materialised."""

    left_biased: np.ndarray  # A' + 128 as uint8, m×k (see biased_left)
    right: PackedRight  # B' packed with its compensation
    y: np.ndarray  # Y = A'·F_L, int32 m×r
    z: np.ndarray  # Z = E_R·B, int32 r×n


def noisy_operands(a8: np.ndarray, b8: np.ndarray, f: NoiseFactors, *,
                   isa: int = -1) -> NoisyOperands:
    """A' (biased), packed B', Y and Z of one job, equal to pouw.noise's noisy_left,
    noisy_right, and the products with right_wide_factor / left_wide_factor."""
    a = np.ascontiguousarray(a8, dtype=np.int8)
    b = np.ascontiguousarray(b8, dtype=np.int8)
    (m, k), n, r = a.shape, b.shape[1], f.perm_e.shape[1]
    if b.shape[0] != k or f.perm_e.size != k or f.left.shape != (m, r) \
            or f.right.shape != (r, n):
        raise ValueError("noise factors do not match the operands")
    idx_e = np.ascontiguousarray((f.perm_e + r * (f.sign_e < 0)).reshape(-1), dtype=np.int32)
    # Y = A'·F_L as a gather: position q of chunk c reads A' at c·r + (perm_f[c]^-1)[q]
    inverse_f = np.argsort(f.perm_f, axis=1)
    gidx = np.ascontiguousarray((inverse_f + np.arange(0, k, r)[:, None]).reshape(-1),
                                dtype=np.int32)
    gsign = np.ascontiguousarray(np.take_along_axis(f.sign_f, inverse_f, axis=1).reshape(-1),
                                 dtype=np.int32)
    perm_f = np.ascontiguousarray(f.perm_f.reshape(-1), dtype=np.int32)
    perm_e = np.ascontiguousarray(f.perm_e.reshape(-1), dtype=np.int32)
    sign_f = np.ascontiguousarray(f.sign_f.reshape(-1), dtype=np.int8)
    sign_e = np.ascontiguousarray(f.sign_e.reshape(-1), dtype=np.int8)
    left = np.ascontiguousarray(f.left, dtype=np.int8)
    right = np.ascontiguousarray(f.right, dtype=np.int8)
    lib = _lib()
    biased = np.empty((m, k), dtype=np.uint8)
    y = np.empty((m, r), dtype=np.int32)
    lib.pouw_noisy_left(a.ctypes.data, m, k, r, left.ctypes.data, idx_e.ctypes.data,
                        gidx.ctypes.data, gsign.ctypes.data, biased.ctypes.data, y.ctypes.data,
                        isa)
    padded = -(-n // BLOCK_COLS) * BLOCK_COLS
    blocks = np.empty(padded * k, dtype=np.int8)
    compensation = np.empty((k // r, padded), dtype=np.uint32)
    z = np.zeros((r, n), dtype=np.int32)
    lib.pouw_noisy_right(b.ctypes.data, k, n, r, right.ctypes.data, perm_f.ctypes.data,
                         sign_f.ctypes.data, perm_e.ctypes.data, sign_e.ctypes.data,
                         blocks.ctypes.data, compensation.ctypes.data, z.ctypes.data)
    return NoisyOperands(left_biased=biased,
                         right=PackedRight(blocks=blocks, compensation=compensation, k=k, n=n,
                                           r=r),
                         y=y, z=z)


@dataclass(frozen=True)
class PackedDenoise:
    """The denoising pairs of pouw.noise.denoise_operands laid out for the kernel, which
    subtracts D = Σ_l 128^l · Left_l·Right_l in registers after the last chunk."""

    left: np.ndarray  # uint8 (limbs, m, depth): Left_l + 128
    right: np.ndarray  # int8 (limbs, n padded · depth): each Right_l packed like B'
    compensation: np.ndarray  # uint32 (limbs, n padded)
    depth: int


def pack_denoise(lefts: list[np.ndarray], rights: list[np.ndarray]) -> PackedDenoise:
    """Pack the (m × 2r, 2r × n) int8 digit pairs once per job (lowest digit first)."""
    depth = lefts[0].shape[1]
    packed = [pack_right(right, depth) for right in rights]
    return PackedDenoise(left=np.stack([biased_left(x) for x in lefts]),
                         right=np.stack([p.blocks for p in packed]),
                         compensation=np.concatenate([p.compensation for p in packed]),
                         depth=depth)


def denoise_job(y: np.ndarray, z: np.ndarray, f: NoiseFactors, *, k: int) -> PackedDenoise:
    """pack_denoise(*pouw.noise.denoise_operands(y, z, f, k=k)) in one C pass: the digit
    pairs [Y_l | E_L], [F_R ; Z_l] made straight in the kernel's layouts."""
    r = f.perm_e.shape[1]
    m, n = y.shape[0], z.shape[1]
    limbs = denoise_limbs(k, r)
    yc, zc = (np.ascontiguousarray(x, dtype=np.int32) for x in (y, z))
    el, fr = (np.ascontiguousarray(x, dtype=np.int8) for x in (f.left, f.right))
    if yc.shape != (m, r) or zc.shape != (r, n) or el.shape != (m, r) or fr.shape != (r, n):
        raise ValueError("Y, Z and the noise factors do not match")
    padded = -(-n // BLOCK_COLS) * BLOCK_COLS
    left = np.empty((limbs, m, 2 * r), dtype=np.uint8)
    right = np.empty((limbs, padded * 2 * r), dtype=np.int8)
    compensation = np.empty((limbs, padded), dtype=np.uint32)
    if _lib().pouw_denoise_operands(yc.ctypes.data, el.ctypes.data, m, r, zc.ctypes.data,
                                    fr.ctypes.data, n, limbs, left.ctypes.data,
                                    right.ctypes.data, compensation.ctypes.data) < 0:
        raise OverflowError("value exceeds the limb bound")
    return PackedDenoise(left=left, right=right, compensation=compensation, depth=2 * r)


def biased_left(a_noisy: np.ndarray) -> np.ndarray:
    """A' + 128 as uint8 (the kernel's u8 × s8 dot products; fused.c removes the bias)."""
    out: np.ndarray = np.ascontiguousarray(a_noisy, dtype=np.int8).view(np.uint8) ^ np.uint8(0x80)
    return out


def prefilter_limit(bound: int) -> int:
    """The largest state whose ticket may be <= bound (pouw.tickets.candidate_mask)."""
    bound_top = bound >> (256 - PREFILTER_BITS)
    return min(((bound_top + 1) << (64 - PREFILTER_BITS)) - 1, 2**64 - 1)


def fused_panel(a_biased: np.ndarray, packed: PackedRight, *, row_tile0: int,
                states: np.ndarray, limit: int, max_candidates: int,
                denoise: PackedDenoise | None = None, out: np.ndarray | None = None,
                isa: int = -1) -> tuple[np.ndarray, np.ndarray | None]:
    """Mine rows of one job: (A'·B' for these rows as int32, or A·B with ``denoise``;
    candidates).

    ``states`` ((rows/8)×(n/4) uint64, C-contiguous) holds the tile states before chunk 0
    and is advanced in place through the last chunk. Candidates are the (tile, chunk) pairs
    whose state is <= limit, sorted by (chunk, tile row, tile column); None when there are
    more than ``max_candidates`` (the caller then evaluates the panel chunk by chunk).
    ``out``, if given, receives the product (no allocation, no copy).
    """
    lib = _lib()
    rows, k = a_biased.shape
    if a_biased.dtype != np.uint8 or not a_biased.flags.c_contiguous or k != packed.k:
        raise ValueError("a_biased must be C-contiguous uint8 rows of length k")
    if rows % TILE_H or states.shape != (rows // TILE_H, packed.n // TILE_W) \
            or states.dtype != np.uint64 or not states.flags.c_contiguous:
        raise ValueError("states must be C-contiguous uint64 (rows/8, n/4)")
    if out is None:
        out = np.empty((rows, packed.n), dtype=np.int32)
    elif out.shape != (rows, packed.n) or out.dtype != np.int32 or not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous int32 (rows, n)")
    cands = np.empty(max(1, max_candidates), dtype=CANDIDATE_DTYPE)
    if denoise is not None and (denoise.left.shape[1] < (row_tile0 * TILE_H + rows)
                                or denoise.right.shape[1] != packed.blocks.size
                                // packed.k * denoise.depth):
        raise ValueError("denoise operands do not match this job")
    dn = (denoise.left.ctypes.data, denoise.right.ctypes.data, denoise.compensation.ctypes.data,
          denoise.left.shape[0], denoise.depth, denoise.left.shape[1], row_tile0 * TILE_H
          ) if denoise is not None else (None, None, None, 0, 4, 0, 0)
    count = lib.pouw_fused(a_biased.ctypes.data, packed.blocks.ctypes.data,
                           packed.compensation.ctypes.data, rows, k, packed.n, packed.r,
                           row_tile0, states.ctypes.data, limit, out.ctypes.data,
                           cands.ctypes.data, max_candidates, *dn, isa)
    if count == -2:
        raise MemoryError("the native kernel could not allocate its float operands")
    if count < 0:
        raise ValueError("shape not accepted by the native kernel")
    if count > max_candidates:
        return out, None
    found = cands[:count]
    order = np.lexsort((found["tile_col"], found["tile_row"], found["chunk"]))
    return out, found[order]
