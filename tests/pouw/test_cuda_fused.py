"""The CUDA fused kernel (pouw.cuda_fused, cupy + dp4a) equals the numpy reference bit for bit:
the product with its denoising, every tile state and every prefilter candidate. It runs only
where cupy sees a GPU; elsewhere those tests are skipped and say why (pytest -rs), and the
kernel's source is still run on the CPU through a small CUDA shim (g++)."""

from __future__ import annotations

import ctypes
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings

from pouw import cuda_fused
from pouw.native import CANDIDATE_DTYPE
from pouw.params import TILE_H, TILE_W
from pouw.tickets import initial_states

from .test_native import kernel_jobs, kernel_reference

needs_gpu = pytest.mark.skipif(
    not cuda_fused.available(),
    reason="CUDA kernel not run: no GPU here (cupy missing or no CUDA device)")


@needs_gpu
@settings(max_examples=40, deadline=None)
@given(job=kernel_jobs())
def test_cuda_kernel_matches_reference(job: tuple[np.ndarray, np.ndarray, int, int, int,
                                                  list[tuple[np.ndarray, np.ndarray]]]) -> None:
    a, b, r, limit, row_tile0, digits = job
    states = initial_states(0x0123456789ABCDEF,
                            np.arange(row_tile0, row_tile0 + a.shape[0] // TILE_H)[:, None],
                            np.arange(b.shape[1] // TILE_W)[None, :])
    want_out, want_states, want_cands = kernel_reference(a, b, r, states, limit, row_tile0,
                                                         digits)
    got_states = states.copy()
    out, cands = cuda_fused.fused_panel(a, b, r, row_tile0=row_tile0, states=got_states,
                                        limit=limit, max_candidates=a.size * b.shape[1] // r + 1,
                                        denoise=digits or None)
    assert cands is not None and cands.dtype == CANDIDATE_DTYPE
    assert np.array_equal(out, want_out)
    assert np.array_equal(got_states, want_states)
    assert [(int(x["chunk"]), int(x["tile_row"]), int(x["tile_col"]), int(x["state"]))
            for x in cands] == sorted(want_cands)


@needs_gpu
def test_cuda_kernel_reports_candidate_overflow() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (16, 64), dtype=np.int8)
    b = rng.integers(-128, 128, (64, 8), dtype=np.int8)
    states = initial_states(1, np.arange(2)[:, None], np.arange(2)[None, :])
    _, cands = cuda_fused.fused_panel(a, b, 16, row_tile0=0, states=states,
                                      limit=2**64 - 1, max_candidates=3)
    assert cands is None


#: Just enough of CUDA for the kernel's source to compile with g++ and run on the CPU, thread
#: by thread: the grid indices, a reference __dp4a (four signed byte products added to c,
#: modulo 2^32) and a sequential atomicAdd.
CUDA_ON_CPU = r"""
#include <cstdint>
#define __global__
#define __restrict__
struct pouw_dim3 { long long x, y, z; };
static pouw_dim3 blockIdx, blockDim, threadIdx;
static inline int __dp4a(int a, int b, int c) {
    unsigned int acc = (unsigned int)c;
    for (int q = 0; q < 4; q++)
        acc += (unsigned int)((int)(signed char)(a >> (8 * q)) * (int)(signed char)(b >> (8 * q)));
    return (int)acc;
}
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
    const unsigned long long old = *p;
    *p += v;
    return old;
}
"""

LAUNCHER = r"""
extern "C" void launch(long long gx, long long gy, long long bx, long long by,
        const signed char *a, const signed char *bt, long long rows, long long k, long long n,
        long long r, long long row_tile0, unsigned long long *states, unsigned long long limit,
        int *out, pouw_candidate *cands, long long max_cands, unsigned long long *count,
        const signed char *dleft, const signed char *dright, long long limbs, long long depth,
        long long rows_total, long long row0) {
    blockDim = {bx, by, 1};
    for (blockIdx.y = 0; blockIdx.y < gy; blockIdx.y++)
        for (blockIdx.x = 0; blockIdx.x < gx; blockIdx.x++)
            for (threadIdx.y = 0; threadIdx.y < by; threadIdx.y++)
                for (threadIdx.x = 0; threadIdx.x < bx; threadIdx.x++)
                    pouw_fused_cuda(a, bt, rows, k, n, r, row_tile0, states, limit, out, cands,
                                    max_cands, count, dleft, dright, limbs, depth, rows_total,
                                    row0);
}
"""


@pytest.fixture(scope="module")
def kernel_on_cpu(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    """The CUDA source (unchanged) compiled for the CPU by g++ with CUDA_ON_CPU."""
    if shutil.which("g++") is None:
        pytest.skip("g++ not found: the CUDA source cannot be emulated on the CPU")
    folder = tmp_path_factory.mktemp("cuda_on_cpu")
    source = folder / "kernel.cpp"
    source.write_text(CUDA_ON_CPU + cuda_fused.SOURCE + LAUNCHER)
    library = folder / "kernel.so"
    subprocess.run(["g++", "-O1", "-std=c++14", "-shared", "-fPIC", str(source), "-o",
                    str(library)], check=True, capture_output=True)
    return ctypes.CDLL(str(library))


@pytest.mark.slow  # runs g++
@settings(max_examples=30, deadline=None)
@given(job=kernel_jobs())
def test_cuda_source_on_the_cpu_matches_reference(
        kernel_on_cpu: ctypes.CDLL, job: tuple[np.ndarray, np.ndarray, int, int, int,
                                               list[tuple[np.ndarray, np.ndarray]]]) -> None:
    """The kernel's own source, run thread by thread on the CPU (no GPU here): the same
    arithmetic as the device's, so it reviews the indexing, fold, mixer and Horner steps."""
    a, b, r, limit, row_tile0, digits = job
    rows, k = a.shape
    n = b.shape[1]
    states = initial_states(0x0123456789ABCDEF,
                            np.arange(row_tile0, row_tile0 + rows // TILE_H)[:, None],
                            np.arange(n // TILE_W)[None, :])
    want_out, want_states, want_cands = kernel_reference(a, b, r, states, limit, row_tile0,
                                                         digits)
    got_states = states.copy()
    out = np.empty((rows, n), dtype=np.int32)
    max_cands = rows * n * k // r + 1
    cands = np.zeros(max_cands, dtype=CANDIDATE_DTYPE)
    count = np.zeros(1, dtype=np.uint64)
    bt = np.ascontiguousarray(b.T)
    if digits:
        left = np.ascontiguousarray(np.stack([x for x, _ in digits]), dtype=np.int8)
        right = np.ascontiguousarray(np.stack([y.T for _, y in digits]), dtype=np.int8)
        limbs, depth = len(digits), left.shape[2]
    else:
        left = right = np.zeros(4, dtype=np.int8)
        limbs, depth = 0, 4
    grid = (-(-(n // TILE_W) // cuda_fused.BLOCK[0]), -(-(rows // TILE_H) // cuda_fused.BLOCK[1]))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    kernel_on_cpu.launch(
        i64(grid[0]), i64(grid[1]), i64(cuda_fused.BLOCK[0]), i64(cuda_fused.BLOCK[1]),
        ptr(a.ctypes.data), ptr(bt.ctypes.data), i64(rows), i64(k), i64(n), i64(r),
        i64(row_tile0), ptr(got_states.ctypes.data), ctypes.c_uint64(limit),
        ptr(out.ctypes.data), ptr(cands.ctypes.data), i64(max_cands), ptr(count.ctypes.data),
        ptr(left.ctypes.data), ptr(right.ctypes.data), i64(limbs), i64(depth), i64(rows),
        i64(0))
    assert np.array_equal(out, want_out)
    assert np.array_equal(got_states, want_states)
    found = cands[:int(count[0])]
    assert sorted((int(x["chunk"]), int(x["tile_row"]), int(x["tile_col"]), int(x["state"]))
                  for x in found) == sorted(want_cands)


@pytest.mark.slow  # runs nvcc
def test_cuda_source_compiles_for_the_device(tmp_path: pathlib.Path) -> None:
    """nvcc accepts the source for a dp4a-capable device (sm_75) and emits dp4a, where the
    CUDA toolkit is installed even without a GPU."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found: the CUDA source is not compiled here")
    source = tmp_path / "kernel.cu"
    source.write_text(cuda_fused.SOURCE)
    subprocess.run(["nvcc", "-std=c++14", "-arch=sm_75", "-ptx", str(source), "-o",
                    str(tmp_path / "kernel.ptx")], check=True, capture_output=True)
    assert "dp4a" in (tmp_path / "kernel.ptx").read_text()
