"""Child process for the sync crash test: a node that syncs from ``argv[2]`` until killed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from node.config import NodeConfig
from node.node import Node


async def main(datadir: str, seed: str) -> None:
    node = Node(NodeConfig(datadir=Path(datadir), port=0, peers=[seed], discover=False,
                           sync_batch=16))
    await node.start()
    while True:
        print(node.chain.height, flush=True)
        await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
