"""A raw p2p peer, for in-process nodes and node processes alike: it speaks the wire
protocol itself, so it can lie.

Like Bitcoin Core's ``P2PInterface``: it completes the real handshake (HELLO both ways,
Ed25519 AUTH over the node's nonce), then lets a test send any frame, including invalid
blocks, bad signatures and bytes that are not frames at all, and observe how the node
reacts (the REJECT reason it sends before closing, or a refused reconnection).

Two styles, both kept: `connect`/`receive`/`serve_until_closed` raise `PeerRefused` when the
node refuses or closes (the functional tests); `handshake`/`recv`/`expect_close` return the
REJECT frame or None instead and record what the node fetched (the in-process tests, which
build the peer from a started `Node` and may send a hand-made HELLO).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import nacl.signing

from consensus.block import Block
from node.node import Node
from node.p2p.protocol import (
    MAX_BLOCKS_PER_MESSAGE,
    MAX_FRAME,
    MAX_HEADERS,
    PROTOCOL_VERSION,
    Message,
    MsgType,
    auth_message,
    decode_frame,
    encode_frame,
    work_bytes,
)


class PeerRefused(Exception):
    """The node closed the connection during the handshake; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RawPeer:
    """One WebSocket connection to a node's /p2p: ``target`` is a started in-process `Node`
    or a node's base URL. The identity is ``key``, or derived from ``seed``, or random."""

    def __init__(self, target: Node | str, *, key: nacl.signing.SigningKey | None = None,
                 seed: bytes | None = None, network: str | None = None,
                 chain_id: int | None = None) -> None:
        self.node = None if isinstance(target, str) else target
        base = target if isinstance(target, str) else f"http://127.0.0.1:{target.port}"
        self.url = base.rstrip("/") + "/p2p"
        self.key = key or nacl.signing.SigningKey(seed or os.urandom(32))
        self.node_id = bytes(self.key.verify_key)
        self.network = network or (self.node.config.network if self.node else "dev")
        self.chain_id = chain_id or (self.node.chain.params.chain_id if self.node else 1337)
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.their_hello: Message | None = None
        self.received: list[Message] = []  # frames seen by `serve_until_closed`
        self.blocks: dict[bytes, bytes] = {}  # what `expect_close` serves on GETDATA
        self.getdata: list[list[bytes]] = []  # ids of every GETDATA `expect_close` answered
        self.headers: list[bytes] = []  # what `expect_close` answers GETHEADERS with

    @property
    def genesis(self) -> bytes:
        if self.node is not None:
            return self.node.chain.genesis_id
        assert self.their_hello is not None, "genesis unknown before the node's HELLO"
        return bytes(self.their_hello["genesis"])

    def hello(self, **overrides: Any) -> dict[str, Any]:
        """Our HELLO body, claiming genesis as our tip (``overrides`` replace any field)."""
        body: dict[str, Any] = {
            "version": PROTOCOL_VERSION, "network": self.network,
            "chain_id": self.chain_id, "genesis": self.genesis,
            "tip": self.genesis, "height": 0, "work": work_bytes(1),
            "node_id": self.node_id, "nonce": os.urandom(32), "listen": "",
            "time": int(time.time()), "agent": "rawpeer/test"}
        body.update(overrides)
        return body

    async def __aenter__(self) -> RawPeer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        self.ws = self.session = None

    async def connect(self, *, genesis: bytes | None = None, tip: Block | None = None,
                      work: int = 1, timeout: float = 10.0) -> Message:
        """Open the socket and complete the handshake; the node's HELLO.

        ``tip`` and ``work`` are what we claim as our best chain (default: genesis).
        Raises `PeerRefused` if the node answers with REJECT or closes instead.
        """
        await self.open(max_msg_size=0, autoping=False)
        async with asyncio.timeout(timeout):
            their = await self._recv_raw()
            if their.type != MsgType.HELLO:
                raise PeerRefused(f"expected HELLO, got {their.type.name}")
            self.their_hello = their
            genesis_id = genesis or bytes(their["genesis"])
            tip_id = genesis_id if tip is None else tip.header.block_id()
            height = 0 if tip is None else tip.header.height
            await self.send(MsgType.HELLO, {
                "version": PROTOCOL_VERSION, "network": self.network, "chain_id": self.chain_id,
                "genesis": genesis_id, "tip": tip_id, "height": height, "work": work_bytes(work),
                "node_id": self.node_id, "nonce": os.urandom(32), "listen": "",
                "time": int(time.time()), "agent": "rawpeer/test"})
            signature = self.key.sign(auth_message(nonce=bytes(their["nonce"]),
                                                   signer=self.node_id, genesis=genesis_id))
            await self.send(MsgType.AUTH, {"signature": bytes(signature.signature)})
            auth = await self._recv_raw()
            if auth.type != MsgType.AUTH:
                raise PeerRefused(f"expected AUTH, got {auth.type.name}")
        return their

    async def _recv_raw(self, timeout: float | None = None) -> Message:
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type == aiohttp.WSMsgType.BINARY:
            frame = decode_frame(msg.data)
            if frame.type == MsgType.REJECT:
                raise PeerRefused(str(frame["reason"]))
            return frame
        raise PeerRefused(f"closed ({msg.type.name}: {msg.extra})")

    async def receive(self, timeout: float | None = None) -> Message:
        """The next frame; `PeerRefused` when the node closes, `TimeoutError` after
        ``timeout``."""
        return await self._recv_raw(timeout)

    async def open(self, *, max_msg_size: int = 64 * 1024 * 1024,
                   autoping: bool = True) -> None:
        """Open the WebSocket (no handshake)."""
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.url, max_msg_size=max_msg_size,
                                                autoping=autoping)

    async def handshake(self, **hello: Any) -> Message:
        """Open, send our HELLO first (``hello`` overrides fields) and authenticate; the
        node's answer to our AUTH step, or its REJECT."""
        await self.open()
        await self.send(MsgType.HELLO, self.hello(**hello))
        their = await self.recv()
        assert their is not None
        if their.type == MsgType.REJECT:
            return their
        assert their.type == MsgType.HELLO
        self.their_hello = their
        sig = self.key.sign(auth_message(nonce=their["nonce"], signer=self.node_id,
                                         genesis=self.genesis)).signature
        await self.send(MsgType.AUTH, {"signature": bytes(sig)})
        auth = await self.recv()
        assert auth is not None
        return auth

    async def recv(self, timeout: float = 5.0) -> Message | None:
        """Next frame (REJECT included), or None when the node closed the connection."""
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.BINARY:
            return None
        return decode_frame(msg.data)

    async def expect_close(self, timeout: float = 10.0) -> str:
        """Serve GETHEADERS from ``headers`` and GETDATA from ``blocks`` until the node
        closes; its REJECT reason."""
        reason = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = await self.recv(timeout=deadline - time.monotonic())
            if msg is None:
                return reason
            if msg.type == MsgType.REJECT:
                reason = msg["reason"]
            elif msg.type == MsgType.GETHEADERS:
                await self.send(MsgType.HEADERS, {"req": msg["req"], "headers": self.headers})
            elif msg.type == MsgType.GETDATA:
                self.getdata.append(list(msg["ids"]))
                await self.send(MsgType.BLOCKS, {
                    "req": msg["req"],
                    "blocks": [self.blocks[i] for i in msg["ids"] if i in self.blocks],
                    "missing": [i for i in msg["ids"] if i not in self.blocks]})
        raise AssertionError("the node did not close the connection")

    async def send(self, msg_type: MsgType, body: Mapping[str, Any]) -> None:
        await self.send_raw(encode_frame(msg_type, body))

    async def send_raw(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(data)

    async def serve_until_closed(self, blocks: dict[bytes, Block] | None = None,
                                 timeout: float = 30.0) -> str:
        """Answer the node's requests from ``blocks`` until it closes; its REJECT reason.

        GETHEADERS gets our headers, GETDATA our blocks: whichever way the node fetches
        an announced block (gossip or headers-first sync), it receives what we want it to.
        """
        blocks = blocks or {}
        assert self.ws is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    msg = await self._recv_raw()
                    self.received.append(msg)
                    if msg.type == MsgType.PING:
                        await self.send(MsgType.PONG, {"nonce": msg["nonce"]})
                    elif msg.type == MsgType.GETHEADERS:
                        headers = [b.header.encode() for b in blocks.values()]
                        await self.send(MsgType.HEADERS, {"req": msg["req"], "headers": headers})
                    elif msg.type == MsgType.GETDATA:
                        found = [blocks[i].encode() for i in msg["ids"] if i in blocks]
                        missing = [i for i in msg["ids"] if i not in blocks]
                        await self.send(MsgType.BLOCKS, {"req": msg["req"], "blocks": found,
                                                         "missing": missing})
        except PeerRefused as exc:
            return exc.reason
        except TimeoutError:
            return "timeout: node kept the connection open"

    async def serve_chain(self, chain: list[Block], *, until: threading.Event,
                          timeout: float = 600.0) -> None:
        """Serve ``chain`` (genesis first) like an honest node until ``until`` is set:
        headers after the caller's locator (at most MAX_HEADERS), blocks by id (at most
        MAX_BLOCKS_PER_MESSAGE and one frame's worth per answer). Another thread may append
        to ``chain`` meanwhile (a miner extending it)."""
        assert self.ws is not None
        index: dict[bytes, int] = {}
        async with asyncio.timeout(timeout):
            while not until.is_set():
                for i in range(len(index), len(chain)):
                    index[chain[i].header.block_id()] = i
                try:
                    msg = await self._recv_raw(timeout=0.2)
                except TimeoutError:
                    continue
                if msg.type == MsgType.PING:
                    await self.send(MsgType.PONG, {"nonce": msg["nonce"]})
                elif msg.type == MsgType.GETHEADERS:
                    start = next((index[i] for i in msg["locator"] if i in index), 0)
                    headers = [b.header.encode() for b in chain[start + 1:start + 1 + MAX_HEADERS]]
                    await self.send(MsgType.HEADERS, {"req": msg["req"], "headers": headers})
                elif msg.type == MsgType.GETDATA:
                    found: list[bytes] = []
                    missing: list[bytes] = []
                    budget = MAX_FRAME - 64 * 1024
                    for block_id in msg["ids"]:
                        raw = chain[index[block_id]].encode() if block_id in index else None
                        if raw is None or len(found) >= MAX_BLOCKS_PER_MESSAGE \
                                or len(raw) > budget:
                            missing.append(block_id)
                            continue
                        budget -= len(raw) + 8
                        found.append(raw)
                    await self.send(MsgType.BLOCKS, {"req": msg["req"], "blocks": found,
                                                     "missing": missing})

    async def announce(self, block: Block) -> None:
        """INV for ``block`` (claiming a little more work than genesis)."""
        header = block.header
        await self.send(MsgType.INV, {"blocks": [[header.block_id(), header.height,
                                                  work_bytes(header.height + 1)]]})
