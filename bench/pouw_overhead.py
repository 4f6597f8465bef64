"""Mining overhead of the PoUW scheme against the fastest exact plain product.

Per shape, in one run and alternating on the same operands: the fastest exact plain product
(oneDNN's int8 GEMM, torch._int_mm, monolithic or in row panels, or float32 GEMM where that is
exact and faster: CPUs without VNNI), mining with the fused native kernel (backend `native`,
where it built; `native-avx2` too on AVX-512 machines) and mining with the old chunked path
(`torch-cpu`: one _int_mm per chunk, a fold pass, numpy states). The machine is shared and
noisy, so only ratios are meaningful. Mining time covers noise, product, tickets and denoising;
the Merkle commitment is reported on its own (a miner serving inference hashes fixed weights
once). Also: each path's phase split, the kernel alone with and without its in-register
denoising, the verification time of a certificate at the first and at the last chunk, and its
size.

    python bench/pouw_overhead.py [--backends native torch-cpu] [--shapes 2048x2048x2048 ...]
                                  [--r 64] [--sweep 32 64 128] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

from pouw import Certificate, MiningSession, PouwParams, get_backend, native, verify_certificate
from pouw.backends import Backend, available_backends
from pouw.hashing import derive_seed
from pouw.merkle import block_path, matrix_root
from pouw.mining import PANEL_BYTES, operand_roots, transpose_int8
from pouw.noise import (
    denoise_limbs,
    denoise_operands,
    noise_factors,
    noisy_left,
    noisy_right,
)
from pouw.params import K_MAX, MAX_CHUNKS, MAX_TARGET, MN_MAX, R_MAX, TILE_H, TILE_W, default_r
from pouw.tickets import initial_states
from pouw.torch_backend import int_mm_usable

DEFAULT_SHAPES = ["1024x1024x1024", "2048x2048x2048", "4096x4096x4096", "2048x4096x4096"]
COMMITMENT = bytes(range(32))


def plain_product_seconds(int8_dev: Backend | None, float_dev: Backend, a: np.ndarray,
                          b: np.ndarray) -> tuple[float, str]:
    """The fastest exact plain product of A·B here, and which one it was: oneDNN's int8
    GEMM (torch._int_mm, monolithic or in row panels), float32 GEMM in inner chunks of 1024
    (exact for any int8 entries), or one float32 GEMM (exact for the int7 operands of
    docs/pouw.md §1 while k·64·64 ≤ 2^24, i.e. k ≤ 4096). Conversions count. ``int8_dev`` is
    None where oneDNN's int8 GEMM is not usable (no int8 dot-product instruction)."""
    (m, k), n = a.shape, b.shape[1]
    times: dict[str, float] = {}

    def timed(kind: str, run: Any) -> None:
        t = time.perf_counter()
        run()
        times[kind] = time.perf_counter() - t

    if int8_dev is not None:
        a_dev, b_dev = int8_dev.put(a), int8_dev.put(b)
        timed("int8 GEMM", lambda: int8_dev.to_numpy(int8_dev.product(a_dev, b_dev)))
    panel = max(8, min(m, PANEL_BYTES // (4 * n)) // 8 * 8)
    if int8_dev is not None and panel < m:
        out = np.empty((m, n), dtype=np.int32)

        def panels() -> None:
            for p0 in range(0, m, panel):
                out[p0:p0 + panel] = int8_dev.to_numpy(int8_dev.product(a_dev[p0:p0 + panel],
                                                                        b_dev))
        timed("int8 GEMM in row panels", panels)
    timed("float32 GEMM, 1024-deep chunks", lambda: float_dev.to_numpy(
        float_dev.product(float_dev.put(a), float_dev.put(b))))
    if k * 64 * 64 <= 2**24:
        timed("float32 GEMM, one call (int7)", lambda: np.matmul(
            a.astype(np.float32), b.astype(np.float32)).astype(np.int32))
    kind = min(times, key=lambda name: times[name])
    return times[kind], kind


PHASES = ("commit", "noise", "product", "tickets", "denoise")


def certificate_at(a: np.ndarray, b: np.ndarray, params: PouwParams, chunk: int) -> bytes:
    """An encoded certificate for tile (0, 0) at ``chunk`` with full-shape Merkle paths, at
    the easiest target (every ticket wins), so verification runs every check to the end."""
    bt = transpose_int8(b)
    root_a, levels_a = matrix_root(a)
    root_b, levels_b = matrix_root(bt)
    return Certificate(
        params=params, commitment=COMMITMENT, root_a=root_a, root_b=root_b, target=MAX_TARGET,
        tile_row=0, tile_col=0, chunk=chunk, rows_a=a[:TILE_H].tobytes(),
        cols_b=bt[:TILE_W].tobytes(),
        path_a=tuple(block_path(levels_a, block=0, block_size=TILE_H)),
        path_b=tuple(block_path(levels_b, block=0, block_size=TILE_W)),
    ).encode()


def verify_ms(encoded: bytes, repeats: int = 15) -> tuple[float, float]:
    """(wall, CPU) milliseconds to decode and verify, medians: the CPU time is what a flood
    of certificates costs a node; the wall time also counts waiting on this shared machine."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.thread_time()
        verify_certificate(Certificate.decode(encoded), commitment=COMMITMENT, target=MAX_TARGET)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - t)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def worst_case_verification(mn: int = MN_MAX) -> dict[str, Any]:
    """The most a verifier replays, at the last chunk of k = K_MAX: with the most chunks
    (r = K_MAX / MAX_CHUNKS: the longest state chain) and with the widest (r = R_MAX: the
    largest E_L and F_R blocks and noisy rows), on an mn×mn job (MN_MAX: the longest Merkle
    paths). Only the opened tile's rows and columns are random; the rest are zeros, which
    cost the roots' hashing the same."""
    rng = np.random.default_rng(11)
    a = np.zeros((mn, K_MAX), np.int8)
    b = np.zeros((K_MAX, mn), np.int8)
    a[:TILE_H] = rng.integers(-64, 64, (TILE_H, K_MAX), dtype=np.int8)
    b[:, :TILE_W] = rng.integers(-64, 64, (K_MAX, TILE_W), dtype=np.int8)
    cases = []
    for r in (K_MAX // MAX_CHUNKS, R_MAX):
        params = PouwParams(m=mn, k=K_MAX, n=mn, r=r)
        first = verify_ms(certificate_at(a, b, params, 0))
        last_cert = certificate_at(a, b, params, params.chunks - 1)
        last = verify_ms(last_cert)
        cases.append({"r": r, "chunks": params.chunks, "first_chunk_ms": first[0],
                      "first_chunk_cpu_ms": first[1], "last_chunk_ms": last[0],
                      "last_chunk_cpu_ms": last[1], "certificate_bytes": len(last_cert)})
    worst = max(cases, key=lambda case: case["last_chunk_cpu_ms"])
    return {"m": mn, "n": mn, "k": K_MAX, **worst, "cases": cases}


def kernel_split(a: np.ndarray, b: np.ndarray, params: PouwParams,
                 repeats: int) -> dict[str, float]:
    """The fused kernel alone over the whole product in one call: chunk products + folds +
    states, and the same with the in-register denoising; and the noise phase's two C passes
    (ms, medians over as many repeats as the mining paths, so the figures compare)."""
    seed = derive_seed(commitment=COMMITMENT, params_bytes=params.to_bytes(), root_a=bytes(32),
                       root_b=bytes(32))
    f = noise_factors(seed, params)
    a_noisy, b_noisy = noisy_left(a, f), noisy_right(b, f)
    dev = get_backend("torch-cpu")
    y = dev.to_numpy(dev.product(dev.put(a_noisy), dev.put(np.zeros((params.k, params.r),
                                                                      np.int8))))
    lefts, rights = denoise_operands(y, np.zeros((params.r, params.n), np.int32), f, k=params.k)
    packed, biased = native.pack_right(b_noisy, params.r), native.biased_left(a_noisy)
    denoise = native.pack_denoise(lefts, rights)
    out: dict[str, float] = {}
    for name, dn in (("fused_product_folds_ms", None), ("fused_with_denoise_ms", denoise)):
        times = []
        for _ in range(repeats):
            states = initial_states(1, np.arange(params.tile_rows)[:, None],
                                    np.arange(params.tile_cols)[None, :])
            t = time.perf_counter()
            native.fused_panel(biased, packed, row_tile0=0, states=states, limit=0,
                               max_candidates=1024, denoise=dn)
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times) * 1e3
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        native.noisy_operands(a, b, f)
        times.append(time.perf_counter() - t)
    out["noisy_operands_ms"] = statistics.median(times) * 1e3
    return out


def measure(shape: str, *, backends: list[str], r: int | None, repeats: int,
            int8_competes: bool) -> dict[str, Any]:
    m, k, n = (int(x) for x in shape.split("x"))
    rng = np.random.default_rng(7)
    a = rng.integers(-64, 64, (m, k), dtype=np.int8)
    b = rng.integers(-64, 64, (k, n), dtype=np.int8)
    float_dev = get_backend("torch-cpu-float32")
    int8_dev = get_backend("torch-cpu") if int8_competes else None
    sessions = {name: MiningSession(commitment=COMMITMENT, target=1, backend=name, r=r,
                                    max_wins=1) for name in backends}
    plain: list[float] = []
    plain_kinds: list[str] = []
    mining: dict[str, list[float]] = {name: [] for name in backends}
    ratios: dict[str, list[float]] = {name: [] for name in backends}
    commit: dict[str, list[float]] = {name: [] for name in backends}
    phases: dict[str, list[dict[str, float]]] = {name: [] for name in backends}
    names: dict[str, str] = {}
    for _ in range(repeats):
        for name, session in sessions.items():
            p, plain_kind = plain_product_seconds(int8_dev, float_dev, a, b)
            plain.append(p)
            plain_kinds.append(plain_kind)
            result = session.mine(a, b)
            names[name] = result.backend
            mine_s = sum(result.timings[ph] for ph in PHASES if ph != "commit")
            mining[name].append(mine_s)
            ratios[name].append(mine_s / p)
            commit[name].append(result.timings["commit"])
            phases[name].append(result.timings)
            exact = a[:64].astype(np.int64) @ b.astype(np.int64)
            if not np.array_equal(result.product[:64], exact):
                raise SystemExit(f"{shape}: product mined by {name} is not exact")
    params = PouwParams(m=m, k=k, n=n, r=r or default_r(k))
    first = verify_ms(certificate_at(a, b, params, 0))
    last_cert = certificate_at(a, b, params, params.chunks - 1)
    last = verify_ms(last_cert)
    row: dict[str, Any] = {
        "shape": shape, "r": params.r, "chunks": params.chunks,
        # what honest mining of a client's job multiplies beyond junk mining (docs/pouw.md §8):
        # the denoising, 2·L·r/k of the product; the old path also runs Y and Z as products
        "margin_macs": 2 * denoise_limbs(k, params.r) * params.r / k,
        "margin_macs_old_path": params.r / n + params.r / m
        + 2 * denoise_limbs(k, params.r) * params.r / k,
        "plain_ms": statistics.median(plain) * 1e3,
        "plain_kind": max(set(plain_kinds), key=plain_kinds.count),
        "verify_first_chunk_ms": first[0], "verify_first_chunk_cpu_ms": first[1],
        "verify_last_chunk_ms": last[0], "verify_last_chunk_cpu_ms": last[1],
        "certificate_bytes": len(last_cert),
        "paths": {},
    }
    for name in backends:
        mid = sorted(range(repeats), key=lambda i: mining[name][i])[repeats // 2]
        row["paths"][name] = {
            "backend": names[name],
            "mining_ms": statistics.median(mining[name]) * 1e3,
            "overhead": statistics.median(ratios[name]),
            "overhead_with_commit": statistics.median(
                [(mi + c) / mi * ra for mi, c, ra in zip(mining[name], commit[name], ratios[name],
                                                           strict=True)]),
            "phases_ms": {ph: phases[name][mid][ph] * 1e3 for ph in PHASES},
        }
    if native.available():
        row["kernel"] = kernel_split(a, b, params, repeats)
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    paths = ("native", "native-vnni", "native-avx2", "torch-cpu")
    default_backends = [b for b in paths if b in available_backends()]
    parser.add_argument("--backends", nargs="*", default=default_backends,
                        help="mining paths to compare (default: native, native-vnni, native-avx2, "
                        "torch-cpu where each runs)")
    parser.add_argument("--shapes", nargs="*", default=DEFAULT_SHAPES)
    parser.add_argument("--r", type=int, default=None, help="chunk size / noise rank")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", type=int, nargs="*", default=None, metavar="R",
                        help="measure each shape at each of these chunk sizes")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--worst-mn", type=int, default=MN_MAX,
                        help="m = n of the worst-case verification's job (Merkle path length)")
    args = parser.parse_args(argv)
    operand_roots(np.zeros((8, 16), np.int8), np.zeros((16, 4), np.int8))  # warm imports
    chunk_sizes = args.sweep or [args.r]
    # without an int8 dot-product instruction oneDNN's int8 GEMM is a slow reference loop
    # (2048³ on a Zen 2: 10.4 s against 0.37 s for float32) and torch-cpu runs float32 instead
    int8_competes = int_mm_usable("cpu")
    rows = [measure(s, backends=args.backends, r=r, repeats=args.repeats,
                    int8_competes=int8_competes) for s in args.shapes for r in chunk_sizes]
    load = os.getloadavg()
    print(f"native kernel: {native_description()}; load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f}")
    print("plain: the fastest exact product per repeat"
          + ("" if int8_competes else " (oneDNN's int8 GEMM left out: this CPU has no int8 "
             "dot-product instruction, and it is 15-50x slower than float32 here)")
          + "; most often: "
          + ", ".join(sorted({f"{row['shape']} {row['plain_kind']}" for row in rows})))
    print(f"{'shape':>16} {'r':>5} {'margin':>7} {'path':>34} {'plain ms':>9} {'mine ms':>9} "
          f"{'overhead':>8} {'+commit':>8}  phases ms")
    for row in rows:
        for path in row["paths"].values():
            ph = " ".join(f"{k}={v:.0f}" for k, v in path["phases_ms"].items())
            print(f"{row['shape']:>16} {row['r']:>5} {row['margin_macs']:>7.3f} "
                  f"{path['backend']:>34} {row['plain_ms']:>9.1f} {path['mining_ms']:>9.1f} "
                  f"{path['overhead']:>8.3f} {path['overhead_with_commit']:>8.3f}  {ph}")
        kernel = " ".join(f"{k}={v:.0f}" for k, v in row.get("kernel", {}).items())
        print(f"{'':>16} verify first chunk {row['verify_first_chunk_ms']:.2f} ms "
              f"(CPU {row['verify_first_chunk_cpu_ms']:.2f}), last chunk ({row['chunks'] - 1}) "
              f"{row['verify_last_chunk_ms']:.2f} ms (CPU {row['verify_last_chunk_cpu_ms']:.2f}); "
              f"certificate "
              f"{row['certificate_bytes']} B; kernel alone: {kernel or 'not built'}")
    worst = worst_case_verification(args.worst_mn)
    for case in worst["cases"]:
        print(f"worst-case verification (m=n={worst['m']}, k={worst['k']}, r={case['r']}): "
              f"first chunk {case['first_chunk_ms']:.2f} ms (CPU "
              f"{case['first_chunk_cpu_ms']:.2f}), last chunk ({case['chunks'] - 1}) "
              f"{case['last_chunk_ms']:.2f} ms (CPU {case['last_chunk_cpu_ms']:.2f}); "
              f"certificate {case['certificate_bytes']} B")
    key = (lambda row: f"{row['shape']}/r{row['r']}") if args.sweep else (
        lambda row: row["shape"])
    result = {"native": native_description(), "worst_case_verification": worst,
              "int8_gemm_in_plain_race": int8_competes, "load_average": load,
              "shapes": {key(row): row for row in rows}}
    if args.json:
        print(json.dumps(result))
    sys.stdout.flush()
    return result


def native_description() -> str:
    if not native.available():
        return "not built"
    return f"{native.ISA_NAMES[native.best_isa()]}, {native.threads()} OpenMP threads"


if __name__ == "__main__":
    main()
