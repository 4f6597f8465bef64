"""Child process of the reorg crash test: a real node (as `node.builder` wires it) that holds a
pending transaction, then syncs a heavier branch and spins at a chain store hook point until
the parent SIGKILLs it.

Run as ``python -m tests.node.chain.reorg_crash_child DATADIR BLOCKS MARKERS POINT COUNT``.
BLOCKS holds the encoded blocks (`save`): branch A (one block), branch B (two), and the
pending transaction. MARKERS gets ``ready`` when A is the tip and the transaction pending, and
``spin`` when the POINT hook fires for the COUNT-th time during B's sync batch.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack

from consensus.block import Block
from consensus.tx import Transaction
from node.builder import build_node
from node.chain.chainstore import ChainStore
from tests.framework.chain import extend, fork, new_chain, transfer
from tests.framework.nodes import node_config

SENDER = 1  # dev account whose nonce-0 transfer is in A's block and nonce 1 pending


@dataclass
class Scenario:
    a: list[Block]  # one block with the sender's nonce-0 transfer
    b: list[Block]  # two blocks without it: heavier, so syncing them disconnects A
    pending: Transaction  # the sender's nonce-1 transfer, pending on A

    @property
    def confirmed_on_a(self) -> Transaction:
        return self.a[0].transactions[0]


def build_scenario() -> Scenario:
    base = new_chain()
    branch_a, branch_b = fork(base), fork(base)
    a = [extend(branch_a, [transfer(SENDER, 0, to=200, amount=5)], seed=1)]
    b = [extend(branch_b, [transfer(2, 0, to=201, amount=7)], seed=2),
         extend(branch_b, [], seed=3)]
    return Scenario(a=a, b=b, pending=transfer(SENDER, 1, to=202, amount=3))


def save(scenario: Scenario, path: Path) -> None:
    path.write_bytes(msgpack.packb([[x.encode() for x in scenario.a],
                                    [x.encode() for x in scenario.b],
                                    scenario.pending.encode()], use_bin_type=True))


def load(path: Path) -> Scenario:
    a, b, pending = msgpack.unpackb(path.read_bytes())
    return Scenario(a=[Block.decode(x) for x in a], b=[Block.decode(x) for x in b],
                    pending=Transaction.decode(pending))


def main() -> None:
    datadir, blocks_path, markers_path, point, count = sys.argv[1:6]
    fd = os.open(markers_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    scenario = load(Path(blocks_path))
    directory = Path(datadir)
    node = build_node(node_config(directory.parent, directory.name))
    node._add_blocks(scenario.a)
    node._admit_tx(scenario.pending)
    os.write(fd, b"ready\n")
    fired = 0

    def hook(_store: ChainStore, at: str) -> None:
        nonlocal fired
        if at != point:
            return
        fired += 1
        if fired == int(count):
            os.write(fd, b"spin\n")
            while True:
                time.sleep(1)

    node.chain._hook = hook  # the crash tests' hook point, installed after the setup
    node._add_blocks(scenario.b)
    os.write(fd, b"synced\n")  # not reached: the parent kills at the spin


if __name__ == "__main__":
    main()
