"""A transaction index for the API: tx id -> (block id, position), kept beside the chain.

The chain store has no tx index (consensus does not need one), so the API keeps its own in
the same LevelDB under ``api/``. It is *self-checking* rather than transactional: an entry is
trusted only if its block is still canonical and really holds that transaction at that
position, so entries left behind by a reorg or a crash are harmless. Catch-up walks the
canonical chain from the last indexed block (rewinding along parents after a reorg) to the
tip, in bounded chunks so that a long catch-up does not stall the event loop.

It also indexes each address's transactions (``pouwchain wallet history``): under
``api/txa/<address><height><position>`` the id of every transaction the address sent or,
as a transfer's recipient, received; `history` trusts an entry only if that canonical
block still holds that transaction at that position, like `lookup`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgpack

from consensus.block import Block
from consensus.tx import Transaction
from contracts import Transfer
from node.chain.chainstore import ChainStore

INDEX_PREFIX = b"api/txi/"
ADDRESS_PREFIX = b"api/txa/"  # + address (32) + height (u64 BE) + position (u32 BE) -> tx id
TIP_KEY = b"api/txi-tip"
VERSION_KEY = b"api/txi-version"
#: 2: address entries too; an index of another version is rebuilt from genesis
VERSION = b"2"
CHUNK_BLOCKS = 256

Runner = Callable[[Callable[[], tuple[int, bool]]], Awaitable[tuple[int, bool]]]


@dataclass(frozen=True)
class TxLocation:
    """A confirmed transaction and where it sits on the canonical chain."""

    tx: Transaction
    block_id: bytes
    height: int
    index: int


class TxIndex:
    """Persistent tx id index over a `ChainStore`; call `catch_up` before lookups."""

    def __init__(self, chain: ChainStore, *, chunk_blocks: int = CHUNK_BLOCKS) -> None:
        self.chain = chain
        self.chunk_blocks = chunk_blocks
        self._lock = asyncio.Lock()
        self._version_checked = False

    def _indexed_tip(self) -> tuple[int, bytes] | None:
        raw = self.chain.db.get(TIP_KEY)
        if raw is None:
            return None
        height, block_id = msgpack.unpackb(raw)
        return int(height), bytes(block_id)

    def _fork_point(self) -> int:
        """Height of the last indexed block that is still canonical (-1: none)."""
        tip = self._indexed_tip()
        if tip is None:
            return -1
        height, block_id = tip
        while height >= 0 and self.chain.block_id_at(height) != block_id:
            block = self.chain.get_block(block_id)
            if block is None or height == 0:
                return -1
            height, block_id = height - 1, block.header.parent_hash
        return height

    def _index_block(self, height: int) -> bool:
        """Index the canonical block at ``height``; False if the chain moved under us."""
        block_id = self.chain.block_id_at(height)
        block = None if block_id is None else self.chain.get_block(block_id)
        if block_id is None or block is None:
            return False
        writes: dict[bytes, bytes | None] = {
            INDEX_PREFIX + tx.id(): msgpack.packb([block_id, i], use_bin_type=True)
            for i, tx in enumerate(block.transactions)
        }
        for i, tx in enumerate(block.transactions):
            for address in involved(tx):
                key = ADDRESS_PREFIX + address + height.to_bytes(8, "big") + i.to_bytes(4, "big")
                writes[key] = tx.id()
        writes[TIP_KEY] = msgpack.packb([height, block_id], use_bin_type=True)
        self.chain.db.write_raw(writes, sync=False)
        return True

    def step(self, max_blocks: int) -> tuple[int, bool]:
        """Index up to ``max_blocks`` more canonical blocks; (indexed height, at the tip)."""
        if not self._version_checked:
            if self.chain.db.get(VERSION_KEY) != VERSION:  # older entries stay valid
                self.chain.db.write_raw({TIP_KEY: None, VERSION_KEY: VERSION}, sync=False)
            self._version_checked = True
        height = self._fork_point()
        stop = min(self.chain.height, height + max_blocks)
        while height < stop:
            if not self._index_block(height + 1):
                return height, True  # the chain moved under us: the next call resumes
            height += 1
        return height, height >= self.chain.height

    async def catch_up(self, *, run: Runner | None = None) -> int:
        """Index every canonical block up to the current tip; returns the indexed height.

        ``run`` executes each chunk (the node passes its chain thread, the store's only
        writer); between chunks the event loop gets control back.
        """
        async with self._lock:
            while True:
                chunk = functools.partial(self.step, self.chunk_blocks)
                height, done = chunk() if run is None else await run(chunk)
                if done:
                    return height
                await asyncio.sleep(0)

    def lookup(self, tx_id: bytes) -> TxLocation | None:
        """Where ``tx_id`` is confirmed on the canonical chain, or None."""
        raw = self.chain.db.get(INDEX_PREFIX + tx_id)
        if raw is None:
            return None
        block_id, index = msgpack.unpackb(raw)
        block: Block | None = self.chain.get_block(bytes(block_id))
        if block is None or index >= len(block.transactions):
            return None
        height = int(block.header.height)
        # trust the entry only if the block is canonical and holds the tx at that position
        if self.chain.block_id_at(height) != block_id:
            return None
        tx = block.transactions[index]
        if tx.id() != tx_id:
            return None
        return TxLocation(tx=tx, block_id=bytes(block_id), height=height, index=int(index))

    def history(self, address: bytes, limit: int) -> list[TxLocation]:
        """The ``limit`` newest canonical transactions ``address`` sent or received, newest
        first. Reads every entry of the address (forward, keeping the last ``limit``)."""
        found: collections.deque[TxLocation] = collections.deque(maxlen=limit)
        for key, tx_id in self.chain.db.iterate_prefix(ADDRESS_PREFIX + address):
            height = int.from_bytes(key[-12:-4], "big")
            index = int.from_bytes(key[-4:], "big")
            block_id = self.chain.block_id_at(height)
            block = None if block_id is None else self.chain.get_block(block_id)
            if block_id is None or block is None or index >= len(block.transactions):
                continue
            tx = block.transactions[index]
            if tx.id() == bytes(tx_id):  # not an entry left behind by a reorg
                found.append(TxLocation(tx=tx, block_id=block_id, height=height, index=index))
        return list(reversed(found))


def involved(tx: Transaction) -> list[bytes]:
    """The addresses whose history holds ``tx``: its sender, and a transfer's recipient."""
    addresses = [tx.sender]
    if isinstance(tx.payload, Transfer) and tx.payload.to != tx.sender:
        addresses.append(tx.payload.to)
    return addresses
