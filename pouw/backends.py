"""Exact matmul backends. Each computes int8 × int8 → int32 products bit-exactly.

- numpy: float32 GEMM on inner chunks of at most 1024 (every partial sum < 2^24, exact).
- torch CPU: torch._int_mm (oneDNN s8s8s32) when a start-up self-test on extreme values
  passes on this CPU and it has an int8 dot-product instruction (without one oneDNN runs a
  slow reference loop), else the float32 path on torch.
- torch CUDA and cupy: same code on the device, selected only when the library imports
  and a device exists; the same self-test guards int8 GEMM.
- native: the fused C kernel (pouw/native.py) for the chunked product, folds and tile states,
  with numpy for everything else; the default on CPU wherever the extension built.
All backends produce identical accumulators, hence identical tickets and certificates.

numpy, native and cupy live here; the torch backends live in pouw.torch_backend, which this
module imports only when one of them is selected (get_backend), so that a process that mines
natively never pays torch's import (1 s quiet, 5-7 s under load; issue 12).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from pouw import native

#: Inner length of one exact float32 GEMM: 128·128·1024 = 2^24.
FLOAT32_EXACT_INNER = 1024


class Backend(Protocol):
    """What the mining loop needs from a device. Arrays are opaque handles."""

    name: str

    def put(self, x: np.ndarray) -> Any: ...

    def accumulate(self, acc: Any | None, a: Any, b: Any) -> Any: ...

    def product(self, a: Any, b: Any) -> Any: ...

    def fold(self, acc: Any) -> np.ndarray: ...

    def subtract_horner(self, acc: Any, parts: list[Any], base: int) -> np.ndarray: ...

    def to_numpy(self, x: Any) -> np.ndarray: ...

    def synchronize(self) -> None: ...

    def set_threads(self, threads: int) -> None:
        """Size the CPU threads this backend computes on, for the calling thread."""


def chunked_float_product(matmul: Callable[[Any, Any], Any], to_int32: Callable[[Any], Any],
                           a: Any, b: Any) -> Any:
    inner = a.shape[1]
    out = None
    for lo in range(0, inner, FLOAT32_EXACT_INNER):
        hi = min(inner, lo + FLOAT32_EXACT_INNER)
        part = to_int32(matmul(a[:, lo:hi], b[lo:hi]))
        out = part if out is None else out + part
    return out


def fold_halves(lanes: np.ndarray) -> np.ndarray:
    """The last fold, on the host, shared so every backend folds alike: each int64 lane of a
    (tile rows, tile columns) array XORs its two 32-bit halves into the tile's uint32 fold."""
    z = lanes.view(np.uint32).reshape(*lanes.shape, 2)
    folds: np.ndarray = np.bitwise_xor(z[..., 0], z[..., 1])
    return folds


class ArrayModuleBackend:
    """numpy or cupy: exact float32 GEMM in inner chunks of ≤ 1024."""

    def __init__(self, xp: Any, name: str) -> None:
        self.xp = xp
        self.name = name

    def put(self, x: np.ndarray) -> Any:
        return self.xp.asarray(x, dtype=self.xp.float32)

    def _int32(self, x: Any) -> Any:
        return x.astype(self.xp.int32)

    def accumulate(self, acc: Any | None, a: Any, b: Any) -> Any:
        part = self.product(a, b)
        if acc is None:
            return part
        acc += part
        return acc

    def product(self, a: Any, b: Any) -> Any:
        return chunked_float_product(self.xp.matmul, self._int32, a, b)

    def fold(self, acc: Any) -> np.ndarray:
        """Tile XOR folds on the device (int64 views pair columns), then to the host."""
        xp = self.xp
        rows, cols = acc.shape
        x = acc.view(xp.int64).reshape(rows // 8, 8, cols // 2)
        y = x[:, 0:4] ^ x[:, 4:8]
        y = y[:, 0:2] ^ y[:, 2:4]
        y = (y[:, 0] ^ y[:, 1]).reshape(rows // 8, cols // 4, 2)
        return fold_halves(self.to_numpy(y[..., 0] ^ y[..., 1]))

    def subtract_horner(self, acc: Any, parts: list[Any], base: int) -> np.ndarray:
        d = parts[-1]
        for part in reversed(parts[:-1]):
            d = d * base + part
        return self.to_numpy(acc - d)

    def to_numpy(self, x: Any) -> np.ndarray:
        if self.xp is np:
            return np.asarray(x)
        return np.asarray(x.get())

    def synchronize(self) -> None:
        if self.xp is not np:
            self.xp.cuda.Device().synchronize()

    def set_threads(self, threads: int) -> None:
        """Nothing: numpy's BLAS sizes its pool once, from OPENBLAS_NUM_THREADS at start."""


class NativeBackend(ArrayModuleBackend):
    """numpy for the one-shot products; the mining loop runs pouw.native's fused kernel
    (MiningSession checks isinstance), which never writes a per-chunk partial product."""

    def __init__(self, *, isa: int = -1) -> None:
        super().__init__(np, "numpy-float32")
        best = native.best_isa()
        self.isa = best if isa < 0 else min(isa, best)
        self.name = f"native-{native.ISA_NAMES.get(self.isa, str(self.isa))}+{self.name}"

    def set_threads(self, threads: int) -> None:
        """The kernel's OpenMP threads for the calling thread."""
        native.set_threads(threads)


#: The backends pouw.torch_backend builds.
TORCH_BACKEND_NAMES = ("torch-cpu", "torch-cpu-float32", "torch-cuda")
#: Where they live: imported by name when one is selected, because torch is an optional heavy
#: dependency chosen by config (mining_backend) that a native or numpy node must not load.
TORCH_BACKEND_MODULE = "pouw.torch_backend"


def _torch_backend_module() -> Any:
    return importlib.import_module(TORCH_BACKEND_MODULE)


def _gpu_driver_present() -> bool:
    """Whether an NVIDIA driver is loaded (native Linux or WSL2): no CUDA device without one,
    so a CPU-only machine answers without importing torch or cupy (seconds)."""
    return any(os.path.exists(path) for path in
               ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg"))


def torch_installed() -> bool:
    """Whether torch can be imported here (without importing it)."""
    return importlib.util.find_spec("torch") is not None


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch only where a GPU driver is loaded)."""
    return _gpu_driver_present() and torch_installed() and bool(
        _torch_backend_module().cuda_available())


def cupy_available() -> bool:
    """Whether cupy imports and sees a CUDA device."""
    if not _gpu_driver_present():
        return False
    try:
        import cupy  # optional (the gpu extra): imported lazily so pouw runs without it

        return bool(cupy.is_available())
    except Exception:
        return False


#: The native backends and the instruction set each asks the kernel for (-1: the best here).
NATIVE_ISAS = {"native": -1, "native-vnni": 2, "native-avx2": 1, "native-portable": 0}

BACKEND_NAMES = ("auto", "native", "native-vnni", "native-avx2", "native-portable", "numpy",
                 *TORCH_BACKEND_NAMES, "cupy")


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine."""
    names = ["numpy"]
    if torch_installed():
        names += ["torch-cpu", "torch-cpu-float32"]
    if native.available():
        best = native.best_isa()
        names += ["native"] + (["native-vnni"] if best > 2 else []) + (
            ["native-avx2"] if best > 1 else []) + (["native-portable"] if best > 0 else [])
    if cuda_available():
        names.append("torch-cuda")
    if cupy_available():
        names.append("cupy")
    return names


@functools.cache
def get_backend(name: str = "auto") -> Backend:
    """A backend by name; 'auto' takes a GPU where one exists, else the native fused kernel
    where it built, else torch on CPU where torch is installed, else numpy."""
    if name == "auto":
        name = ("torch-cuda" if cuda_available() else "cupy" if cupy_available()
                else "native" if native.available()
                else "torch-cpu" if torch_installed() else "numpy")
    if name in NATIVE_ISAS:
        if not native.available():
            raise RuntimeError(f"backend {name}: the native kernel is not built")
        return NativeBackend(isa=NATIVE_ISAS[name])
    if name == "numpy":
        return ArrayModuleBackend(np, "numpy-float32")
    if name in TORCH_BACKEND_NAMES:
        if not torch_installed():
            raise RuntimeError(f"backend {name}: torch is not installed")
        backend: Backend = _torch_backend_module().make_backend(name)
        return backend
    if name == "cupy":
        if not cupy_available():
            raise RuntimeError("backend cupy: cupy missing or no CUDA device")
        import cupy  # optional (the gpu extra): imported lazily so pouw runs without it

        return ArrayModuleBackend(cupy, "cupy-float32")
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")

