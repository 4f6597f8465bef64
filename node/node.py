"""The node runtime: chain store, mempool, peers and sync behind one aiohttp application.

Threading rule: every call that touches the chain store or the mempool's contents runs on a
single "chain" worker thread (`call_chain`), so validation (signatures, PoUW certificates,
state transitions) never blocks the event loop and the store sees one writer at a time. The
event loop only does networking and cheap reads (LevelDB point reads are thread-safe).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import nacl.signing
from aiohttp import web

from consensus.block import Block, BlockHeader, work_of
from consensus.tx import Transaction
from consensus.validation import check_certificate, check_header, connect_block
from core.errors import ConsensusError
from core.state import State
from node.api.errors import LIMITS_KEY, HttpLimits, install_error_handling
from node.api.server import ConnectionGate, start_server
from node.chain.chainstore import (
    BLOCK,
    HEADER,
    ChainUpdate,
    load_genesis,
    open_chain,
    update_mempool,
)
from node.chain.db import Overlay
from node.chain.lru import LruSet
from node.chain.mempool import Mempool, MempoolError
from node.config import NodeConfig
from node.finality.service import FinalityService
from node.logging import get_logger, log_event
from node.mining.jobs import JobService
from node.mining.miner import Miner
from node.p2p.manager import PeerManager
from node.p2p.peer import Peer
from node.p2p.policy import Judged, Verdict, classify
from node.p2p.protocol import MAX_LOCATOR
from node.p2p.sync import Syncer
from node.swarm.registration import SwarmRegistration
from node.swarm.service import SwarmService

log = get_logger("node")
T = TypeVar("T")
TipListener = Callable[[BlockHeader], None]
MAX_REQUEST_BYTES = 16 * 1024 * 1024  # largest HTTP body aiohttp reads whole (client_max_size)
ORPHAN_PARENTS_CHASED = 1024  # parents fetched for orphans, remembered (never chased twice)


class Service(Protocol):
    """A part of the node started after it listens and stopped before its peers."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class NodeRejected(Judged):
    """The node refused a transaction or block; ``reason`` is machine-readable, ``verdict``
    what the peer policy does to whoever sent it."""


def load_or_create_identity(path: Path) -> nacl.signing.SigningKey:
    """The node's Ed25519 identity: a 32-byte seed in ``path`` (mode 0600), made on first use."""
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != 32:
            raise ValueError(f"{path} is not a 32-byte key")
        return nacl.signing.SigningKey(seed)
    key = nacl.signing.SigningKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(bytes(key))
    return key


class Node:
    """A full node: chain store, mempool, peers and sync behind one aiohttp application.

    ``node.builder`` builds one from its config and wires the services (routes on ``app``,
    ``services`` started in order after the node listens, stopped in reverse order first).
    """

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        config.datadir.mkdir(parents=True, exist_ok=True)
        self.genesis = load_genesis(config.genesis_path)
        self.identity = load_or_create_identity(config.datadir / "node.key")
        self.node_id = bytes(self.identity.verify_key)
        self.chain, self._db = open_chain(
            config.datadir / "chain", genesis=self.genesis,
            cache_bytes=config.db_cache_mb << 20,
            write_buffer_bytes=config.db_write_buffer_mb << 20)
        self.mempool = Mempool(params=self.chain.params)
        self.listen_address = f"{config.host}:{config.port}" if config.port else ""
        self.port = config.port
        self.peers = PeerManager(self, config)
        self.sync = Syncer(self, self.peers, config)
        # the services, given by node.builder (None: not built)
        self.jobs: JobService | None = None
        self.miner: Miner | None = None  # set when config.mine
        self.swarm: SwarmService | None = None
        self.swarm_registration: SwarmRegistration | None = None
        self.finality: FinalityService | None = None
        self.services: list[Service] = []  # started in order, stopped in reverse order
        self.started_at = 0.0
        self.app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        install_error_handling(self.app)  # JSON errors on every route, p2p included
        # the HTTP server's timeouts and per-IP cap; replace before `start` to change them
        self.http_limits = HttpLimits()
        self.http_gate: ConnectionGate | None = None
        self.app.router.add_get("/p2p", self.peers.handle_inbound)
        self.blocks_received = 0
        self._tip_listeners: list[TipListener] = []
        # blocks announced early (header and proof checked, state transition running)
        self._relaying: dict[bytes, bytes] = {}
        self._readded: list[Transaction] = []  # set on the chain thread, read after it returns
        self._chased = LruSet(ORPHAN_PARENTS_CHASED)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain")
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._running = False

    # -- extension points ------------------------------------------------------------------------

    def add_tip_listener(self, cb: TipListener) -> None:
        """``cb(new_tip_header)`` runs on the event loop after every tip change."""
        self._tip_listeners.append(cb)

    async def call_chain(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the chain thread (the only writer of store and mempool)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.app[LIMITS_KEY] = self.http_limits
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._listener, self.http_gate = await start_server(
            self._runner, self.config.host, self.config.port, self.http_limits)
        sockets = self._listener.sockets
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.config.port
        self.listen_address = f"{self.config.host}:{self.port}"
        self.started_at = time.time()
        self._running = True
        await self.peers.start()
        self.sync.start()
        for service in self.services:
            await service.start()
        self._write_node_json()
        log_event(log, "node.started", listen=self.listen_address, node_id=self.node_id,
                  height=self.chain.height, tip=self.chain.tip_id, network=self.config.network)

    async def stop(self) -> None:
        """Services (reverse order), sync and peers, the server; then let the chain thread
        finish its current batch before closing the store (every batch is atomic: always
        consistent)."""
        if not self._running:
            self.close()
            return
        self._running = False
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:
                log.exception("node.service_stop_failed")
        await self.sync.stop()
        await self.peers.stop()
        if self._listener is not None:
            self._listener.close()  # accept no more connections; cleanup closes the open ones
        if self._runner is not None:
            await self._runner.cleanup()
        if self._listener is not None:
            await self._listener.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
        self.chain.close()
        self.config.node_json_path.unlink(missing_ok=True)
        log_event(log, "node.stopped", height=self.chain.height)

    def close(self) -> None:
        """Close the store of a node that never started (a failed build, a test)."""
        self._executor.shutdown(wait=True)
        self.chain.close()

    def _write_node_json(self) -> None:
        info = {"pid": os.getpid(), "port": self.port, "node_id": self.node_id.hex(),
                "api": f"http://127.0.0.1:{self.port}", "listen": self.listen_address,
                "p2p": f"ws://{self.listen_address}/p2p"}
        tmp = self.config.node_json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        tmp.replace(self.config.node_json_path)

    # -- status ----------------------------------------------------------------------------------

    @property
    def syncing(self) -> bool:
        return self.sync.syncing

    @property
    def sync_progress(self) -> float:
        return self.sync.progress

    @property
    def best_peer_height(self) -> int:
        return self.sync.best_peer_height

    def status(self) -> dict[str, Any]:
        return {"network": self.config.network, "chain_id": self.chain.params.chain_id,
                "height": self.chain.height, "tip": self.chain.tip_id.hex(),
                "peers": len(self.peers), "syncing": self.syncing,
                "sync_progress": self.sync_progress, "best_peer_height": self.best_peer_height,
                "mining": None if self.miner is None else self.miner.stats(),
                "node_id": self.node_id.hex(), "listen": self.listen_address,
                "mempool": len(self.mempool), "started_at": self.started_at,
                "finalized_height": self.chain.finalized.height,
                "finalized_epoch": self.chain.finalized.epoch}

    # -- transactions ----------------------------------------------------------------------------

    def _admit_tx(self, tx: Transaction) -> bytes:
        tx_id = self.mempool.add(tx, tip=self.chain.tip_view(), now=int(time.time()))
        self.chain.verified_txs.add(tx_id)  # admission ran the signature rule
        return tx_id

    async def submit_transaction(self, tx: Transaction, *, origin: Peer | None = None) -> bytes:
        """Validate against the tip, add to the mempool, gossip; returns the tx id.

        Raises `NodeRejected` (a ValueError) with the mempool's reason.
        """
        try:
            tx_id = await self.call_chain(self._admit_tx, tx)
        except (MempoolError, ConsensusError) as exc:
            verdict, reason = classify(exc)
            raise NodeRejected(getattr(exc, "reason", reason), str(exc),
                               verdict=verdict) from exc
        self.peers.seen_txs.add(tx_id)
        self.peers.broadcast_tx(tx, raw=tx.encode(), tx_id=tx_id, exclude=origin)
        return tx_id

    # -- blocks ----------------------------------------------------------------------------------

    def _add_blocks(self, blocks: list[Block]) -> tuple[ChainUpdate, int, BaseException | None]:
        """Chain thread: add blocks in order; stops at the first invalid one."""
        update = ChainUpdate()
        now = int(time.time())
        added = 0
        error: BaseException | None = None
        self._db.defer_sync = len(blocks) > 1
        try:
            for block in blocks:
                try:
                    result = self.chain.add_block(block, now=now)
                except ConsensusError as exc:
                    error = exc
                    break
                update.merge(result)
                if block.header.block_id() in result.invalid:
                    error = self._diagnose(block) or NodeRejected(
                        "block.state_invalid", "block fails the state transition")
                    break
                added += 1
        finally:
            if self._db.defer_sync:
                self._db.defer_sync = False
                self._db.flush()
        if update.connected or update.disconnected:
            update_mempool(self.mempool, update, tip=self.chain.tip_view(), now=now)
            # the pool has journaled the returning transactions: the store's write-ahead
            # markers for them can go (`ChainStore.returning_blocks`)
            self.chain.forget_returning(block.header.block_id() for block in update.disconnected)
            if update.disconnected:
                # a reorg: gossip again, in nonce order, the pending chain of every sender
                # whose transactions it returned, or peers that never saw them (the other
                # side of a split) would never confirm them; the pending tail goes too, as a
                # peer takes nonce k+2 only after k and k+1
                senders = dict.fromkeys(tx.sender for block in update.disconnected
                                        for tx in block.transactions)
                self._readded = [tx for sender in senders
                                 for tx in self.mempool.pending_of(sender)]
        return update, added, error

    def _diagnose(self, block: Block) -> ConsensusError | None:
        """Which rule an invalid-marked block broke: the store records only *that* it failed,
        so replay it on a throwaway overlay of its parent's state (its parent is the tip the
        store fell back to). Runs only for invalid blocks, whose sender is then banned."""
        if self.chain.tip_id != block.header.parent_hash:
            return None
        state = State(Overlay(self.chain.state_view()))
        try:
            connect_block(state, block, params=self.chain.params,
                          recent_block_ids=self.chain.recent_block_ids(block.header.parent_hash))
        except ConsensusError as exc:
            return exc
        return None

    def _precheck(self, header: BlockHeader) -> bool:
        """Chain thread: header rules and PoUW proof of a block extending our best tip.

        True means it may be relayed before the (much slower) state transition: the early
        relay that keeps propagation at one hop's proof check instead of one full validation
        per hop (Bitcoin's BIP152 high-bandwidth mode makes the same trade). Raises the
        consensus error of a bad header or proof.
        """
        parent_id = header.parent_hash
        if parent_id != self.chain.tree.tip:
            return False
        raw_parent = self._raw_header(parent_id)
        if raw_parent is None:
            return False
        check_header(header, parent=BlockHeader.decode(raw_parent),
                     recent_timestamps=self.chain.recent_timestamps(parent_id),
                     now=int(time.time()),
                     expected_target=self.chain.expected_target(parent_id=parent_id,
                                                                timestamp=header.timestamp),
                     params=self.chain.params)
        check_certificate(header)
        return True

    async def relay_early(self, header: BlockHeader, raw: bytes | Callable[[], bytes], *,
                          origin: Peer | None = None) -> bool:
        """Announce a block (flagged early) once its header and proof check out, before its
        body is even decoded; GETDATA is served from memory until it is stored. Returns True
        if announced (the caller must then submit it or `drop_relay` it). Raises
        `NodeRejected` for a bad header or proof."""
        block_id = header.block_id()
        if self.chain.has_block(block_id) or block_id in self._relaying:
            return False
        try:
            early = await self.call_chain(self._precheck, header)
        except ConsensusError as exc:
            verdict, reason = classify(exc)
            raise NodeRejected(reason, str(exc), verdict=verdict) from exc
        if not early or block_id in self._relaying:
            return False
        self._relaying[block_id] = raw if isinstance(raw, bytes) else raw()
        if origin is not None:
            origin.known_blocks.add(block_id)
        work = self.chain.tree.tip_entry.cumulative_work + work_of(header.target)
        self.peers.announce_blocks([(block_id, header.height, work)], exclude=origin,
                                   early=True)
        return True

    def drop_relay(self, block_id: bytes) -> None:
        self._relaying.pop(block_id, None)

    async def submit_block(self, block: Block, *, origin: Peer | None = None,
                           raw: bytes | None = None,
                           origin_checked_state: bool = True) -> ChainUpdate:
        """Validate and store (chain thread), relay, update the mempool, notify listeners.

        A block extending our tip is announced early (see `relay_early`), then fully
        validated. ``origin_checked_state=False`` marks a block that reached us through an
        early announcement: if only its body or state transition fails, the relayer is not
        punished (it could not know).
        Raises `NodeRejected` for an invalid block; a duplicate returns an empty update.
        """
        block_id = block.header.block_id()
        await self.relay_early(block.header, raw if raw is not None else block.encode,
                               origin=origin)
        try:
            update, _, _ = await self._process([block], origin=origin, relay=True)
        except NodeRejected as exc:
            if not origin_checked_state and exc.reason.split(".")[0] in ("state", "tx", "body",
                                                                          "block"):
                exc.verdict = Verdict.IGNORE
            raise
        finally:
            self._relaying.pop(block_id, None)
        return update

    async def process_blocks(self, blocks: list[Block], *, origin: Peer | None = None,
                             relay: bool = False) -> int:
        """Add a batch of blocks in order (sync); returns how many were accepted."""
        _, added, _ = await self._process(blocks, origin=origin, relay=relay)
        return added

    async def _process(self, blocks: list[Block], *, origin: Peer | None,
                       relay: bool) -> tuple[ChainUpdate, int, BaseException | None]:
        fresh = [b for b in blocks if not self.chain.has_block(b.header.block_id())]
        if origin is not None:
            for b in blocks:
                origin.known_blocks.add(b.header.block_id())
        if not fresh:
            return ChainUpdate(), len(blocks), None
        old_tip = self.chain.tip_id
        update, added, error = await self.call_chain(self._add_blocks, fresh)
        self.blocks_received += added
        if self.chain.tip_id != old_tip:
            self._tip_changed(update, origin=origin, relay=relay)
        readded, self._readded = self._readded, []
        for tx in readded:
            self.peers.broadcast_tx(tx, raw=tx.encode(), tx_id=tx.id())
        last = fresh[min(added, len(fresh) - 1)]
        last_id = last.header.block_id()
        if error is None and last_id not in self.chain.tree and self.chain.has_block(last_id):
            # an orphan: fetch its parent once from whoever sent it (a block that raced its
            # parent); a parent that is itself an orphan means a longer gap, which is sync's
            # job (headers first, never walking back block by block)
            parent_id = last.header.parent_hash
            if origin is not None and not origin.closed and last_id not in self._chased:
                self._chased.add(parent_id)
                self.peers.spawn(self.peers.fetch_blocks(origin, [parent_id]))
            self.sync.wake()
        if error is not None:
            if isinstance(error, NodeRejected):
                raise error
            verdict, reason = classify(error)
            raise NodeRejected(reason, str(error), verdict=verdict) from error
        return update, added + len(blocks) - len(fresh), None

    def _tip_changed(self, update: ChainUpdate, *, origin: Peer | None, relay: bool) -> None:
        tip = self.chain.tree.tip_entry
        header = self.chain.tip_header
        log_event(log, "chain.tip", level=logging.DEBUG, height=header.height,
                  tip=self.chain.tip_id, connected=len(update.connected),
                  disconnected=len(update.disconnected))
        # relay the new tip to everyone who may lack it (sync relays only its last block)
        self.peers.announce_blocks([(tip.block_id, tip.height, tip.cumulative_work)],
                                   exclude=origin if relay else None)
        for listener in list(self._tip_listeners):
            try:
                listener(header)
            except Exception:
                log.exception("node.tip_listener_failed")

    # -- serving peers ---------------------------------------------------------------------------

    def raw_block(self, block_id: bytes) -> bytes | None:
        """Stored canonical bytes of a block (served without decoding)."""
        relaying = self._relaying.get(block_id)
        if relaying is not None:
            return relaying
        raw: bytes | None = self.chain.db.get(BLOCK + block_id)
        return raw

    def _raw_header(self, block_id: bytes) -> bytes | None:
        raw: bytes | None = self.chain.db.get(HEADER + block_id)
        if raw is not None:
            return raw
        block = self.raw_block(block_id)
        return None if block is None else Block.decode(block).header.encode()

    def locator(self) -> list[bytes]:
        """Canonical ids: the last 10, then doubling steps back, then genesis."""
        height = self.chain.height
        heights: list[int] = []
        step = 1
        h = height
        while h > 0 and len(heights) < MAX_LOCATOR - 1:
            heights.append(h)
            if len(heights) >= 10:
                step *= 2
            h -= step
        heights.append(0)
        ids = [self.chain.block_id_at(x) for x in heights]
        return [i for i in ids if i is not None]

    def _headers_after(self, locator: list[bytes], limit: int) -> list[bytes]:
        start = 0
        for block_id in locator:
            if block_id in self.chain.tree:
                height = self.chain.tree.entry(block_id).height
                if self.chain.block_id_at(height) == block_id:
                    start = height
                    break
        out: list[bytes] = []
        for height in range(start + 1, min(start + limit, self.chain.height) + 1):
            canonical_id = self.chain.block_id_at(height)
            header = None if canonical_id is None else self._raw_header(canonical_id)
            if header is None:
                break
            out.append(header)
        return out

    async def headers_after(self, locator: list[bytes], *, limit: int) -> list[bytes]:
        """Our canonical headers after the newest locator entry on our chain (sync serving)."""
        return await asyncio.to_thread(self._headers_after, locator, limit)
