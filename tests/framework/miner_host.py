"""A minimal in-process host for the miner and job service: a real ChainStore and Mempool.

It implements the slice of the Node contract the miner uses (submit_block,
submit_transaction, tip listeners, route hooks) with the chain store's own rules, so the
miner's blocks are checked by the same code a full node runs. Tests that need the network
use the real Node (node/node.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from aiohttp import web

from consensus.block import Block, BlockHeader
from consensus.genesis import GenesisConfig, dev_config, dev_seed
from consensus.tx import Transaction
from node.chain.chainstore import ChainStore, ChainUpdate, update_mempool
from node.chain.mempool import Mempool

IDENTITY_SEED = dev_seed(3)  # a funded dev account, so receipts can pay fees


@dataclasses.dataclass
class HostConfig:
    datadir: Path
    mine: bool = False
    mining_shape: tuple[int, int, int, int] | None = None
    mining_backend: str | None = None
    miner_address: str | None = None
    mining_interval: float | None = None
    mining_block_interval: float | None = None


class Host:
    """Chain + mempool + identity + tip listeners; ``clock`` is the node's time."""

    def __init__(self, datadir: Path, *, genesis: GenesisConfig | None = None,
                 mine: bool = False, clock: Callable[[], float] = time.time,
                 **config: Any) -> None:
        self.config = HostConfig(datadir=datadir, mine=mine, **config)
        self.clock = clock
        self.chain = ChainStore.open(datadir / "chain", genesis=genesis or dev_config())
        self.mempool = Mempool(params=self.chain.params)
        self.identity = nacl.signing.SigningKey(IDENTITY_SEED)
        self.app = web.Application()
        self.route_hooks: list[Callable[[web.Application, Any], None]] = []
        self.tip_listeners: list[Callable[[BlockHeader], None]] = []
        self.miner: Any = None
        self.jobs: Any = None
        self.received: list[Block] = []

    def add_route_hook(self, fn: Callable[[web.Application, Any], None]) -> None:
        self.route_hooks.append(fn)
        fn(self.app, self)

    def add_tip_listener(self, cb: Callable[[BlockHeader], None]) -> None:
        self.tip_listeners.append(cb)

    async def submit_block(self, block: Block, *, origin: Any = None) -> ChainUpdate:
        before = self.chain.tip_id
        update = self.chain.add_block(block, now=int(self.clock()))
        self.received.append(block)
        update_mempool(self.mempool, update, tip=self.chain.tip_view(), now=int(self.clock()))
        if self.chain.tip_id != before:
            for cb in self.tip_listeners:
                cb(self.chain.tip_header)
        return update

    async def submit_transaction(self, tx: Transaction, *, origin: Any = None) -> bytes:
        return self.mempool.add(tx, tip=self.chain.tip_view(), now=int(self.clock()))

    def close(self) -> None:
        if self.miner is not None:
            self.miner.stop()
        if self.jobs is not None:
            self.jobs.stop()
        self.chain.close()


@pytest.fixture
def restore_torch_threads() -> Any:
    """The miner sizes torch's thread pool (process-wide in some builds): restore it."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
