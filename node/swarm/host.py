"""What the swarm room expects of the rest of the node, as small Protocols.

In the style of cosmos-sdk's ``expected_keepers.go``: the swarm names exactly what it uses
of the chain, the mempool, the peers and the miner, so the builder can hand it the node's
own objects (`node.node.Node`, `PeerManager`, `Miner` satisfy these as they are) and a test
can hand it a fake, with no ``getattr`` on the node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import nacl.signing
import numpy as np

from consensus.block import Block
from consensus.tx import Transaction
from core.interfaces import KeyValueStore
from core.params import ChainParams
from node.chain.mempool import TipView
from node.p2p.peer import Peer

T = TypeVar("T")


class SwarmChain(Protocol):
    """The chain store, read on the chain thread (`SwarmHost.call_chain`) or the loop."""

    @property
    def params(self) -> ChainParams: ...

    @property
    def height(self) -> int: ...

    @property
    def tip_id(self) -> bytes: ...

    def state_view(self) -> KeyValueStore: ...

    def tip_view(self) -> TipView: ...

    def block_id_at(self, height: int) -> bytes | None: ...

    def get_block(self, block_id: bytes) -> Block | None: ...


class SwarmMempool(Protocol):
    """The pending transactions: a settlement or registration step must not send twice."""

    def transactions(self) -> list[Transaction]: ...

    def pending_of(self, sender: bytes) -> list[Transaction]: ...

    def revalidate(self, senders: Iterable[bytes], *, tip: TipView) -> None: ...


class SwarmHost(Protocol):
    """The node as the swarm sees it: who it is, its chain, and sending a transaction."""

    @property
    def node_id(self) -> bytes: ...

    @property
    def identity(self) -> nacl.signing.SigningKey: ...

    @property
    def chain(self) -> SwarmChain: ...

    @property
    def mempool(self) -> SwarmMempool: ...

    @property
    def syncing(self) -> bool: ...

    async def call_chain(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the chain thread (the only writer of store and mempool)."""
        ...

    async def submit_transaction(self, tx: Transaction) -> bytes:
        """Admit ``tx`` to the mempool and gossip it; its id. Raises on a rejected tx."""
        ...


class SwarmPeers(Protocol):
    """The peers, for flooding swarm gossip and re-announcing our own transactions."""

    def broadcast_swarm(self, kind: str, data: bytes, *, exclude: Peer | None = None) -> int: ...

    def broadcast_tx(self, tx: Transaction, *, raw: bytes, tx_id: bytes) -> int: ...

    def get(self, node_id: bytes) -> Peer | None: ...


class MinedProduct(Protocol):
    """A product the miner computed (mined on its template, or plainly)."""

    @property
    def product(self) -> np.ndarray: ...


class ProductMiner(Protocol):
    """A mining node's miner: the built-in model's matmuls become its useful work."""

    def mine_product(self, a: np.ndarray, b: np.ndarray) -> MinedProduct: ...
