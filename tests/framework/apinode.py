"""Nodes for API tests, both serving on 127.0.0.1 with a real LevelDB chain.

`LiveNode`: the real ``node.node.Node``, wired as ``pouwchain node`` wires it
(``attach_services``), plus an in-memory chain twin that mines blocks for it. Most tests use
this one.

`ApiTestNode`: the API over a real ChainStore and Mempool with the attributes of the Node
contract, for the few tests that must *set* what a real node derives from its network
(syncing and its progress, a peer book that accepts any ``host:port``, miner counters).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from consensus.block import Block
from consensus.tx import Transaction
from node.api.chain import API_KEY, Api, register_routes
from node.chain.chainstore import ChainStore, update_mempool
from node.chain.mempool import Mempool
from node.cli.node import attach_services
from node.config import NodeConfig
from node.node import Node
from tests.framework.chain import Chain, new_chain
from tests.framework.chainutil import NOW, extend


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


class LiveNode:
    """A started real node and the chain twin that mines for it."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.sim: Chain = new_chain(node.genesis)
        self.url = f"http://127.0.0.1:{node.port}"

    @classmethod
    async def start(cls, datadir: Path, **overrides: Any) -> LiveNode:
        values: dict[str, Any] = {"datadir": datadir, "port": 0, "discover": False,
                                  "log_json": False, "dial_interval": 0.2}
        values.update(overrides)
        node = Node(NodeConfig(**values))
        attach_services(node)
        await node.start()
        return cls(node)

    async def stop(self) -> None:
        await self.node.stop()

    @property
    def chain(self) -> ChainStore:
        return self.node.chain

    @property
    def mempool(self) -> Mempool:
        return self.node.mempool

    @property
    def config(self) -> NodeConfig:
        return self.node.config

    @property
    def api(self) -> Api:
        return self.node.app[API_KEY]

    @property
    def miner(self) -> Any:
        return self.node.miner

    @miner.setter
    def miner(self, value: Any) -> None:
        self.node.miner = value

    async def mine(self, txs: Sequence[Transaction] = (), *, seed: int = 0) -> Block:
        """Mine the next block on the twin and submit it like a peer would."""
        block = extend(self.sim, txs, seed=seed)
        await self.node.submit_block(block)
        assert self.node.chain.tip_id == block.header.block_id()
        return block

    def session(self) -> aiohttp.ClientSession:
        """An HTTP session whose relative paths go to this node."""
        return aiohttp.ClientSession(base_url=self.url)
