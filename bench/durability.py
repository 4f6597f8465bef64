"""SIGKILL a node process again and again; count what the API accepted and lost.

One non-mining node process (its own datadir and port, `tests.framework.nodes.TestNode`).
Each cycle: POST ``--txs`` transfers (chained nonces over the funded dev accounts), SIGKILL
the node right after the last answer, restart it on the same datadir, and check that every
transaction accepted so far and not yet mined is back in its mempool; every ``--mine-every``
cycles one block is generated, which must take the pool's transactions with it. Figures:
cycles, accepted, lost, restart time (SIGKILL to serving the API again).

    python bench/durability.py [--cycles 20] [--txs 10] [--mine-every 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.framework.chain import transfer
from tests.framework.nodes import FUNDED, TestNetwork, address_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20, help="SIGKILL + restart cycles")
    parser.add_argument("--txs", type=int, default=10, help="transfers accepted per cycle")
    parser.add_argument("--mine-every", type=int, default=5, help="generate a block every N")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    network = TestNetwork(Path(tempfile.mkdtemp(prefix="pouw-durability-")))
    nonces = [0] * FUNDED
    accepted: set[str] = set()
    lost: set[str] = set()
    restarts: list[float] = []
    mined = 0
    try:
        node = network.add_node()
        for cycle in range(1, args.cycles + 1):
            for i in range(args.txs):
                sender = i % FUNDED
                tx = transfer(sender, nonces[sender], address_of((sender + 1) % FUNDED), 1)
                nonces[sender] += 1
                accepted.add(node.send_tx(tx))
            node.kill()
            t0 = time.perf_counter()
            node.start()
            restarts.append(time.perf_counter() - t0)
            pending = set(node.mempool())
            lost |= (accepted - pending)
            accepted &= pending  # the lost ones are counted once
            if cycle % args.mine_every == 0:
                network.generate(node, 1)
                left = set(node.mempool())
                assert not left & accepted, "a generated block left accepted transactions"
                mined += len(accepted)
                accepted = set()
    finally:
        network.teardown()
    total = args.cycles * args.txs
    print(f"durability: {args.cycles} SIGKILL restarts of a node process, {args.txs} transfers "
          f"accepted per cycle, a block every {args.mine_every} cycles")
    print(f"{'accepted':>9} {'lost':>6} {'mined':>6} {'restart median s':>17} "
          f"{'restart max s':>14}")
    print(f"{total:>9} {len(lost):>6} {mined:>6} {statistics.median(restarts):>17.2f} "
          f"{max(restarts):>14.2f}")
    if args.json:
        print(json.dumps({"cycles": args.cycles, "accepted": total, "lost": len(lost),
                          "mined": mined, "restart_median_s": round(statistics.median(restarts),
                                                                    3),
                          "restart_max_s": round(max(restarts), 3)}))


if __name__ == "__main__":
    main()
