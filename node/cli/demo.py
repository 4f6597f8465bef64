"""``pouwchain demo``: mine a stream of matmul jobs in one process, print tickets and overhead."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from node.cli.common import bounded_int
from pouw import MAX_TARGET, MiningSession, WinningTicket, get_backend, verify_certificate
from pouw.backends import BACKEND_NAMES
from pouw.hashing import tagged_hash
from pouw.params import VALUE_MAX, VALUE_MIN


def _operand(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return rng.integers(VALUE_MIN, VALUE_MAX + 1, (rows, cols), dtype=np.int8)


def _demo(args: argparse.Namespace) -> int:
    """Mine a stream of matmul jobs, print winning tickets and the measured overhead."""
    backend = get_backend(args.backend)
    m, k, n = args.shape
    rng = np.random.default_rng(args.seed)
    tip = tagged_hash(b"pouw.demo", b"genesis")
    # A target at which a job of this shape wins about `wins_per_job` times on average.
    session = MiningSession(commitment=tip, target=0, backend=backend, r=args.r, max_wins=1)
    probe = session.mine(_operand(rng, m, k), _operand(rng, k, n))
    params = probe.params
    target = min(MAX_TARGET, int(MAX_TARGET // (params.tickets * params.ticket_weight)
                                 * args.wins_per_job))
    height = 0

    def on_ticket(win: WinningTicket) -> None:
        nonlocal tip, height
        cert = win.certificate
        started = time.perf_counter()
        verify_certificate(cert, commitment=cert.commitment, target=cert.target)
        verify_ms = (time.perf_counter() - started) * 1e3
        height += 1
        print(f"  ticket  height={height} tile=({cert.tile_row},{cert.tile_col}) "
              f"chunk={cert.chunk} value=0x{win.value:064x}"[:110] + "…", flush=True)
        print(f"          certificate {len(cert.encode())} B, verified in {verify_ms:.2f} ms",
              flush=True)
        tip = tagged_hash(b"pouw.demo", tip, cert.encode())
        session.set_commitment(tip)

    session.set_commitment(tip, target=target)
    session.on_ticket = on_ticket
    print(f"pouwchain demo: backend {backend.name}, jobs {m}x{k}x{n}, r={params.r}, "
          f"{params.tickets} tickets per job, target≈2^{target.bit_length()}")
    print(f"{'job':>4} {'plain ms':>9} {'mined ms':>9} {'overhead':>8} {'tickets/s':>10} "
          f"{'wins':>4} exact")
    dev_plain = 0.0
    job = 0
    try:
        while args.jobs == 0 or job < args.jobs:
            job += 1
            a = _operand(rng, m, k)
            b = _operand(rng, k, n)
            started = time.perf_counter()
            plain = backend.to_numpy(backend.product(backend.put(a), backend.put(b)))
            dev_plain = time.perf_counter() - started
            result = session.mine(a, b)
            mined = sum(result.timings[p] for p in ("noise", "product", "tickets", "denoise"))
            exact = np.array_equal(result.product, plain)
            print(f"{job:>4} {dev_plain * 1e3:>9.1f} {mined * 1e3:>9.1f} "
                  f"{mined / dev_plain:>8.2f} {result.tickets_evaluated / mined:>10.3g} "
                  f"{len(result.wins):>4} {'yes' if exact else 'NO'}", flush=True)
            if not exact:
                return 1
    except KeyboardInterrupt:
        print("\nstopped")
    return 0


def _demo_guarded(args: argparse.Namespace) -> int:
    """`_demo`, a shape or backend pouw refuses as one line (exit 2)."""
    try:
        return _demo(args)
    except (ValueError, RuntimeError) as exc:  # ParamsError is a ValueError
        print(f"pouwchain demo: {exc}", file=sys.stderr)
        return 2


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pouwchain demo``."""
    demo = subparsers.add_parser("demo", help="single-process mining demo on matmul jobs")
    demo.add_argument("--shape", type=bounded_int(1, 1 << 16), nargs=3,
                      default=(1024, 2048, 1024), metavar=("M", "K", "N"),
                      help="job shape: A is MxK, B is KxN (default: 1024 2048 1024)")
    demo.add_argument("--r", type=bounded_int(1, 1 << 16), default=None,
                      help="chunk size / noise rank (default: the shape's own, from pouw)")
    demo.add_argument("--jobs", type=bounded_int(0, 1 << 31), default=20,
                      help="jobs to mine (default: 20; 0 = until Ctrl-C)")
    demo.add_argument("--wins-per-job", type=_positive_float, default=0.5,
                      help="expected winning tickets per job, sets the target (default: 0.5)")
    demo.add_argument("--backend", choices=BACKEND_NAMES, default="auto",
                      help="pouw backend (default: auto: a GPU if any, else torch-cpu)")
    demo.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=1,
                      help="seed of the random operands (default: 1)")
    demo.set_defaults(func=_demo_guarded)
