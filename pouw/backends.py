"""Exact matmul backends. Each computes int8 × int8 → int32 products bit-exactly.

- numpy: float32 GEMM on inner chunks of at most 1024 (every partial sum < 2^24, exact).
- torch CPU: torch._int_mm (oneDNN s8s8s32) when a start-up self-test on extreme values
  passes on this CPU, else the float32 path on torch.
- torch CUDA and cupy: same code on the device, selected only when the library imports
  and a device exists; the same self-test guards int8 GEMM.
- native: the fused C kernel (pouw/native.py) for the chunked product, folds and tile states,
  with torch CPU for everything else; the default on CPU wherever the extension built.
All backends produce identical accumulators, hence identical tickets and certificates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

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


def _chunked_float_product(matmul: Callable[[Any, Any], Any], to_int32: Callable[[Any], Any],
                           a: Any, b: Any) -> Any:
    inner = a.shape[1]
    out = None
    for lo in range(0, inner, FLOAT32_EXACT_INNER):
        hi = min(inner, lo + FLOAT32_EXACT_INNER)
        part = to_int32(matmul(a[:, lo:hi], b[lo:hi]))
        out = part if out is None else out + part
    return out


def _fold_halves(lanes: np.ndarray) -> np.ndarray:
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
        return _chunked_float_product(self.xp.matmul, self._int32, a, b)

    def fold(self, acc: Any) -> np.ndarray:
        """Tile XOR folds on the device (int64 views pair columns), then to the host."""
        xp = self.xp
        rows, cols = acc.shape
        x = acc.view(xp.int64).reshape(rows // 8, 8, cols // 2)
        y = x[:, 0:4] ^ x[:, 4:8]
        y = y[:, 0:2] ^ y[:, 2:4]
        y = (y[:, 0] ^ y[:, 1]).reshape(rows // 8, cols // 4, 2)
        return _fold_halves(self.to_numpy(y[..., 0] ^ y[..., 1]))

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


class TorchBackend:
    """torch on CPU or CUDA; int8 GEMM via torch._int_mm when proven exact here."""

    def __init__(self, device: str = "cpu", *, allow_int_mm: bool = True) -> None:
        self.device = torch.device(device)
        self.int_mm = allow_int_mm and int_mm_is_exact(device)
        self.name = f"torch-{device}-{'int8' if self.int_mm else 'float32'}"

    def put(self, x: np.ndarray) -> Any:
        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        return t if self.int_mm else t.to(torch.float32)

    def accumulate(self, acc: Any | None, a: Any, b: Any) -> Any:
        part = self.product(a, b)
        return part if acc is None else acc.add_(part)

    def product(self, a: Any, b: Any) -> Any:
        if self.int_mm:
            try:
                return torch._int_mm(a.contiguous(), b.contiguous())
            except RuntimeError:
                pass  # a shape this device's int8 GEMM does not take (CUDA: m <= 16, …)
            a, b = a.float(), b.float()
        return _chunked_float_product(torch.matmul, lambda x: x.to(torch.int32), a, b)

    def fold(self, acc: Any) -> np.ndarray:
        """Tile XOR folds; int64 views XOR column pairs at once (half the vector ops)."""
        rows, cols = acc.shape
        x = acc.view(torch.int64).view(rows // 8, 8, cols // 2)
        y = torch.bitwise_xor(x[:, 0:4], x[:, 4:8])
        torch.bitwise_xor(y[:, 0:2], y[:, 2:4], out=y[:, 0:2])
        y = torch.bitwise_xor(y[:, 0], y[:, 1]).view(rows // 8, cols // 4, 2)
        return _fold_halves(torch.bitwise_xor(y[..., 0], y[..., 1]).cpu().numpy())

    def subtract_horner(self, acc: Any, parts: list[Any], base: int) -> np.ndarray:
        d = parts[-1]
        for part in reversed(parts[:-1]):
            d = d.mul_(base).add_(part)
        return np.asarray(acc.sub_(d).cpu().numpy())

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x.cpu().numpy())

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


class NativeBackend(TorchBackend):
    """torch on CPU for the one-shot products; the mining loop runs pouw.native's fused kernel
    (MiningSession checks isinstance), which never writes a per-chunk partial product."""

    def __init__(self, *, isa: int = -1) -> None:
        super().__init__("cpu")
        best = native.best_isa()
        self.isa = best if isa < 0 else min(isa, best)
        self.name = f"native-{native.ISA_NAMES.get(self.isa, str(self.isa))}+{self.name}"


def _self_test_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20261123)
    extremes = np.array([-128, 127, -1, 0, 1, -127], dtype=np.int8)
    cases = []
    for value_a, value_b in [(-128, -128), (-128, 127), (127, 127), (127, -128)]:
        cases.append((np.full((32, 1024), value_a, np.int8), np.full((1024, 32), value_b, np.int8)))
    for shape in [(32, 64, 32), (64, 2048, 64), (40, 1024, 40)]:
        m, k, n = shape
        cases.append((rng.choice(extremes, (m, k)), rng.choice(extremes, (k, n))))
        cases.append((rng.integers(-128, 128, (m, k), dtype=np.int8),
                      rng.integers(-128, 128, (k, n), dtype=np.int8)))
    return cases


@functools.cache
def int_mm_is_exact(device: str = "cpu") -> bool:
    """Start-up self-test: torch._int_mm equals the int64 reference on extreme inputs.

    oneDNN's s8s8 kernels are exact on CPUs with VNNI but can saturate elsewhere; any
    mismatch or error means we fall back to the float32 path.
    """
    try:
        for a, b in _self_test_cases():
            expected = a.astype(np.int64) @ b.astype(np.int64)
            got = torch._int_mm(torch.from_numpy(a).to(device), torch.from_numpy(b).to(device))
            if not np.array_equal(got.cpu().numpy().astype(np.int64), expected):
                return False
        return True
    except Exception:
        return False


def cuda_available() -> bool:
    """Whether torch sees a CUDA device."""
    return bool(torch.cuda.is_available())


def cupy_available() -> bool:
    """Whether cupy imports and sees a CUDA device."""
    try:
        import cupy  # optional (the gpu extra): imported lazily so pouw runs without it

        return bool(cupy.is_available())
    except Exception:
        return False


BACKEND_NAMES = ("auto", "native", "native-vnni", "native-portable", "numpy", "torch-cpu",
                 "torch-cpu-float32", "torch-cuda", "cupy")


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine."""
    names = ["numpy", "torch-cpu", "torch-cpu-float32"]
    if native.available():
        best = native.best_isa()
        names += ["native"] + (["native-vnni"] if best > 2 else []) + (
            ["native-portable"] if best > 0 else [])
    if cuda_available():
        names.append("torch-cuda")
    if cupy_available():
        names.append("cupy")
    return names


@functools.cache
def get_backend(name: str = "auto") -> Backend:
    """A backend by name; 'auto' takes a GPU where one exists, else the native fused kernel
    where it built, else torch on CPU."""
    if name == "auto":
        name = ("torch-cuda" if cuda_available() else "cupy" if cupy_available()
                else "native" if native.available() else "torch-cpu")
    if name in ("native", "native-vnni", "native-portable"):
        if not native.available():
            raise RuntimeError(f"backend {name}: the native kernel is not built")
        return NativeBackend(isa={"native": -1, "native-vnni": 2, "native-portable": 0}[name])
    if name == "numpy":
        return ArrayModuleBackend(np, "numpy-float32")
    if name == "torch-cpu":
        return TorchBackend("cpu")
    if name == "torch-cpu-float32":
        return TorchBackend("cpu", allow_int_mm=False)
    if name == "torch-cuda":
        if not cuda_available():
            raise RuntimeError("backend torch-cuda: no CUDA device")
        return TorchBackend("cuda")
    if name == "cupy":
        if not cupy_available():
            raise RuntimeError("backend cupy: cupy missing or no CUDA device")
        import cupy  # optional (the gpu extra): imported lazily so pouw runs without it

        return ArrayModuleBackend(cupy, "cupy-float32")
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")
