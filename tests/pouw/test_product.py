"""The mined product equals the int64 reference on every backend, for every input in range."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pouw import MAX_TARGET, OperandError, ParamsError, available_backends, default_r, mine_product
from pouw.backends import get_backend
from pouw.params import R_MAX
from pouw.torch_backend import TorchBackend, cpu_has_int8_dot, int_mm_is_exact, int_mm_usable

from .conftest import COMMITMENT, random_operands

#: Every CPU backend here, the native fused kernel (both code paths) included where built.
CPU_BACKENDS = [name for name in available_backends() if name not in ("torch-cuda", "cupy")]


@st.composite
def jobs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    r = draw(st.sampled_from([16, 32, 64]))
    chunks = draw(st.integers(1, 4))
    m = 8 * draw(st.integers(1, 6))
    n = 4 * draw(st.integers(1, 8))
    k = r * chunks
    style = draw(st.sampled_from(["uniform", "extreme", "min", "max", "zero", "mixed-sign"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if style == "uniform":
        a = rng.integers(-64, 64, (m, k))
        b = rng.integers(-64, 64, (k, n))
    elif style == "extreme":
        a = rng.choice([-64, 63], (m, k))
        b = rng.choice([-64, 63], (k, n))
    elif style == "min":
        a, b = np.full((m, k), -64), np.full((k, n), -64)
    elif style == "max":
        a, b = np.full((m, k), 63), np.full((k, n), 63)
    elif style == "zero":
        a, b = np.zeros((m, k), int), np.zeros((k, n), int)
    else:
        a, b = np.full((m, k), -64), np.full((k, n), 63)
    return a.astype(np.int8), b.astype(np.int8), r


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(job=jobs())
def test_product_is_exact(backend: str, job: tuple[np.ndarray, np.ndarray, int]) -> None:
    a, b, r = job
    result = mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET >> 4, r=r,
                          backend=backend)
    assert np.array_equal(result.product.astype(np.int64), a.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_large_k_extremes_are_exact(backend: str) -> None:
    """k = 4096 at the range ends: accumulators near their bound stay exact."""
    m, k, n = 16, 4096, 8
    a = np.full((m, k), -64, np.int8)
    b = np.full((k, n), -64, np.int8)
    a[1::2] = 63
    b[:, 1::2] = 63
    result = mine_product(a, b, commitment=COMMITMENT, target=0, r=R_MAX, backend=backend)
    assert np.array_equal(result.product.astype(np.int64), a.astype(np.int64) @ b.astype(np.int64))


def test_backends_give_identical_tickets_and_certificates() -> None:
    a, b = random_operands(48, 512, 40, seed=11)
    results = [mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET >> 9, r=64,
                            backend=name, max_wins=5) for name in available_backends()]
    encoded = [[c.encode() for c in res.certificates] for res in results]
    assert encoded[0], "expected wins at this target"
    assert all(e == encoded[0] for e in encoded)
    assert all(np.array_equal(res.product, results[0].product) for res in results)


def test_int_mm_fallback_is_bit_identical() -> None:
    """Whatever the self-test decides, the float32 fallback yields the same product."""
    a, b = random_operands(32, 256, 16, seed=5)
    fast = mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET >> 6, r=32,
                        backend=TorchBackend("cpu"), max_wins=3)
    slow = mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET >> 6, r=32,
                        backend=TorchBackend("cpu", allow_int_mm=False), max_wins=3)
    assert np.array_equal(fast.product, slow.product)
    assert [c.encode() for c in fast.certificates] == [c.encode() for c in slow.certificates]
    assert isinstance(int_mm_is_exact("cpu"), bool)


@pytest.mark.parametrize("name", ["torch-cuda", "cupy"])
def test_gpu_backend_bit_identical_where_available(name: str) -> None:
    if name not in available_backends():
        pytest.skip(f"{name}: no GPU on this machine")
    a, b = random_operands(64, 512, 64, seed=2)
    gpu = mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET >> 9, r=64,
                       backend=get_backend(name), max_wins=4)
    cpu = mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET >> 9, r=64,
                       backend="numpy", max_wins=4)
    assert np.array_equal(gpu.product, cpu.product)
    assert [c.encode() for c in gpu.certificates] == [c.encode() for c in cpu.certificates]


def test_missing_gpu_backend_is_a_clear_error() -> None:
    if "torch-cuda" in available_backends():
        pytest.skip("a CUDA device exists here")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        get_backend("torch-cuda")


@pytest.mark.parametrize(
    ("a", "b", "error"),
    [
        (np.full((8, 16), 64, np.int16), np.zeros((16, 4), np.int8), OperandError),
        (np.full((8, 16), -65, np.int16), np.zeros((16, 4), np.int8), OperandError),
        (np.zeros((8, 16), np.float32), np.zeros((16, 4), np.int8), OperandError),
        (np.zeros((8, 16), np.int8), np.zeros((32, 4), np.int8), OperandError),
        (np.zeros(16, np.int8), np.zeros((16, 4), np.int8), OperandError),
        (np.zeros((7, 16), np.int8), np.zeros((16, 4), np.int8), ParamsError),
        (np.zeros((8, 16), np.int8), np.zeros((16, 5), np.int8), ParamsError),
        (np.zeros((8, 24), np.int8), np.zeros((24, 4), np.int8), ParamsError),
    ],
)
def test_bad_operands_are_rejected(a: np.ndarray, b: np.ndarray, error: type[Exception]) -> None:
    with pytest.raises(error):
        mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET, r=16)


@pytest.mark.parametrize(("k", "r"), [(4096, 64), (2048, 64), (64, 64), (96, 32), (48, 16),
                                     (16, 16)])
def test_default_r_is_the_largest_power_of_two_up_to_64_dividing_k(k: int, r: int) -> None:

    assert default_r(k) == r


ZEN2_FLAGS = ("flags\t\t: fpu sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni\n"
              "bugs\t\t: sysret_ss_attrs\n")


@pytest.mark.parametrize(("cpuinfo", "has"), [
    (ZEN2_FLAGS, False),  # AVX2 only: oneDNN's int8 GEMM is a reference loop there
    (ZEN2_FLAGS.replace("avx2", "avx2 avx512f avx512_vnni"), True),
    (ZEN2_FLAGS.replace("avx2", "avx2 avx_vnni"), True),
    (ZEN2_FLAGS.replace("avx2", "avx2 amx_tile amx_int8"), True),
    ("processor\t: 0\nFeatures\t: fp asimd aes crc32 asimddp\n", True),  # Arm dot product
    ("processor\t: 0\nFeatures\t: fp asimd aes crc32\n", False),
    ("processor\t: 0\n", True),  # no flags to read: oneDNN trusted
])
def test_int8_dot_product_instruction_read_from_cpuinfo(cpuinfo: str, has: bool) -> None:
    assert cpu_has_int8_dot(cpuinfo) is has


def test_torch_cpu_runs_int8_gemm_only_where_usable() -> None:
    """torch-cpu takes oneDNN's int8 GEMM only where it is exact and the CPU has an int8 dot
    product; elsewhere it is the float32 path, with the same product."""
    backend = TorchBackend("cpu")
    assert backend.int_mm == int_mm_usable("cpu")
    assert backend.int_mm == (cpu_has_int8_dot() and int_mm_is_exact("cpu"))
    assert backend.name == ("torch-cpu-int8" if backend.int_mm else "torch-cpu-float32")
