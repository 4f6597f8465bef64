"""The torch backends (torch-cpu, torch-cpu-float32, torch-cuda) and the int8 GEMM self-test.

torch is an optional heavy dependency (1 s to import on a quiet machine, 5-7 s under load):
only this module imports it, and pouw.backends imports this module only when a torch backend
is selected, so a node mining on the native kernel or numpy never loads it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pouw.backends import chunked_float_product, fold_halves


class TorchBackend:
    """torch on CPU or CUDA; int8 GEMM via torch._int_mm when proven exact here."""

    def __init__(self, device: str = "cpu", *, allow_int_mm: bool = True) -> None:
        self.device = torch.device(device)
        self.int_mm = allow_int_mm and int_mm_usable(device)
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
        return chunked_float_product(torch.matmul, lambda x: x.to(torch.int32), a, b)

    def fold(self, acc: Any) -> np.ndarray:
        """Tile XOR folds; int64 views XOR column pairs at once (half the vector ops)."""
        rows, cols = acc.shape
        x = acc.view(torch.int64).view(rows // 8, 8, cols // 2)
        y = torch.bitwise_xor(x[:, 0:4], x[:, 4:8])
        torch.bitwise_xor(y[:, 0:2], y[:, 2:4], out=y[:, 0:2])
        y = torch.bitwise_xor(y[:, 0], y[:, 1]).view(rows // 8, cols // 4, 2)
        return fold_halves(torch.bitwise_xor(y[..., 0], y[..., 1]).cpu().numpy())

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

    def set_threads(self, threads: int) -> None:
        """torch's intra-op threads for the calling thread (OpenMP builds: per thread)."""
        torch.set_num_threads(max(1, threads))


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


#: CPU flags of an int8 dot-product instruction (x86 VNNI or AMX, Arm's dot product). Without
#: one, oneDNN's s8s8 GEMM is a reference loop: measured on a Zen 2 (AVX2), 15x slower than
#: exact float32 GEMM at 16x576x1536 and 50x at 64x576x49152.
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


def cpu_has_int8_dot(cpuinfo: str | None = None) -> bool:
    """Whether this CPU reports an int8 dot-product instruction (`/proc/cpuinfo` flags; True
    where there is no such file to read: oneDNN is trusted there)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return True
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return bool(INT8_DOT_FLAGS & set(line.partition(":")[2].split()))
    return True


@functools.cache
def int_mm_usable(device: str = "cpu") -> bool:
    """torch._int_mm is exact here (`int_mm_is_exact`) and, on CPU, fast: the CPU has an int8
    dot-product instruction (`cpu_has_int8_dot`). Else the exact float32 path is used."""
    fast = device != "cpu" or cpu_has_int8_dot()
    return fast and int_mm_is_exact(device)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device."""
    return bool(torch.cuda.is_available())


def make_backend(name: str) -> TorchBackend:
    """The torch backend called ``name`` (one of pouw.backends.TORCH_BACKEND_NAMES)."""
    if name == "torch-cpu":
        return TorchBackend("cpu")
    if name == "torch-cpu-float32":
        return TorchBackend("cpu", allow_int_mm=False)
    if name == "torch-cuda":
        if not cuda_available():
            raise RuntimeError("backend torch-cuda: no CUDA device")
        return TorchBackend("cuda")
    raise ValueError(f"not a torch backend: {name!r}")
