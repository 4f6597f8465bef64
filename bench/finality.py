"""Finality benchmark: time and blocks from a checkpoint to its finalization, on a local
network of validator node processes.

N validator nodes (equal bonded stake in a fresh genesis; each registers its own BLS key,
``validator.key``) in a full mesh; node 0 also mines continuously, paced to one block per
``--block-interval`` seconds (the dev chain's pacing, as `make run`). The bench polls node 0's
API: for each checkpoint (the block at height ``e * E``) it notes when node 0 first had it and
when node 0's finalized height first reached it; the blocks are node 0's height then minus
the checkpoint's. With the direct-child rule (docs/finality.md §5) a checkpoint is finalized
once the next one is justified: about ``E + 2`` blocks when every vote arrives in time.

Usage: ``python bench/finality.py [--validators 4] [--epoch-blocks 4] [--block-interval 3]
[--checkpoints 3] [--json]``. Prints a table, then with ``--json`` one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* helpers

from consensus.genesis import dev_seed
from consensus.tx import public_key
from core.bls import BACKEND
from node.finality.keys import write_raw_key
from testnet.genesis import write_genesis
from tests.framework.nodes import FUNDED, TestNetwork, TestNode
from tests.framework.util import wait_until

STAKE = 10**6
POLL_S = 0.1


def finality(node: TestNode) -> dict[str, Any]:
    result: dict[str, Any] = node.api("GET", "/api/v1/finality", auth=False, timeout=10.0)
    return result


def start(basedir: Path, *, validators: int, epoch_blocks: int,
          block_interval: float) -> tuple[TestNetwork, list[TestNode]]:
    """The network: validators with stake and keys, node 0 mining, fully meshed."""
    net = TestNetwork(basedir)
    seeds = [dev_seed(i) for i in range(max(FUNDED, validators))]
    write_genesis(net.genesis, seeds, finality_epoch_blocks=epoch_blocks,
                  stakes={public_key(s).hex(): STAKE for s in seeds[:validators]})
    nodes = [net.add_node(start=False, dev_key=i, mine=i == 0,
                          config={"mining_block_interval": block_interval})
             for i in range(validators)]
    for node in nodes:
        write_raw_key(node.datadir, os.urandom(32))
    net.start_all(nodes)
    net.connect_all(nodes)
    return net, nodes


def measure(miner: TestNode, *, epoch_blocks: int, checkpoints: int,
            timeout: float) -> list[dict[str, Any]]:
    """Poll ``miner`` until ``checkpoints`` checkpoints after the anchor are finalized; one
    row per checkpoint: height, seconds and blocks from its block to its finalization."""
    seen: dict[int, float] = {}  # checkpoint height -> monotonic time first seen
    rows: list[dict[str, Any]] = []
    first: int | None = None
    deadline = time.monotonic() + timeout
    while len(rows) < checkpoints:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(rows)} of {checkpoints} checkpoints finalized in "
                               f"{timeout:.0f} s")
        report = finality(miner)
        now = time.monotonic()
        height = int(report["height"])
        for cp in range(epoch_blocks, height + 1, epoch_blocks):
            seen.setdefault(cp, now)
        if first is None and report.get("active"):
            # the anchor is justified by definition: measure the checkpoints after it
            first = int(report["anchor"]["height"]) + epoch_blocks
        finalized = int(report["finalized_height"])
        while first is not None and len(rows) < checkpoints and finalized >= first:
            if first in seen:
                rows.append({"checkpoint": first, "epoch": first // epoch_blocks,
                             "seconds": round(now - seen[first], 2),
                             "blocks": height - first})
            first += epoch_blocks
        time.sleep(POLL_S)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--epoch-blocks", type=int, default=4)
    parser.add_argument("--block-interval", type=float, default=3.0,
                        help="seconds per block the miner paces itself to (default 3)")
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-finality-") as tmp:
        net, nodes = start(Path(tmp), validators=args.validators,
                           epoch_blocks=args.epoch_blocks, block_interval=args.block_interval)
        try:
            wait_until(lambda: finality(nodes[0]).get("active"), args.timeout,
                       message="finality anchored")
            rows = measure(nodes[0], epoch_blocks=args.epoch_blocks,
                           checkpoints=args.checkpoints, timeout=args.timeout)
        finally:
            net.teardown()
    seconds = [r["seconds"] for r in rows]
    blocks = [r["blocks"] for r in rows]
    print(f"finality on {args.validators} validator processes, E = {args.epoch_blocks}, "
          f"~{args.block_interval:g} s blocks, BLS backend {type(BACKEND).__name__}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'checkpoint':>10} {'epoch':>6} {'seconds':>8} {'blocks':>7}")
    for r in rows:
        print(f"{r['checkpoint']:>10} {r['epoch']:>6} {r['seconds']:>8.2f} {r['blocks']:>7}")
    print(f"{'median':>10} {'':>6} {statistics.median(seconds):>8.2f} "
          f"{statistics.median(blocks):>7}")
    if args.json:
        print(json.dumps({"validators": args.validators, "epoch_blocks": args.epoch_blocks,
                          "block_interval": args.block_interval,
                          "backend": type(BACKEND).__name__, "checkpoints": rows,
                          "median_seconds": statistics.median(seconds),
                          "median_blocks": statistics.median(blocks),
                          "wall_seconds": round(time.monotonic() - started, 1),
                          "load": round(os.getloadavg()[0], 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
