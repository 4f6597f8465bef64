"""What the peer-to-peer layer needs from the node that hosts it.

p2p imports no node module above it: the peer manager and the syncer take a `ChainHost`
in their constructors (the node satisfies it structurally), the way cosmos-sdk modules
name their ``expected_keepers``. Holding only what p2p uses keeps the dependency visible
and one-way: node -> p2p, never back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import nacl.signing

from consensus.block import Block, BlockHeader
from consensus.forkchoice import BlockTree
from consensus.tx import Transaction
from core.params import ChainParams
from node.p2p.peer import Peer


class ChainView(Protocol):
    """The chain facts p2p reads: our tip and work for handshakes, sync and gossip."""

    @property
    def tree(self) -> BlockTree:
        """The block tree: tip entry (height, cumulative work) and which ids connect."""
        ...

    @property
    def params(self) -> ChainParams:
        """Consensus parameters: the handshake compares chain ids."""
        ...

    @property
    def genesis_id(self) -> bytes:
        """Peers on another genesis are refused; the handshake signs it too."""
        ...

    @property
    def height(self) -> int:
        """Height of our tip (sync progress, log lines)."""
        ...

    def has_block(self, block_id: bytes) -> bool:
        """Stored or held as an orphan: gossip does not fetch it again."""
        ...

    def check_finality(self, *, parent_id: bytes, height: int) -> None:
        """Raise `core.errors.ForkChoiceError` if a block at ``height`` on ``parent_id``
        would leave our finalized checkpoint's chain (sync refuses such a peer's headers)."""
        ...


class ChainHost(Protocol):
    """The node as p2p sees it: identity, chain views, and where peers' input goes."""

    @property
    def chain(self) -> ChainView:
        """The chain store, read on the event loop (cheap reads only)."""
        ...

    @property
    def node_id(self) -> bytes:
        """Our public identity key, sent in HELLO."""
        ...

    @property
    def identity(self) -> nacl.signing.SigningKey:
        """Signs the peer's handshake nonce to prove ``node_id``."""
        ...

    @property
    def listen_address(self) -> str:
        """``host:port`` peers can dial back ("" until we listen); read live."""
        ...

    def locator(self) -> list[bytes]:
        """Canonical ids, densest near the tip, for GETHEADERS."""
        ...

    async def headers_after(self, locator: list[bytes], *, limit: int) -> list[bytes]:
        """Encoded canonical headers after the newest locator entry we know (serving sync)."""
        ...

    def raw_block(self, block_id: bytes) -> bytes | None:
        """Stored (or early-relayed) block bytes, served without decoding (GETDATA)."""
        ...

    async def submit_transaction(self, tx: Transaction, *, origin: Peer | None = None) -> bytes:
        """Admit a gossiped transaction (and relay it); raises `Judged` if refused."""
        ...

    async def relay_early(self, header: BlockHeader, raw: bytes | Callable[[], bytes], *,
                          origin: Peer | None = None) -> bool:
        """Announce a block on its header and proof alone; True if announced."""
        ...

    def drop_relay(self, block_id: bytes) -> None:
        """Forget an early relay whose body failed to decode."""
        ...

    async def submit_block(self, block: Block, *, origin: Peer | None = None,
                           raw: bytes | None = None,
                           origin_checked_state: bool = True) -> object:
        """Validate and store a gossiped block (p2p ignores the result); raises `Judged`."""
        ...

    async def process_blocks(self, blocks: list[Block], *, origin: Peer | None = None,
                             relay: bool = False) -> int:
        """Add a synced batch in order; returns how many were accepted."""
        ...
