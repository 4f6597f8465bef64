"""The peer manager: accepts and dials connections, runs the handshake policy, routes
messages to handlers registered by type, gossips transactions and block announcements, serves
headers and blocks, keeps an address book (seeds + ADDR answers) and bans misbehaving peers.

Rate limits: each peer has a token bucket per rate-limited frame type (TX and SWARM,
``peer_tx_rate``/``peer_tx_burst`` and ``peer_swarm_rate``/``peer_swarm_burst`` in the
config; VOTE, `PEER_VOTE_RATE`/`PEER_VOTE_BURST`). A frame over the allowance is dropped
unread (counted in ``throttled``); a peer whose debt passes ``RATE_BAN_BURSTS`` bursts beyond
its allowance is banned (``rate.tx_flood`` / ``rate.swarm_flood`` / ``rate.vote_flood``).
Bans are kept in the node's LevelDB (`attach_store`, `policy.BanList.attach`).

It reaches the node only through `ChainHost` (node/p2p/host.py); other rooms (the swarm
service) add their frames with `PeerManager.register_handler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypedDict

import aiohttp
import msgpack
from aiohttp import web

from consensus.block import Block, BlockHeader
from consensus.tx import Transaction
from core.errors import ConsensusError, EncodingError
from node.chain.db import Database
from node.chain.lru import LruSet
from node.config import ConfigError, NodeConfig, parse_address
from node.logging import get_logger, log_event
from node.p2p.host import ChainHost
from node.p2p.peer import (
    WS_MAX_MSG,
    HandshakeRefused,
    MessageHandler,
    Peer,
    PeerClosed,
    PeerInfo,
    WebSocket,
)
from node.p2p.policy import (
    BanList,
    Judged,
    TokenBucket,
    Verdict,
    addr_key,
    classify,
    node_key,
)
from node.p2p.protocol import (
    MAX_ADDR,
    MAX_BLOCKS_PER_MESSAGE,
    MAX_FRAME,
    MAX_HEADERS,
    PROTOCOL_VERSION,
    Message,
    MsgType,
    ProtocolError,
    encode_frame,
    work_bytes,
    work_int,
)

log = get_logger("p2p")
MAX_CLOCK_SKEW = 30  # seconds: half the future-block limit (Hathor's rule)
AGENT = "pouwchain/0.1"
GOSSIP_FETCH_GAP = 8  # announcements further ahead than this are left to sync
# transaction ids remembered across peers (gossip dedup): over 3x the mempool's max_total,
# ~3 MiB at lru.ENTRY_BYTES. A forgotten id offered again is re-checked and dropped by the
# mempool (known, or a stale nonce: IGNORE, never a penalty).
SEEN_TXS = 16_384
MISBEHAVIOUR_KEPT = 100  # recent REJECTs kept for tests and the API
REDIAL_AFTER = 10.0  # seconds before an address that failed is dialed again
FIRST_DIAL_WAIT = 0.2  # seconds between dial rounds while we have no peer at all
ANSWER_HEADROOM = 64 * 1024  # bytes of a frame left for the envelope of HEADERS/BLOCKS
BLOCK_OVERHEAD = 8  # bytes of msgpack framing counted per block in a BLOCKS answer
HEADER_OVERHEAD = 4  # bytes of msgpack framing counted per header in a HEADERS answer
# frames the connection itself consumes (handshake, keep-alive, request answers): never routed
CONNECTION_FRAMES = frozenset({MsgType.HELLO, MsgType.AUTH, MsgType.PING, MsgType.PONG,
                               MsgType.REJECT, MsgType.HEADERS, MsgType.BLOCKS})

# a peer is banned once it has sent this many bursts beyond its rate-limited allowance
RATE_BAN_BURSTS = 4
# finality votes per peer: a validator votes once per epoch, so even a network of thousands
# of validators relays a few per second; the burst covers a checkpoint's wave of votes
PEER_VOTE_RATE = 100.0
PEER_VOTE_BURST = 2000.0

PeerListener = Callable[[Peer], None]


class Misbehaviour(TypedDict):
    """One REJECT: who, why, when (wall clock)."""

    peer: str
    reason: str
    time: float


def peek_header(raw: bytes) -> BlockHeader:
    """The header of a canonical block encoding without decoding its transactions (a block
    is ``[header fields, [transactions]]``); raises EncodingError on anything else."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, use_list=True,
                                max_buffer_size=len(raw) + 1)
    unpacker.feed(raw)
    try:
        if unpacker.read_array_header() != 2:
            raise EncodingError("block must be a 2-element array")
        fields = unpacker.unpack()
    except (ValueError, msgpack.OutOfData, msgpack.UnpackException) as exc:
        raise EncodingError(f"no block header: {type(exc).__name__}") from exc
    return BlockHeader.decode(msgpack.packb(fields, use_bin_type=True))


class ConnectError(ValueError):
    """Dialing a peer failed; ``reason`` is short and machine-readable."""

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}" if message else reason)


class PeerManager:
    """All peers of one node."""

    def __init__(self, host: ChainHost, config: NodeConfig) -> None:
        self.host = host
        self.config = config
        self.peers: dict[bytes, Peer] = {}
        self.bans = BanList(default_seconds=config.ban_seconds)
        self.addresses: OrderedDict[str, float] = OrderedDict()  # address -> last heard
        self.failed: dict[str, float] = {}  # address -> monotonic time of last failed dial
        self.seen_txs = LruSet(SEEN_TXS)
        self.requested_blocks: set[bytes] = set()
        self.misbehaviour: list[Misbehaviour] = []  # recent REJECTs, for tests and the API
        self.received: Counter[str] = Counter()  # frames handled, by type name (metrics)
        self.throttled: Counter[str] = Counter()  # frames dropped by a rate limit, by type
        # frame type -> (tokens per second, burst) for the per-peer token buckets
        self.rate_limits: dict[MsgType, tuple[float, float]] = {
            MsgType.TX: (config.peer_tx_rate, config.peer_tx_burst),
            MsgType.SWARM: (config.peer_swarm_rate, config.peer_swarm_burst),
            MsgType.VOTE: (PEER_VOTE_RATE, PEER_VOTE_BURST),
        }
        self._buckets: dict[tuple[bytes, MsgType], TokenBucket] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._dialing: set[str] = set()
        self._stopping = False
        # called with each newly connected peer (e.g. the swarm service announces its model)
        self.connect_listeners: list[PeerListener] = []
        self.disconnect_listeners: list[PeerListener] = []
        # called when a peer claims more work than it did (the syncer wakes up)
        self.better_tip_listeners: list[PeerListener] = []
        self._handlers: dict[MsgType, MessageHandler] = {
            MsgType.GETADDR: self._on_getaddr,
            MsgType.ADDR: self._on_addr,
            MsgType.TX: self._on_tx,
            MsgType.INV: self._on_inv,
            MsgType.GETDATA: self._on_getdata,
            MsgType.GETHEADERS: self._on_getheaders,
        }
        for seed in config.peers:
            self.add_address(seed)

    # -- wiring --------------------------------------------------------------------------------

    def register_handler(self, msg_type: MsgType, handler: MessageHandler) -> None:
        """Route frames of ``msg_type`` to ``handler(peer, msg)`` (e.g. the swarm service's
        SWARM frames). Its exceptions get the usual verdict (`policy.classify`); a type with
        no handler is ignored. Raises ValueError for a taken type or a connection frame."""
        if msg_type in CONNECTION_FRAMES:
            raise ValueError(f"{msg_type.name} frames are handled by the connection itself")
        if msg_type in self._handlers:
            raise ValueError(f"{msg_type.name} frames already have a handler")
        self._handlers[msg_type] = handler

    def add_connect_listener(self, listener: PeerListener) -> None:
        """``listener(peer)`` after each completed handshake."""
        self.connect_listeners.append(listener)

    def add_disconnect_listener(self, listener: PeerListener) -> None:
        """``listener(peer)`` after each connection ends."""
        self.disconnect_listeners.append(listener)

    def add_better_tip_listener(self, listener: PeerListener) -> None:
        """``listener(peer)`` when a peer announces more work than it claimed before."""
        self.better_tip_listeners.append(listener)

    def _notify(self, listeners: list[PeerListener], peer: Peer) -> None:
        """Call each listener; one that fails is logged, never stops the others."""
        for listener in list(listeners):
            try:
                listener(peer)
            except Exception:
                log.exception("p2p.listener_failed")

    def attach_store(self, store: Database) -> int:
        """Keep bans in ``store`` (the node's LevelDB) and restore the ones kept there; how
        many came back."""
        restored = self.bans.attach(store)
        if restored:
            log_event(log, "peer.bans_restored", count=restored)
        return restored

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def _book_path(self) -> Path:
        return self.config.datadir / "peers.json"

    def load_addresses(self) -> None:
        """Addresses remembered from the last run (so a restart needs no seeds)."""
        try:
            saved = json.loads(self._book_path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(saved, list):
            for address in saved[-MAX_ADDR:]:
                if isinstance(address, str):
                    self.add_address(address)

    def save_addresses(self) -> None:
        """Remember who we know (and who we are connected to) for the next start."""
        book = list(self.addresses)
        book += [a for a in self.connected_addresses() if a not in self.addresses]
        tmp = self._book_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(book[-MAX_ADDR:]))
        tmp.replace(self._book_path)

    async def start(self) -> None:
        """Open the HTTP session for dialing and start the dial loop."""
        self._session = aiohttp.ClientSession()
        if self.config.discover:
            self.load_addresses()
        self.spawn(self._dial_loop())

    async def stop(self) -> None:
        """Save the address book, cancel our tasks and close every peer."""
        with contextlib.suppress(OSError):
            self.save_addresses()
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(p.close("shutdown") for p in list(self.peers.values())),
                             return_exceptions=True)
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()

    def spawn(self, coro: Coroutine[object, object, None]) -> asyncio.Task[None]:
        """Run ``coro`` in the background; `stop` cancels it."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- address book --------------------------------------------------------------------------

    def add_address(self, address: str) -> bool:
        """Remember a dialable address (not our own); False if it does not parse."""
        try:
            parse_address(address)
        except ConfigError:
            return False
        if address == self.host.listen_address:
            return False
        self.addresses[address] = time.time()
        self.addresses.move_to_end(address)
        while len(self.addresses) > MAX_ADDR:
            self.addresses.popitem(last=False)
        return True

    def connected_addresses(self) -> set[str]:
        """Addresses of the peers we have (so the dial loop skips them)."""
        out = set()
        for peer in self.peers.values():
            if peer.listen:
                out.add(peer.listen)
            if peer.outbound:
                out.add(f"{peer.host}:{peer.port}")
        return out

    async def _dial_loop(self) -> None:
        """Keep ``target_outbound`` outbound peers, trying fresh addresses each round."""
        while not self._stopping:
            await asyncio.sleep(self.config.dial_interval if self.peers else FIRST_DIAL_WAIT)
            outbound = sum(1 for p in self.peers.values() if p.outbound)
            want = min(self.config.target_outbound, self.config.max_peers) - outbound
            if want <= 0 or len(self.peers) >= self.config.max_peers:
                continue
            connected = self.connected_addresses() | self._dialing
            now = time.monotonic()
            candidates = [a for a in self.addresses
                          if a not in connected and now - self.failed.get(a, -1e9) > REDIAL_AFTER
                          and not self.bans.is_banned(addr_key(*parse_address(a)))]
            random.shuffle(candidates)
            for address in candidates[:want]:
                self.spawn(self._try_connect(address))

    async def _try_connect(self, address: str) -> None:
        """Dial once; a failure marks the address for `REDIAL_AFTER` seconds."""
        try:
            await self.connect(address)
        except ConnectError:
            self.failed[address] = time.monotonic()

    # -- connecting ----------------------------------------------------------------------------

    async def connect(self, address: str) -> bytes:
        """Dial ``host:port`` and complete the handshake; returns the peer's node id.

        The connection then keeps running in the background. Raises `ConnectError`.
        """
        try:
            host, port = parse_address(address)
        except ConfigError as exc:
            raise ConnectError("address", str(exc)) from exc
        if address == self.host.listen_address:
            raise ConnectError("self", "that is our own address")
        if self.bans.is_banned(addr_key(host, port)):
            raise ConnectError("banned", address)
        if self._session is None:
            raise ConnectError("stopped", "peer manager not started")
        self._dialing.add(address)
        try:
            try:
                ws = await self._session.ws_connect(
                    f"http://{host}:{port}/p2p", max_msg_size=WS_MAX_MSG, autoping=False,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                    # aiohttp's connect timeout: the handshake has its own
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise ConnectError("unreachable", f"{address}: {exc}") from exc
            peer = self._new_peer(ws, outbound=True, host=host, port=port)
            try:
                await self._handshake(peer)
            except HandshakeRefused as exc:
                raise ConnectError(exc.reason, exc.message) from exc
            except PeerClosed as exc:
                raise ConnectError(exc.reason.removeprefix("refused: "), exc.reason) from exc
            self.add_address(address)
            self.spawn(self._serve(peer))
            return peer.node_id
        finally:
            self._dialing.discard(address)

    async def handle_inbound(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler of ``GET /p2p``: one inbound peer for the life of the request."""
        ws = web.WebSocketResponse(max_msg_size=WS_MAX_MSG, autoping=False)
        await ws.prepare(request)
        peername = request.transport.get_extra_info("peername") if request.transport else None
        host, port = (peername[0], int(peername[1])) if peername else ("?", None)
        peer = self._new_peer(ws, outbound=False, host=host, port=port)
        try:
            await self._handshake(peer)
        except (HandshakeRefused, PeerClosed):
            return ws
        await self._serve(peer)
        return ws

    def _new_peer(self, ws: WebSocket, *, outbound: bool, host: str, port: int | None) -> Peer:
        """A `Peer` over ``ws`` with our configured timeouts."""
        return Peer(ws, outbound=outbound, host=host, port=port,
                    ping_interval=self.config.ping_interval,
                    ping_timeout=self.config.ping_timeout,
                    request_timeout=self.config.request_timeout)

    def hello(self) -> dict[str, Any]:
        """Our HELLO: who we are, which chain, and how far it goes."""
        host = self.host
        tip = host.chain.tree.tip_entry
        return {"version": PROTOCOL_VERSION, "network": self.config.network,
                "chain_id": host.chain.params.chain_id, "genesis": host.chain.genesis_id,
                "tip": tip.block_id, "height": tip.height, "work": work_bytes(tip.cumulative_work),
                "node_id": host.node_id, "nonce": os.urandom(32), "listen": host.listen_address,
                "time": int(time.time()), "agent": AGENT}

    async def _handshake(self, peer: Peer) -> None:
        """Run the handshake and, if it holds, add the peer and tell the listeners."""
        try:
            await peer.handshake(hello=self.hello(), key=self.host.identity,
                                 genesis=self.host.chain.genesis_id, check=self._check_hello,
                                 timeout=self.config.handshake_timeout)
        except HandshakeRefused as exc:
            log_event(log, "peer.refused", level=logging.WARNING, reason=exc.reason,
                      peer=peer.node_id, address=f"{peer.host}:{peer.port}", detail=exc.message)
            if exc.ban:
                self._ban(peer, exc.reason)
            await peer.close(exc.reason, exc.message)
            raise
        except PeerClosed as exc:
            log_event(log, "peer.handshake_closed", reason=exc.reason,
                      address=f"{peer.host}:{peer.port}")
            raise
        # the duplicate check again: two handshakes with one identity may have raced
        if peer.node_id in self.peers:
            await peer.close("duplicate", "already connected to this node id")
            raise HandshakeRefused("duplicate")
        self.peers[peer.node_id] = peer
        if peer.listen and self.config.discover:
            self.add_address(peer.listen)
        log_event(log, "peer.connected", peer=peer.node_id, address=f"{peer.host}:{peer.port}",
                  outbound=peer.outbound, height=peer.best_height)
        if self.config.discover:
            peer.send(MsgType.GETADDR, {})
        self._notify(self.connect_listeners, peer)

    def _check_hello(self, peer: Peer, hello: Message) -> None:
        """Handshake policy; raises HandshakeRefused with the reason to send."""
        chain = self.host.chain
        if hello["version"] != PROTOCOL_VERSION:
            raise HandshakeRefused("version", f"version {hello['version']} != {PROTOCOL_VERSION}")
        if hello["network"] != self.config.network or \
                hello["chain_id"] != chain.params.chain_id:
            raise HandshakeRefused("network", f"network {hello['network']}/{hello['chain_id']}")
        if hello["genesis"] != chain.genesis_id:
            raise HandshakeRefused("genesis", "different genesis block")
        if hello["node_id"] == self.host.node_id:
            if hello["listen"]:
                self.addresses.pop(str(hello["listen"]), None)
            raise HandshakeRefused("self", "connected to ourselves")
        if self.bans.is_banned(node_key(hello["node_id"])) or \
                self.bans.is_banned(addr_key(peer.host, peer.port)):
            raise HandshakeRefused("banned")
        if hello["node_id"] in self.peers:
            raise HandshakeRefused("duplicate", "already connected to this node id")
        if len(self.peers) >= self.config.max_peers:
            raise HandshakeRefused("full", "too many peers")
        if abs(int(hello["time"]) - time.time()) > MAX_CLOCK_SKEW:
            raise HandshakeRefused("clock", "clock skew too large")

    async def _serve(self, peer: Peer) -> None:
        """Run an authenticated peer until it closes, then forget it."""
        try:
            reason = await peer.run(self._dispatch, self._on_error)
        finally:
            if self.peers.get(peer.node_id) is peer:
                del self.peers[peer.node_id]
                for msg_type in self.rate_limits:
                    self._buckets.pop((peer.node_id, msg_type), None)
        log_event(log, "peer.disconnected", peer=peer.node_id, reason=reason)
        self._notify(self.disconnect_listeners, peer)

    # -- public API ----------------------------------------------------------------------------

    def get(self, node_id: bytes | str) -> Peer | None:
        """The connected peer with this node id (bytes or hex), or None."""
        key = bytes.fromhex(node_id) if isinstance(node_id, str) else node_id
        return self.peers.get(key)

    async def disconnect(self, node_id: bytes | str, *, reason: str = "requested") -> bool:
        """Close a peer by node id; False if it is not connected."""
        peer = self.get(node_id)
        if peer is None:
            return False
        await peer.close(reason)
        return True

    def info(self) -> list[PeerInfo]:
        """One summary per peer, for the API."""
        return [p.info() for p in self.peers.values()]

    def __len__(self) -> int:
        return len(self.peers)

    def ban(self, node_id: bytes, *, reason: str, seconds: float | None = None) -> None:
        """Ban a node id (the API's manual ban); a connected peer is not closed by this."""
        self.bans.ban([node_key(node_id)], reason=reason, seconds=seconds)

    def _ban(self, peer: Peer, reason: str) -> None:
        """Ban a misbehaving peer by address, node id and listen address, and record why."""
        keys = [addr_key(peer.host, peer.port)]
        if peer.node_id:
            keys.append(node_key(peer.node_id))
        if peer.listen:
            with contextlib.suppress(ConfigError):
                keys.append(addr_key(*parse_address(peer.listen)))
        self.bans.ban(keys, reason=reason)
        self.misbehaviour.append({"peer": peer.id_hex, "reason": reason, "time": time.time()})
        del self.misbehaviour[:-MISBEHAVIOUR_KEPT]
        log_event(log, "peer.banned", level=logging.WARNING, peer=peer.node_id, reason=reason,
                  address=f"{peer.host}:{peer.port}")

    async def punish(self, peer: Peer, exc: BaseException) -> Verdict:
        """Apply the policy to an error caused by ``peer``'s input."""
        verdict, reason = classify(exc)
        if verdict is Verdict.REJECT:
            self._ban(peer, reason)
            await peer.close(reason, str(exc)[:200])
        else:
            log_event(log, "peer.ignored", level=logging.DEBUG, peer=peer.node_id, reason=reason)
        return verdict

    async def _on_error(self, peer: Peer, exc: BaseException) -> None:
        """A handler or frame failed: unexpected errors are logged, then judged."""
        if not isinstance(exc, (ConsensusError, ProtocolError, ValueError)):
            log.exception("p2p.handler_error", exc_info=exc)
        await self.punish(peer, exc)

    # -- gossip out ----------------------------------------------------------------------------

    def broadcast_tx(self, tx: Transaction, *, raw: bytes, tx_id: bytes,
                     exclude: Peer | None = None) -> int:
        """Gossip a transaction to each peer not known to have it; returns frames queued."""
        sent = 0
        frame: bytes | None = None
        for peer in list(self.peers.values()):
            if peer is exclude or tx_id in peer.known_txs:
                continue
            peer.known_txs.add(tx_id)
            frame = frame or encode_frame(MsgType.TX, {"tx": raw})
            sent += peer.send_frame(frame)
        return sent

    def announce_blocks(self, items: Iterable[tuple[bytes, int, int]], *,
                        exclude: Peer | None = None, early: bool = False) -> int:
        """Send INV [id, height, cumulative work] to every peer that may not have them.

        ``early``: we checked only header and PoUW proof so far (see `Node.submit_block`).
        """
        items = list(items)
        sent = 0
        for peer in list(self.peers.values()):
            if peer is exclude:
                continue
            fresh = [[bid, h, work_bytes(w)] for bid, h, w in items if bid not in peer.known_blocks]
            if not fresh:
                continue
            for bid, _, _ in items:
                peer.known_blocks.add(bid)
            body: dict[str, Any] = {"blocks": fresh}
            if early:
                body["early"] = True
            sent += peer.send(MsgType.INV, body)
        return sent

    def broadcast_swarm(self, kind: str, data: bytes, *, exclude: Peer | None = None) -> int:
        """Send one swarm message to every peer but ``exclude`` (dedup is the swarm's job)."""
        frame = encode_frame(MsgType.SWARM, {"kind": kind, "data": data})
        return sum(peer.send_frame(frame) for peer in list(self.peers.values())
                   if peer is not exclude)

    def broadcast_vote(self, raw: bytes, *, exclude: Peer | None = None) -> int:
        """Send one finality vote (canonical bytes) to every peer but ``exclude`` (dedup is
        the finality service's seen-cache)."""
        frame = encode_frame(MsgType.VOTE, {"vote": raw})
        return sum(peer.send_frame(frame) for peer in list(self.peers.values())
                   if peer is not exclude)

    # -- messages in ---------------------------------------------------------------------------

    async def _dispatch(self, peer: Peer, msg: Message) -> None:
        """Count the frame and route it to the handler registered for its type (unless the
        peer is over its rate limit for that type)."""
        self.received[msg.type.name] += 1
        if msg.type in self.rate_limits and not await self._within_rate(peer, msg.type):
            return
        handler = self._handlers.get(msg.type)
        if handler is None:
            return  # e.g. an unsolicited HEADERS/BLOCKS answer, or SWARM without the service
        await handler(peer, msg)

    async def _within_rate(self, peer: Peer, msg_type: MsgType) -> bool:
        """Spend one of the peer's tokens for ``msg_type``; False: drop the frame (and ban
        a peer that keeps flooding far past its allowance)."""
        rate, burst = self.rate_limits[msg_type]
        if rate <= 0:
            return True  # unlimited
        key = (peer.node_id, msg_type)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, burst)
        if bucket.take():
            return True
        self.throttled[msg_type.name] += 1
        if bucket.overdraft > RATE_BAN_BURSTS * burst:
            await self.punish(peer, Judged(f"rate.{msg_type.name.lower()}_flood",
                                           f"over {rate:g}/s (burst {burst:g})"))
        return False

    async def _on_getaddr(self, peer: Peer, msg: Message) -> None:
        """Answer with the addresses we are connected to, then those we heard of."""
        addrs = list(self.connected_addresses() - {peer.listen})
        addrs += [a for a in reversed(self.addresses) if a not in addrs and a != peer.listen]
        peer.send(MsgType.ADDR, {"addrs": addrs[:MAX_ADDR]})

    async def _on_addr(self, peer: Peer, msg: Message) -> None:
        """Learn the addresses a peer sent (only when discovery is on)."""
        if self.config.discover:
            for address in msg["addrs"]:
                self.add_address(address)

    async def _on_tx(self, peer: Peer, msg: Message) -> None:
        """Admit a gossiped transaction once; a rejection is judged by the policy."""
        raw: bytes = msg["tx"]
        tx = Transaction.decode(raw)
        tx_id = tx.id()
        peer.known_txs.add(tx_id)
        if not self.seen_txs.add(tx_id):
            return  # IGNORE: duplicate
        try:
            await self.host.submit_transaction(tx, origin=peer)
        except ValueError as exc:
            cause = exc.__cause__ or exc
            # a known or underpaying transaction stays seen: asking again cannot help
            final = isinstance(exc, Judged) and exc.reason in ("known", "fee_too_low")
            if await self.punish(peer, cause) is Verdict.IGNORE and not final:
                # e.g. a nonce gap (its predecessor is still on its way): may be fine later
                self.seen_txs.discard(tx_id)

    async def _on_inv(self, peer: Peer, msg: Message) -> None:
        """Note what the peer has; fetch new blocks near our tip, leave far ones to sync."""
        chain = self.host.chain
        wanted: list[bytes] = []
        our_height = chain.tree.tip_entry.height
        for block_id, height, work in msg["blocks"]:
            peer.known_blocks.add(block_id)
            if peer.update_best(tip=block_id, height=height, work=work_int(work)):
                self._notify(self.better_tip_listeners, peer)
            if chain.has_block(block_id) or block_id in self.requested_blocks:
                continue
            if height > our_height + GOSSIP_FETCH_GAP:
                continue  # far ahead: headers-first sync fetches it
            wanted.append(block_id)
        if wanted:
            self.spawn(self.fetch_blocks(peer, wanted, early=bool(msg.get("early", False))))

    async def fetch_blocks(self, peer: Peer, ids: list[bytes], *, early: bool = False,
                           retry: bool = True) -> None:
        """Announce-then-fetch: GETDATA the ids, submit what comes back.

        Ids the peer did not serve are asked once from another peer that announced them
        (their INVs were dropped while this request was in flight).
        """
        self.requested_blocks.update(ids)
        missing: list[bytes] = list(ids)
        try:
            try:
                answer = await peer.request(MsgType.GETDATA, {"ids": ids})
            except (PeerClosed, TimeoutError):
                return
            missing = [bid for bid in answer["missing"] if bid in ids]
            for raw in answer["blocks"]:
                if peer.closed or not await self._submit_fetched(peer, raw, ids, early=early):
                    return
        finally:
            self.requested_blocks.difference_update(ids)
            if retry and missing and not self._stopping:
                self._fetch_elsewhere(peer, missing)

    async def _submit_fetched(self, peer: Peer, raw: bytes, ids: list[bytes], *,
                              early: bool) -> bool:
        """Relay one fetched block on its header and proof alone, then decode and submit it.

        False: stop reading the answer (the peer was punished, or the body of an early relay
        was bad, which its relayer could not know)."""
        try:
            header = peek_header(raw)
            block_id = header.block_id()
            if block_id not in ids:
                return True  # unrequested: IGNORE
            await self.host.relay_early(header, raw, origin=peer)
            try:
                block = await asyncio.to_thread(Block.decode, raw)
            except (ValueError, ConsensusError):
                self.host.drop_relay(block_id)
                if early:
                    return False  # an early relayer could not know the body was bad
                raise
            await self.host.submit_block(block, origin=peer, raw=raw,
                                         origin_checked_state=not early)
        except (ValueError, ConsensusError) as exc:
            # a NodeRejected carries the node's verdict (early relays are excused)
            await self.punish(peer, exc)
            return False
        return True

    def _fetch_elsewhere(self, peer: Peer, missing: list[bytes]) -> None:
        """Ask once, from another peer that announced it, for each id ``peer`` did not serve."""
        others = [p for p in self.peers.values() if p is not peer and not p.closed]
        for bid in missing:
            holder = next((p for p in others if bid in p.known_blocks), None)
            if holder is not None and not self.host.chain.has_block(bid):
                self.spawn(self.fetch_blocks(holder, [bid], retry=False))

    async def _on_getdata(self, peer: Peer, msg: Message) -> None:
        """Serve stored blocks, up to the frame budget; the rest are listed missing."""
        blocks: list[bytes] = []
        missing: list[bytes] = []
        budget = MAX_FRAME - ANSWER_HEADROOM
        for block_id in msg["ids"]:
            raw = None if len(blocks) >= MAX_BLOCKS_PER_MESSAGE else \
                self.host.raw_block(block_id)
            if raw is None or len(raw) > budget:
                missing.append(block_id)
                continue
            budget -= len(raw) + BLOCK_OVERHEAD
            blocks.append(raw)
            peer.known_blocks.add(block_id)
        peer.send(MsgType.BLOCKS, {"req": msg["req"], "blocks": blocks, "missing": missing})

    async def _on_getheaders(self, peer: Peer, msg: Message) -> None:
        """Serve canonical headers after the locator, up to the frame budget."""
        headers = await self.host.headers_after(list(msg["locator"]), limit=MAX_HEADERS)
        budget = MAX_FRAME - ANSWER_HEADROOM
        out: list[bytes] = []
        for raw in headers:
            budget -= len(raw) + HEADER_OVERHEAD
            if budget < 0:
                break
            out.append(raw)
        peer.send(MsgType.HEADERS, {"req": msg["req"], "headers": out})

