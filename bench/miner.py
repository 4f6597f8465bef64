"""Miner benchmark: mining rate and useful-work share of a real in-process node.

Each scenario starts a mining `Node` on a fresh data directory whose genesis target nobody
meets (so the rate is pure mining, not block handling), lets it mine for a while and reads
``miner.stats()``: rounds (products) per second, tickets of the mined products per second of
mining, multiply-accumulates per second, and the useful share (client-job MACs over all
MACs). The "jobs" scenario queues client jobs first (signed, escrowed requests through the
job service), so the miner mines them before self-generated work.

Usage: ``python bench/miner.py [--seconds 5] [--jobs 8] [--json]``. Figures depend on the
machine's load: the node shares the CPU with everything else running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.genesis import DEV_ACCOUNTS, DEV_BALANCE, dev_seed
from consensus.tx import public_key, sign_transaction
from node.builder import build_node
from node.config import NodeConfig
from node.mining.jobs import job_request, prepare_operands


def hard_genesis(path: Path) -> Path:
    """A dev-like genesis whose target no ticket meets (initial_target = 1, no escape)."""
    raw = {"chain_id": 1337, "timestamp": int(time.time()) - 5, "target_block_time": 10,
           "initial_target": 1, "unbonding_delay": 5,
           "balances": {public_key(dev_seed(i)).hex(): DEV_BALANCE for i in range(DEV_ACCOUNTS)}}
    path.write_text(json.dumps(raw))
    return path


async def scenario(name: str, shape: tuple[int, int, int, int], seconds: float, *,
                   jobs: int = 0, job_shape: tuple[int, int, int] = (1024, 4096, 1024)
                   ) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="pouw-bench-miner-"))
    config = NodeConfig(datadir=base / "node", port=0, mine=True, discover=False,
                        log_json=False, log_level="warning", mining_shape=shape,
                        genesis_path=hard_genesis(base / "genesis.json"))
    node = build_node(config)
    jobs_service, miner = node.jobs, node.miner
    assert jobs_service is not None and miner is not None  # config.mine builds both
    await node.start()
    try:
        for i in range(jobs):
            m, k, n = job_shape
            rng = np.random.default_rng(i)
            a = rng.integers(-64, 64, (m, k), dtype=np.int8)
            b = rng.integers(-64, 64, (k, n), dtype=np.int8)
            ops = prepare_operands(a, b)
            tx = sign_transaction(dev_seed(1), chain_id=node.chain.params.chain_id, nonce=i,
                                  fee=10, payload=job_request(ops, assignee=node.node_id,
                                                              escrow=100, salt=bytes([i]) * 32))
            await jobs_service.submit(a, b, tx)
        while miner.stats()["rounds"] < 1:  # the first round loads the backend
            await asyncio.sleep(0.05)
        rounds0 = miner.stats()["rounds"]
        await asyncio.sleep(seconds)
        stats = miner.stats()
    finally:
        await node.stop()
    total = stats["useful_macs"] + stats["nonuseful_macs"]
    return {"scenario": name, "shape": list(shape), "seconds": seconds,
            "rounds_per_s": round((stats["rounds"] - rounds0) / seconds, 1),
            "tickets_per_s": stats["tickets_per_s"], "gmacs_per_s": round(
                stats["macs_per_s"] / 1e9, 2), "jobs_done": stats["jobs_done"],
            "useful_share": round(stats["useful_macs"] / total, 3) if total else 0.0,
            "backend": stats["backend"]}


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [
        await scenario("dev shape", (64, 256, 64, 32), args.seconds),
        await scenario("large shape", (1024, 4096, 1024, 256), args.seconds),
        await scenario(f"{args.jobs} client jobs", (64, 256, 64, 32), args.seconds,
                       jobs=args.jobs),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=8, help="1024x4096x1024 client jobs")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    print(f"{'scenario':<16} {'shape':<22} {'rounds/s':>9} {'tickets/s':>11} {'GMAC/s':>7} "
          f"{'jobs':>4} {'useful':>6}  backend")
    for r in rows:
        print(f"{r['scenario']:<16} {'x'.join(map(str, r['shape'])):<22} {r['rounds_per_s']:>9} "
              f"{r['tickets_per_s']:>11.0f} {r['gmacs_per_s']:>7} {r['jobs_done']:>4} "
              f"{r['useful_share']:>6}  {r['backend']}")
    if args.json:
        print(json.dumps({"miner": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
