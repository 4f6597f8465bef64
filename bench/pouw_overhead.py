"""Mining overhead of the PoUW scheme against the fastest exact plain product.

Both are measured side by side in one run, alternating, on the same operands and the same
backend (the machine is shared and noisy, so only ratios are meaningful). Mining time covers
noise, the chunked product, tickets and denoising; the Merkle commitment to the operands is
reported on its own (a miner serving inference hashes fixed weights once).

    python bench/pouw_overhead.py [--backend torch-cpu] [--shapes 2048x2048x2048 ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from pouw import Certificate, MiningSession, get_backend, verify_certificate
from pouw.backends import Backend
from pouw.mining import PANEL_BYTES, operand_roots
from pouw.params import MAX_TARGET

DEFAULT_SHAPES = ["1024x1024x1024", "2048x2048x2048", "4096x4096x4096", "2048x4096x4096"]
COMMITMENT = bytes(range(32))


def plain_product_seconds(dev: Backend, a: Any, b: Any, m: int, n: int) -> float:
    """Fastest of: one monolithic GEMM, or the same GEMM in row panels."""
    best = float("inf")
    t = time.perf_counter()
    dev.to_numpy(dev.product(a, b))
    best = min(best, time.perf_counter() - t)
    panel = max(8, min(m, PANEL_BYTES // (4 * n)) // 8 * 8)
    if panel < m:
        out = np.empty((m, n), dtype=np.int32)
        t = time.perf_counter()
        for p0 in range(0, m, panel):
            out[p0:p0 + panel] = dev.to_numpy(dev.product(a[p0:p0 + panel], b))
        best = min(best, time.perf_counter() - t)
    return best


def measure(shape: str, *, backend: str, r: int | None, repeats: int) -> dict[str, Any]:
    m, k, n = (int(x) for x in shape.split("x"))
    rng = np.random.default_rng(7)
    a = rng.integers(-64, 64, (m, k), dtype=np.int8)
    b = rng.integers(-64, 64, (k, n), dtype=np.int8)
    dev = get_backend(backend)
    a_dev, b_dev = dev.put(a), dev.put(b)
    session = MiningSession(commitment=COMMITMENT, target=1, backend=dev, r=r, max_wins=1)
    plain, mining, commit, phases = [], [], [], []
    result = None
    for _ in range(repeats):
        plain.append(plain_product_seconds(dev, a_dev, b_dev, m, n))
        result = session.mine(a, b)
        mine_s = sum(result.timings[p] for p in ("noise", "product", "tickets", "denoise"))
        mining.append(mine_s)
        commit.append(result.timings["commit"])
        phases.append(result.timings)
    assert result is not None
    reference = (a[:64].astype(np.int64) @ b.astype(np.int64))
    if not np.array_equal(result.product[:64], reference):
        raise SystemExit(f"{shape}: mined product is not exact")
    # A certificate with full-shape Merkle paths: mine the job again at an easy target.
    easy = MiningSession(commitment=COMMITMENT, target=MAX_TARGET, backend=dev,
                         r=result.params.r, max_wins=1)
    full_cert = easy.mine(a, b).certificates[0]
    encoded = full_cert.encode()
    verify_times = []
    for _ in range(5):
        t = time.perf_counter()
        verify_certificate(Certificate.decode(encoded), commitment=COMMITMENT, target=MAX_TARGET)
        verify_times.append(time.perf_counter() - t)
    ratio = [mi / pl for mi, pl in zip(mining, plain, strict=True)]
    ratio_commit = [(mi + c) / pl for mi, c, pl in zip(mining, commit, plain, strict=True)]
    mid = len(phases) // 2
    return {
        "shape": shape,
        "r": result.params.r,
        "backend": result.backend,
        "plain_ms": statistics.median(plain) * 1e3,
        "mining_ms": statistics.median(mining) * 1e3,
        "overhead": statistics.median(ratio),
        "overhead_with_commit": statistics.median(ratio_commit),
        "phases_ms": {p: phases[mid][p] * 1e3 for p in ("commit", "noise", "product",
                                                       "tickets", "denoise")},
        "verify_ms": min(verify_times) * 1e3,
        "certificate_bytes": len(encoded),
        "tickets_per_s": result.tickets_evaluated / statistics.median(mining),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--shapes", nargs="*", default=DEFAULT_SHAPES)
    parser.add_argument("--r", type=int, default=None, help="chunk size / noise rank")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", type=int, nargs="*", default=None, metavar="R",
                        help="measure each shape at each of these chunk sizes")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    operand_roots(np.zeros((8, 16), np.int8), np.zeros((16, 4), np.int8))  # warm imports
    chunk_sizes = args.sweep or [args.r]
    rows = [measure(s, backend=args.backend, r=r, repeats=args.repeats)
            for s in args.shapes for r in chunk_sizes]
    header = (f"{'shape':>16} {'r':>5} {'plain ms':>9} {'mine ms':>9} {'overhead':>8} "
              f"{'+commit':>8} {'verify ms':>9} {'cert B':>8} {'tickets/s':>10}  phases ms")
    print(f"backend: {rows[0]['backend']}")
    print(header)
    for row in rows:
        ph = " ".join(f"{k}={v:.0f}" for k, v in row["phases_ms"].items())
        print(f"{row['shape']:>16} {row['r']:>5} {row['plain_ms']:>9.1f} {row['mining_ms']:>9.1f} "
              f"{row['overhead']:>8.3f} {row['overhead_with_commit']:>8.3f} "
              f"{row['verify_ms']:>9.2f} {row['certificate_bytes']:>8} "
              f"{row['tickets_per_s']:>10.3g}  {ph}")
    if args.json:
        key = (lambda row: f"{row['shape']}/r{row['r']}") if args.sweep else (
            lambda row: row["shape"])
        print(json.dumps({"backend": rows[0]["backend"],
                          "shapes": {key(row): row for row in rows}}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
