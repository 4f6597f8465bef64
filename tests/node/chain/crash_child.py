"""Child process of the crash test: moves a chain store between two branches forever.

Run as ``python -m tests.node.chain.crash_child DATADIR MARKERS MODE BLOCKS``. Every hook point of
connect/disconnect is appended to MARKERS (unbuffered ``os.write``: a SIGKILL cannot lose a
line already written). MODE is ``loop`` (the parent kills at a random moment) or
``spin:<point>:<n>`` (on the n-th time ``point`` fires, write ``spin`` and wait to be killed).

The parent builds the two branches once (knowing the exact state after each block) and hands
the child their encoded blocks in the file BLOCKS (``save_blocks``), which keeps startup fast.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack

from consensus.block import Block
from consensus.genesis import dev_config
from node.chain.chainstore import ChainStore
from tests.framework.chain import NOW, Chain, extend, fork, new_chain, transfer

BRANCH_A = 6
BRANCH_B = 7
TXS_PER_BLOCK = 25


@dataclass
class Branches:
    base: Chain
    a: list[Block]
    b: list[Block]
    # block id -> full state items (meta keys included) after that block
    states: dict[bytes, dict[bytes, bytes]]


def build_branches() -> Branches:
    """Two branches forking at genesis: A (6 blocks) and B (7 blocks), 25 transfers each."""
    base = new_chain()
    states = {base.tip.block_id(): dict(base.kv.data)}
    branches: list[list[Block]] = []
    for length, senders, seed_base in ((BRANCH_A, (0, 2), 0), (BRANCH_B, (1, 3), 1000)):
        chain = fork(base)
        nonces = dict.fromkeys(senders, 0)
        blocks = []
        for height in range(length):
            txs = []
            for i in range(TXS_PER_BLOCK):
                sender = senders[i % 2]
                txs.append(transfer(sender, nonces[sender], to=200 + i, amount=1 + i))
                nonces[sender] += 1
            blocks.append(extend(chain, txs, seed=seed_base + height))
            states[chain.tip.block_id()] = dict(chain.kv.data)
        branches.append(blocks)
    return Branches(base=base, a=branches[0], b=branches[1], states=states)


def save_blocks(branches: Branches, path: Path) -> None:
    path.write_bytes(msgpack.packb([[b.encode() for b in branches.a],
                                    [b.encode() for b in branches.b]], use_bin_type=True))


def load_blocks(path: Path) -> tuple[list[Block], list[Block]]:
    a, b = msgpack.unpackb(path.read_bytes())
    return [Block.decode(x) for x in a], [Block.decode(x) for x in b]


def main() -> None:
    datadir, markers_path, mode, blocks_path = sys.argv[1:5]
    fd = os.open(markers_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    spin_point, spin_count = "", 0
    if mode.startswith("spin:"):
        _, kind, step, count = mode.split(":")
        spin_point, spin_count = f"{kind}:{step}", int(count)
    seen: dict[str, int] = {}

    def hook(store: ChainStore, point: str) -> None:
        os.write(fd, f"{point} {store.height} {store.tip_id.hex()}\n".encode())
        seen[point] = seen.get(point, 0) + 1
        if point == spin_point and seen[point] == spin_count:
            os.write(fd, b"spin\n")
            while True:
                time.sleep(1)

    a_blocks, b_blocks = load_blocks(Path(blocks_path))
    store = ChainStore.open(datadir, genesis=dev_config(), hook=hook)
    for block in a_blocks + b_blocks:
        store.add_block(block, now=NOW)
    os.write(fd, b"ready\n")
    tips = [a_blocks[-1].header.block_id(), b_blocks[-1].header.block_id()]
    while True:
        for tip in tips:
            store.walk_to(tip)
            os.write(fd, b"walked\n")


if __name__ == "__main__":
    main()
