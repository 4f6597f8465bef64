"""One authenticated peer connection over an aiohttp WebSocket (either direction).

Each peer has a bounded send queue drained by a writer task (a slow peer never blocks the
node: when its queue is full, gossip to it is dropped), a bounded receive queue drained by a
processing task (backpressure reaches the socket instead of growing memory), a pinger that
drops silent peers, and request/response matching by request id for sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypedDict

import aiohttp
import nacl.exceptions
import nacl.signing
from aiohttp import WSMsgType, web

from node.chain.lru import LruSet
from node.p2p.protocol import (
    MAX_FRAME,
    Message,
    MsgType,
    ProtocolError,
    auth_message,
    decode_frame,
    encode_frame,
    work_int,
)

WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse
SEND_QUEUE = 1024  # frames
RECV_QUEUE = 256  # frames
# ids remembered per peer and kind, blocks and transactions (what it has, so we do not send it
# back): ~0.75 MiB per set at lru.ENTRY_BYTES, 1.5 MiB per peer. One forgotten costs at most a
# frame the peer drops as already seen.
KNOWN_CACHE = 4_096
WS_MAX_MSG = 2 * MAX_FRAME  # aiohttp's cap; decode_frame applies the exact limit (and says so)
CLOSE_POLICY = 4000  # WebSocket close code: closed by policy (reason in the message)


class PeerClosed(Exception):
    """The connection ended; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class HandshakeRefused(Exception):
    """The handshake failed; ``reason`` is sent to the peer, ``ban`` says if it misbehaved."""

    def __init__(self, reason: str, message: str = "", *, ban: bool = False) -> None:
        self.reason = reason
        self.message = message
        self.ban = ban
        super().__init__(f"{reason}: {message}" if message else reason)


class PeerInfo(TypedDict):
    """One connection as the API shows it."""

    node_id: str
    address: str
    listen: str
    outbound: bool
    agent: str
    height: int
    tip: str
    connected_at: float
    ping_ms: float | None
    bytes_in: int
    bytes_out: int
    dropped_sends: int


# what frames of one type are routed to (see `PeerManager.register_handler`)
MessageHandler = Callable[["Peer", Message], Awaitable[None]]
# what a handler's exception or a bad frame is reported to (the misbehaviour policy)
ErrorHandler = Callable[["Peer", BaseException], Awaitable[None]]


class Peer:
    """A connection; becomes usable after `handshake`."""

    def __init__(self, ws: WebSocket, *, outbound: bool, host: str, port: int | None,
                 ping_interval: float, ping_timeout: float, request_timeout: float) -> None:
        self.ws = ws
        self.outbound = outbound
        self.host = host
        self.port = port
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.request_timeout = request_timeout
        self.node_id = b""
        self.listen = ""
        self.agent = ""
        self.best_tip = b""
        self.best_height = 0
        self.best_work = 0
        self.connected_at = time.time()
        self.last_recv = time.monotonic()
        self.ping_ms: float | None = None
        self.known_blocks = LruSet(KNOWN_CACHE)
        self.known_txs = LruSet(KNOWN_CACHE)
        self.bytes_in = 0
        self.bytes_out = 0
        self.dropped_sends = 0
        self.close_reason: str | None = None
        self._send_queue: asyncio.Queue[bytes | None] = asyncio.Queue(SEND_QUEUE)
        self._recv_queue: asyncio.Queue[Message | None] = asyncio.Queue(RECV_QUEUE)
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._req_ids = itertools.count(1)
        self._ping_nonce = 0
        self._ping_sent = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = asyncio.Event()

    # -- identity ------------------------------------------------------------------------------

    @property
    def id_hex(self) -> str:
        """The node id as hex (logs, the API)."""
        return self.node_id.hex()

    def update_best(self, *, tip: bytes, height: int, work: int) -> bool:
        """Record a better tip the peer told us about; True if it improved."""
        if work > self.best_work:
            self.best_tip, self.best_height, self.best_work = tip, height, work
            return True
        return False

    def info(self) -> PeerInfo:
        """A summary of the connection, for the API."""
        return {"node_id": self.id_hex, "address": f"{self.host}:{self.port}",
                "listen": self.listen, "outbound": self.outbound, "agent": self.agent,
                "height": self.best_height, "tip": self.best_tip.hex(),
                "connected_at": self.connected_at, "ping_ms": self.ping_ms,
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "dropped_sends": self.dropped_sends}

    # -- raw frames ----------------------------------------------------------------------------

    async def _send_now(self, msg_type: MsgType, body: Mapping[str, Any]) -> None:
        """Send a frame directly (handshake and goodbye: before or after the writer runs)."""
        frame = encode_frame(msg_type, body)
        self.bytes_out += len(frame)
        await self.ws.send_bytes(frame)

    async def _receive_one(self, timeout: float) -> Message:
        """One frame during the handshake (the processor is not running yet)."""
        msg = await self.ws.receive(timeout=timeout)
        return self._parse(msg)

    def _parse(self, msg: aiohttp.WSMessage) -> Message:
        """A WebSocket message as a checked frame; raises ProtocolError or PeerClosed."""
        if msg.type == WSMsgType.BINARY:
            data: bytes = msg.data
            self.bytes_in += len(data)
            self.last_recv = time.monotonic()
            return decode_frame(data)
        if msg.type == WSMsgType.TEXT:
            raise ProtocolError("malformed", "text frame")
        if msg.type == WSMsgType.ERROR:
            exc = msg.data
            if isinstance(exc, aiohttp.WebSocketError) and \
                    exc.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
                raise ProtocolError("oversized", "frame over the WebSocket limit")
            raise ProtocolError("malformed", f"websocket error {exc}")
        reason = "closed"
        if msg.type == WSMsgType.CLOSE and msg.extra:
            reason = f"closed: {msg.extra}"
        raise PeerClosed(reason)

    # -- handshake -----------------------------------------------------------------------------

    async def handshake(self, *, hello: Mapping[str, Any], key: nacl.signing.SigningKey,
                        genesis: bytes, check: Callable[[Peer, Message], None],
                        timeout: float) -> None:
        """HELLO both ways, ``check`` the peer's, then each signs the other's nonce.

        Raises `HandshakeRefused` (the caller bans if asked, then closes with the reason)
        or `PeerClosed`.
        """
        my_nonce = bytes(hello["nonce"])
        try:
            async with asyncio.timeout(timeout):
                await self._send_now(MsgType.HELLO, hello)
                their = await self._receive_one(timeout)
                if their.type == MsgType.REJECT:
                    raise PeerClosed(f"refused: {their['reason']}")
                if their.type != MsgType.HELLO:
                    raise HandshakeRefused("handshake", "expected HELLO", ban=True)
                self.node_id = bytes(their["node_id"])
                self.listen = str(their["listen"])
                self.agent = str(their["agent"])
                self.update_best(tip=their["tip"], height=their["height"],
                                 work=work_int(their["work"]))
                check(self, their)
                signer = bytes(key.verify_key)
                signature = key.sign(auth_message(nonce=their["nonce"], signer=signer,
                                                  genesis=genesis)).signature
                await self._send_now(MsgType.AUTH, {"signature": bytes(signature)})
                auth = await self._receive_one(timeout)
                if auth.type == MsgType.REJECT:
                    raise PeerClosed(f"refused: {auth['reason']}")
                if auth.type != MsgType.AUTH:
                    raise HandshakeRefused("handshake", "expected AUTH", ban=True)
                try:
                    nacl.signing.VerifyKey(self.node_id).verify(
                        auth_message(nonce=my_nonce, signer=self.node_id, genesis=genesis),
                        auth["signature"])
                except (nacl.exceptions.CryptoError, ValueError) as exc:
                    raise HandshakeRefused("auth", "bad identity signature", ban=True) from exc
        except TimeoutError as exc:
            await self.close("timeout", "handshake timed out")
            raise PeerClosed("handshake timeout") from exc
        except ProtocolError as exc:
            raise HandshakeRefused(f"frame.{exc.reason}", str(exc), ban=True) from exc

    # -- running -------------------------------------------------------------------------------

    async def run(self, dispatch: MessageHandler, on_error: ErrorHandler) -> str:
        """Serve the connection until it closes; returns the reason."""
        self._tasks = [asyncio.create_task(self._writer()),
                       asyncio.create_task(self._processor(dispatch, on_error)),
                       asyncio.create_task(self._pinger())]
        try:
            await self._receive_loop(on_error)
        finally:
            await self._shutdown()
        return self.close_reason or "closed"

    async def _receive_loop(self, on_error: ErrorHandler) -> None:
        """Read frames until the connection ends or breaks the protocol."""
        while not self._closed.is_set():
            try:
                msg = self._parse(await self.ws.receive())
            except PeerClosed as exc:
                self.close_reason = self.close_reason or exc.reason
                return
            except ProtocolError as exc:
                await on_error(self, exc)
                return
            if not await self._route(msg):
                return

    async def _route(self, msg: Message) -> bool:
        """Handle a frame the connection owns (keep-alive, answers, goodbye) at once, so a
        full processing queue never delays them; queue the rest. False: the peer left."""
        if msg.type == MsgType.PING:
            self.send(MsgType.PONG, {"nonce": msg["nonce"]})
        elif msg.type == MsgType.PONG:
            self._on_pong(msg)
        elif msg.type in (MsgType.HEADERS, MsgType.BLOCKS) and msg["req"] in self._pending:
            self._on_answer(msg)
        elif msg.type == MsgType.REJECT:
            self.close_reason = f"peer: {msg['reason']}"
            return False
        else:
            await self._recv_queue.put(msg)
        return True

    def _on_pong(self, msg: Message) -> None:
        """Measure the round trip of our last PING (stale answers are ignored)."""
        if msg["nonce"] == self._ping_nonce and self._ping_sent:
            self.ping_ms = (time.monotonic() - self._ping_sent) * 1e3

    def _on_answer(self, msg: Message) -> None:
        """Hand a HEADERS/BLOCKS answer to the `request` waiting on its id."""
        future = self._pending.pop(msg["req"])
        if not future.done():
            future.set_result(msg)

    async def _shutdown(self) -> None:
        """Close the socket, stop the tasks, and fail the requests still waiting."""
        await self.close(self.close_reason or "closed")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for future in self._pending.values():
            if not future.done():
                future.set_exception(PeerClosed(self.close_reason or "closed"))
        self._pending.clear()

    async def _writer(self) -> None:
        """Drain the send queue to the socket; a failed send ends the connection."""
        while True:
            frame = await self._send_queue.get()
            if frame is None:
                return
            try:
                await self.ws.send_bytes(frame)
            except Exception:  # any send failure ends the connection, never the node
                self.close_reason = self.close_reason or "send failed"
                self._closed.set()
                with contextlib.suppress(Exception):
                    await self.ws.close()
                return
            self.bytes_out += len(frame)

    async def _processor(self, dispatch: MessageHandler, on_error: ErrorHandler) -> None:
        """Hand queued frames to ``dispatch`` one at a time; errors go to ``on_error``."""
        while True:
            msg = await self._recv_queue.get()
            if msg is None:
                return
            try:
                await dispatch(self, msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # bad input must never kill the node
                await on_error(self, exc)

    async def _pinger(self) -> None:
        """PING at intervals; close a peer silent for longer than ``ping_timeout``."""
        while True:
            await asyncio.sleep(self.ping_interval)
            if time.monotonic() - self.last_recv > self.ping_timeout:
                await self.close("timeout", "no traffic")
                return
            self._ping_nonce = int.from_bytes(os.urandom(7), "big")
            self._ping_sent = time.monotonic()
            self.send(MsgType.PING, {"nonce": self._ping_nonce})

    # -- sending -------------------------------------------------------------------------------

    def send(self, msg_type: MsgType, body: Mapping[str, Any]) -> bool:
        """Queue a frame; False (and counted) when the peer's queue is full or closed."""
        if self._closed.is_set():
            return False
        return self.send_frame(encode_frame(msg_type, body))

    def send_frame(self, frame: bytes) -> bool:
        """Queue an already encoded frame (broadcasts encode once for all peers)."""
        if self._closed.is_set():
            return False
        try:
            self._send_queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped_sends += 1
            return False
        return True

    async def request(self, msg_type: MsgType, body: dict[str, Any],
                      timeout: float | None = None) -> Message:
        """Send a request with a fresh ``req`` id and wait for the answer with that id."""
        req = next(self._req_ids)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        try:
            if not self.send(msg_type, {**body, "req": req}):
                raise PeerClosed("send queue full or closed")
            async with asyncio.timeout(timeout or self.request_timeout):
                return await future
        finally:
            self._pending.pop(req, None)

    async def close(self, reason: str, message: str = "") -> None:
        """Tell the peer why (best effort) and close the socket."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.close_reason = self.close_reason or reason
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self._send_now(MsgType.REJECT,
                                     {"reason": reason[:64], "message": message[:512]})
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self.ws.close(code=CLOSE_POLICY, message=reason[:120].encode())
        with contextlib.suppress(asyncio.QueueFull):
            self._send_queue.put_nowait(None)
        with contextlib.suppress(asyncio.QueueFull):
            self._recv_queue.put_nowait(None)

    @property
    def closed(self) -> bool:
        """True once `close` ran (by us, the peer, or a failure)."""
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed."""
        await self._closed.wait()
