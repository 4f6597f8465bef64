"""BLS backends side by side: FastAggregateVerify and aggregation for 64, 256 and 1,024
validators (issue 14; docs/finality.md).

Every backend importable here runs in one process, rounds interleaved (the machine is
shared): `core.bls`'s py-ecc reference and blspy native backend, plus milagro-bls-binding
when installed (not a dependency: it lost the comparison, and is kept for the record).

* ``fav``: FastAggregateVerify of one signing root signed by all n validators, with the
  public keys already validated and cached (`BlsBackend.key_validate` at registration, as
  the chain does): n point additions and one pairing check;
* ``fav_cold``: the same from bytes, every key deserialised and subgroup-checked again (what
  a verifier without the cache pays; milagro has no cache, so its ``fav`` is this);
* ``aggregate``: the n signatures into one.

py-ecc takes about a second per operation at n = 64 and grows linearly with n for the key
work, so its rows are capped at ``--py-ecc-max`` validators (64 by default) with one repeat;
the rows above the cap are not measured (shown as skipped), never estimated.

Goal: ``fav`` <= 5 ms for 64 validators on the native backend.

Each cell is the median of ``--repeat`` calls with the fastest in brackets; the goal is
judged on the median.

    python bench/bls.py [--sizes 64,256,1024] [--repeat 15] [--py-ecc-max 64] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.bls import BACKEND, derive_secret
from core.bls_pyecc import available_backends
from core.encoding import tagged_hash

try:  # optional: measured when installed
    import milagro_bls_binding as milagro
except ImportError:  # pragma: no cover - depends on the environment
    milagro = None

GOAL_MS = 5.0
GOAL_SIZE = 64
MESSAGE = tagged_hash(b"pouw/benchbls", b"signing root")


def _secrets(n: int) -> list[int]:
    return [derive_secret(tagged_hash(b"pouw/benchbls", i.to_bytes(4, "big"))) for i in range(n)]


def _time_ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """The median and the fastest of ``repeat`` timed calls, in milliseconds (on a shared
    machine the fastest shows the cost, the median what a busy node sees)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def _operations(name: str, pubkeys: list[bytes], signatures: list[bytes],
                aggregate: bytes) -> dict[str, Callable[[], object]]:
    """The timed operations of one backend over one validator set."""
    if name == "milagro":
        assert milagro is not None
        return {
            "fav": lambda: _expect(milagro.FastAggregateVerify(pubkeys, MESSAGE, aggregate)),
            "fav_cold": lambda: _expect(milagro.FastAggregateVerify(pubkeys, MESSAGE, aggregate)),
            "aggregate": lambda: milagro.Aggregate(signatures),
        }
    backend = next(b for b in available_backends() if b.name == name)

    def cold() -> None:
        backend._points.clear()  # the cache's contents: a cold verifier has none
        _expect(backend.fast_aggregate_verify(pubkeys, MESSAGE, aggregate))

    for pubkey in pubkeys:  # registration: validated once, cached
        assert backend.key_validate(pubkey)
    return {
        "fav": lambda: _expect(backend.fast_aggregate_verify(pubkeys, MESSAGE, aggregate)),
        "fav_cold": cold,
        "aggregate": lambda: backend.aggregate(signatures),
    }


def _expect(verdict: object) -> None:
    if verdict is not True:
        raise AssertionError("a valid aggregate did not verify")


def run(sizes: Sequence[int], *, repeat: int, py_ecc_max: int) -> list[dict[str, Any]]:
    names = [b.name for b in available_backends()] + (["milagro"] if milagro else [])
    rows: list[dict[str, Any]] = []
    native = BACKEND if BACKEND.name != "py-ecc" else None
    for n in sizes:
        secrets = _secrets(n)
        signer = native or BACKEND  # the fastest at hand; the bytes are backend-independent
        pubkeys = [signer.secret_to_pubkey(s) for s in secrets]
        signatures = [signer.sign(s, MESSAGE) for s in secrets]
        aggregate = signer.aggregate(signatures)
        for name in names:
            row: dict[str, Any] = {"backend": name, "validators": n}
            if name == "py-ecc" and n > py_ecc_max:
                row.update(skipped=True)
                rows.append(row)
                continue
            ops = _operations(name, pubkeys, signatures, aggregate)
            reps = 1 if name == "py-ecc" else repeat
            for op, fn in ops.items():
                median, fastest = _time_ms(fn, reps)
                row[op], row[f"{op}_min"] = round(median, 3), round(fastest, 3)
            row["repeat"] = reps
            rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Median (fastest) milliseconds per operation."""
    print(f"{'backend':<10} {'n':>6} {'fav ms':>20} {'fav cold ms':>20} {'aggregate ms':>20}")
    for r in rows:
        if r.get("skipped"):
            note = "(not measured: above --py-ecc-max)"
            print(f"{r['backend']:<10} {r['validators']:>6} {note:>40}")
            continue
        cells = [f"{r[op]:.3f} ({r[op + '_min']:.3f})" for op in ("fav", "fav_cold", "aggregate")]
        print(f"{r['backend']:<10} {r['validators']:>6} " + " ".join(f"{c:>20}" for c in cells))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,256,1024",
                        help="validator counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=15,
                        help="timed calls per op and native backend (py-ecc: one)")
    parser.add_argument("--py-ecc-max", type=int, default=GOAL_SIZE,
                        help="largest validator count measured on py-ecc (it is slow)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()[0]
    rows = run(sizes, repeat=args.repeat, py_ecc_max=args.py_ecc_max)
    native = next((r for r in rows if r["backend"] == BACKEND.name
                   and r["validators"] == GOAL_SIZE and not r.get("skipped")), None)
    goal_met = (native is not None and BACKEND.name != "py-ecc"
                and native["fav"] <= GOAL_MS)
    print_table(rows)
    print(f"consensus backend: {BACKEND.name}; goal fav({GOAL_SIZE}) <= {GOAL_MS} ms: "
          f"{'met' if goal_met else 'not met' if native else 'not measured'}")
    result = {"backend": BACKEND.name, "rows": rows, "goal_ms": GOAL_MS,
              "goal_validators": GOAL_SIZE, "goal_met": goal_met,
              "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
