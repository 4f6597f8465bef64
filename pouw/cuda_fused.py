"""The fused PoUW mining kernel on CUDA, through cupy (a RawModule with dp4a).

The same fusion as pouw/_native/fused.c: one thread per 8×4 output tile keeps the tile's 32
int32 accumulators in registers, adds each r-deep chunk with __dp4a (four int8 products per
instruction, signed × signed, so no bias or compensation as on the CPU's u8 × s8 path),
folds them by XOR after every chunk, advances the tile state s = (s XOR fold)·K mod 2^64 and
lists the (tile, chunk) pairs whose state is at or under the prefilter limit; after the last
chunk it subtracts the denoising digits by Horner in base 128 and writes A·B once. Every
operation is the reference's, modulo 2^32 / 2^64, so the results are bit-identical by
construction; tests/pouw/test_cuda_fused.py checks that wherever a GPU exists.

Selected only behind the GPU guard (pouw.backends.cupy_available). Not yet wired into
MiningSession: this machine has no GPU, and an unverified kernel stays out of the mining path
until that test has passed on one. One thread per tile reads its rows from global memory
(through L1/L2): correct and simple, not yet tiled through shared memory.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from pouw.backends import cupy_available
from pouw.native import CANDIDATE_DTYPE
from pouw.params import TILE_H, TILE_W
from pouw.tickets import CHUNK_MULTIPLIER

KERNEL_NAME = "pouw_fused_cuda"

#: Threads per block: 16 tile columns × 8 tile rows (a 64 × 64 output block).
BLOCK = (16, 8, 1)

SOURCE = r"""
struct pouw_candidate {
    int tile_row;
    int tile_col;
    int chunk;
    int pad;
    unsigned long long state;
};

extern "C" __global__ void pouw_fused_cuda(
        const signed char *__restrict__ a,      /* rows x k: A' (int8, row-major) */
        const signed char *__restrict__ bt,     /* n x k: B' transposed */
        long long rows, long long k, long long n, long long r, long long row_tile0,
        unsigned long long *__restrict__ states, /* (rows/8) x (n/4), advanced in place */
        unsigned long long limit,
        int *__restrict__ out,                  /* rows x n: A'B' minus the denoising */
        pouw_candidate *__restrict__ cands, long long max_cands,
        unsigned long long *__restrict__ count,
        const signed char *__restrict__ dleft,  /* limbs x rows_total x depth: Left_l */
        const signed char *__restrict__ dright, /* limbs x n x depth: Right_l transposed */
        long long limbs, long long depth, long long rows_total, long long row0) {
    const long long tile_cols = n / 4;
    const long long tc = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long tr = (long long)blockIdx.y * blockDim.y + threadIdx.y;
    if (tr >= rows / 8 || tc >= tile_cols) return;
    const int *arow[8];
    const int *bcol[4];
    for (int i = 0; i < 8; i++) arow[i] = (const int *)(a + (tr * 8 + i) * k);
    for (int j = 0; j < 4; j++) bcol[j] = (const int *)(bt + (tc * 4 + j) * k);
    int acc[8][4];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0;
    unsigned long long st = states[tr * tile_cols + tc];
    for (long long c = 0; c < k / r; c++) {
        for (long long g = c * r / 4; g < (c + 1) * r / 4; g++) {
            int bv[4];
            for (int j = 0; j < 4; j++) bv[j] = bcol[j][g];
            for (int i = 0; i < 8; i++) {
                const int av = arow[i][g];
                for (int j = 0; j < 4; j++) acc[i][j] = __dp4a(av, bv[j], acc[i][j]);
            }
        }
        unsigned int fold = 0;
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 4; j++) fold ^= (unsigned int)acc[i][j];
        st = (st ^ (unsigned long long)fold) * CHUNK_MULTIPLIER_ULL;
        if (st <= limit) {
            const unsigned long long slot = atomicAdd(count, 1ULL);
            if (slot < (unsigned long long)max_cands) {
                cands[slot].tile_row = (int)(row_tile0 + tr);
                cands[slot].tile_col = (int)tc;
                cands[slot].chunk = (int)c;
                cands[slot].pad = 0;
                cands[slot].state = st;
            }
        }
    }
    states[tr * tile_cols + tc] = st;
    /* D = sum_l 128^l Left_l Right_l by Horner from the top digit, modulo 2^32 */
    unsigned int d[8][4];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) d[i][j] = 0u;
    for (long long l = limbs - 1; l >= 0; l--) {
        const int *lrow[8];
        const int *rcol[4];
        for (int i = 0; i < 8; i++)
            lrow[i] = (const int *)(dleft + (l * rows_total + row0 + tr * 8 + i) * depth);
        for (int j = 0; j < 4; j++)
            rcol[j] = (const int *)(dright + (l * n + tc * 4 + j) * depth);
        int part[8][4];
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 4; j++) part[i][j] = 0;
        for (long long g = 0; g < depth / 4; g++) {
            int rv[4];
            for (int j = 0; j < 4; j++) rv[j] = rcol[j][g];
            for (int i = 0; i < 8; i++) {
                const int lv = lrow[i][g];
                for (int j = 0; j < 4; j++) part[i][j] = __dp4a(lv, rv[j], part[i][j]);
            }
        }
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 4; j++) d[i][j] = d[i][j] * 128u + (unsigned int)part[i][j];
    }
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++)
            out[(tr * 8 + i) * n + tc * 4 + j] = (int)((unsigned int)acc[i][j] - d[i][j]);
}
""".replace("CHUNK_MULTIPLIER_ULL", f"{CHUNK_MULTIPLIER:#x}ULL")


def available() -> bool:
    """Whether cupy imports and sees a CUDA device (the backends' GPU guard)."""
    return cupy_available()


@functools.cache
def _kernel() -> Any:
    import cupy  # optional (the gpu extra): imported only behind available()

    return cupy.RawModule(code=SOURCE, options=("-std=c++14",)).get_function(KERNEL_NAME)


def fused_panel(a_noisy: np.ndarray, b_noisy: np.ndarray, r: int, *, row_tile0: int,
                states: np.ndarray, limit: int, max_candidates: int,
                denoise: list[tuple[np.ndarray, np.ndarray]] | None = None,
                row0: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """pouw.native.fused_panel on the GPU, from int8 A' (rows×k) and B' (k×n).

    ``denoise``: the (Left_l, Right_l) digit pairs of pouw.noise.denoise_operands, lowest
    first, Left_l over the job's rows (this panel's start at ``row0``). ``states`` is
    advanced in place. Returns (the panel's A·B or A'B' as int32, candidates sorted by
    (chunk, tile row, tile column), or None when there were more than ``max_candidates``).
    """
    import cupy  # optional (the gpu extra): imported only behind available()

    rows, k = a_noisy.shape
    n = b_noisy.shape[1]
    if a_noisy.dtype != np.int8 or b_noisy.dtype != np.int8 or b_noisy.shape[0] != k:
        raise ValueError("A' and B' must be int8 with matching inner dimension")
    if rows % TILE_H or n % TILE_W or k % r or r % 4:
        raise ValueError("shape not accepted by the kernel")
    if states.shape != (rows // TILE_H, n // TILE_W) or states.dtype != np.uint64:
        raise ValueError("states must be uint64 (rows/8, n/4)")
    a_dev = cupy.asarray(np.ascontiguousarray(a_noisy))
    bt_dev = cupy.asarray(np.ascontiguousarray(b_noisy.T))
    states_dev = cupy.asarray(np.ascontiguousarray(states))
    out = cupy.empty((rows, n), dtype=cupy.int32)
    # cupy has no structured arrays: candidates as raw bytes, viewed on the host
    cands = cupy.zeros(max(1, max_candidates) * CANDIDATE_DTYPE.itemsize, dtype=cupy.uint8)
    count = cupy.zeros(1, dtype=cupy.uint64)
    if denoise:
        depth = denoise[0][0].shape[1]
        left = cupy.asarray(np.stack([np.ascontiguousarray(x, dtype=np.int8)
                                      for x, _ in denoise]))
        right = cupy.asarray(np.stack([np.ascontiguousarray(y.T, dtype=np.int8)
                                       for _, y in denoise]))
        limbs, rows_total = len(denoise), left.shape[1]
    else:
        depth, limbs, rows_total = 4, 0, 0
        left = right = cupy.zeros(4, dtype=cupy.int8)
    grid = (-(-(n // TILE_W) // BLOCK[0]), -(-(rows // TILE_H) // BLOCK[1]), 1)
    i64 = np.int64
    _kernel()(grid, BLOCK, (a_dev, bt_dev, i64(rows), i64(k), i64(n), i64(r), i64(row_tile0),
                            states_dev, np.uint64(limit), out, cands, i64(max_candidates),
                            count, left, right, i64(limbs), i64(depth), i64(rows_total),
                            i64(row0)))
    states[...] = cupy.asnumpy(states_dev)
    found_count = int(count.get()[0])
    product = cupy.asnumpy(out)
    if found_count > max_candidates:
        return product, None
    found = cupy.asnumpy(cands[:found_count * CANDIDATE_DTYPE.itemsize]).view(CANDIDATE_DTYPE)
    order = np.lexsort((found["tile_col"], found["tile_row"], found["chunk"]))
    return product, found[order]
