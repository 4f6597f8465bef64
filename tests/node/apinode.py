"""A small real node for API tests: a LevelDB ChainStore, a Mempool and an aiohttp server.

Until ``node.node.Node`` exists this stands in for it with the attributes the API contract
names (config, chain, mempool, peers, miner, syncing, sync_progress, submit_transaction).
Chain, mempool and HTTP server are the real ones; only the peer book and miner statistics
are simple local objects (their owners' parts are not here yet).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from consensus.block import Block
from consensus.tx import Transaction
from node.api import Api, register_routes
from node.chainstore import ChainStore, update_mempool
from node.mempool import Mempool
from tests.consensus.helpers import Chain, new_chain
from tests.node.chainutil import NOW, extend


@dataclasses.dataclass
class Config:
    datadir: Path
    network: str = "dev"


class PeerBook:
    """Connected peers by node id; ``connect`` accepts ``host:port`` and refuses the rest."""

    def __init__(self) -> None:
        self.peers: dict[bytes, str] = {}

    def info(self) -> list[dict[str, Any]]:
        return [{"node_id": k.hex(), "address": v} for k, v in self.peers.items()]

    async def connect(self, address: str) -> bytes:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"bad peer address {address!r}")
        node_id = bytes([len(self.peers) + 1]) * 32
        self.peers[node_id] = address
        return node_id

    def disconnect(self, node_id: bytes) -> bool:
        return self.peers.pop(node_id, None) is not None


class MinerStats:
    """Counters in the shape H-C's miner reports."""

    def __init__(self, **stats: float) -> None:
        self.values = stats

    def stats(self) -> dict[str, float]:
        return dict(self.values)


class ApiTestNode:
    """A node's chain, mempool and API on one aiohttp app."""

    def __init__(self, datadir: Path) -> None:
        datadir.mkdir(parents=True, exist_ok=True)
        self.sim: Chain = new_chain()
        self.config = Config(datadir=datadir)
        self.chain = ChainStore.open(datadir / "chain", genesis=self.sim.config)
        self.mempool = Mempool(params=self.sim.params)
        self.peers = PeerBook()
        self.miner: MinerStats | None = None
        self.syncing = False
        self.sync_progress = 1.0
        self.best_peer_height = 0
        self.app = web.Application(client_max_size=4 << 20)
        self.api: Api = register_routes(self.app, self)

    def status(self) -> dict[str, object]:
        """The node's own facts, as ``Node.status`` gives them (the API merges these)."""
        return {"best_peer_height": self.best_peer_height, "listen": "127.0.0.1:0"}

    async def submit_transaction(self, tx: Transaction, *, origin: object = None) -> bytes:
        return self.mempool.add(tx, tip=self.chain.tip_view(), now=int(time.time()))

    def mine(self, txs: Sequence[Transaction] = (), *, seed: int = 0) -> Block:
        """Mine a block with ``txs`` on the in-memory twin and connect it to the store."""
        block = extend(self.sim, txs, seed=seed)
        update = self.chain.add_block(block, now=NOW)
        update_mempool(self.mempool, update, tip=self.chain.tip_view(), now=int(time.time()))
        return block

    def close(self) -> None:
        self.chain.close()


async def start(node: ApiTestNode) -> TestClient[web.Request, web.Application]:
    """Serve ``node.app`` on 127.0.0.1 (a real socket) and return a client for it."""
    client = TestClient(TestServer(node.app, host="127.0.0.1"))
    await client.start_server()
    return client
