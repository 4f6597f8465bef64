"""In-process nodes on 127.0.0.1 (real aiohttp servers, real LevelDB) and a raw wire peer.

Shared by the p2p, sync and node tests. Blocks come from ``tests/framework/chain`` via
``tests/node/chainutil`` (one block builder).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import nacl.signing

from consensus.block import Block
from node.config import NodeConfig
from node.node import Node
from node.p2p.protocol import (
    PROTOCOL_VERSION,
    Message,
    MsgType,
    auth_message,
    decode_frame,
    encode_frame,
    work_bytes,
)


def node_config(tmp_path: Path, name: str, **overrides: Any) -> NodeConfig:
    values: dict[str, Any] = {"datadir": tmp_path / name, "port": 0, "ping_interval": 5.0,
                              "dial_interval": 0.2, "discover": False, "log_json": False}
    values.update(overrides)
    return NodeConfig(**values)


async def start_node(tmp_path: Path, name: str, **overrides: Any) -> Node:
    node = Node(node_config(tmp_path, name, **overrides))
    await node.start()
    return node


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def preload(node: Node, blocks: list[Block], *, now: int = 2_000_000_000) -> None:
    """Put blocks straight into a node's store (before it has peers)."""
    for block in blocks:
        node.chain.add_block(block, now=now)


class RawPeer:
    """A test client speaking the wire protocol by hand: it can send anything."""

    def __init__(self, node: Node, *, key: nacl.signing.SigningKey | None = None) -> None:
        self.node = node
        self.key = key or nacl.signing.SigningKey.generate()
        self.node_id = bytes(self.key.verify_key)
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.their_hello: Message | None = None
        self.blocks: dict[bytes, bytes] = {}  # what we serve on GETDATA
        self.getdata: list[list[bytes]] = []  # ids of every GETDATA the node sent us
        self.headers: list[bytes] = []  # canonical headers we answer GETHEADERS with (all)

    def hello(self, **overrides: Any) -> dict[str, Any]:
        chain = self.node.chain
        body: dict[str, Any] = {
            "version": PROTOCOL_VERSION, "network": self.node.config.network,
            "chain_id": chain.params.chain_id, "genesis": chain.genesis_id,
            "tip": chain.genesis_id, "height": 0, "work": work_bytes(1),
            "node_id": self.node_id, "nonce": os.urandom(32), "listen": "",
            "time": int(time.time()), "agent": "rawpeer"}
        body.update(overrides)
        return body

    async def open(self) -> None:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(
            f"http://127.0.0.1:{self.node.port}/p2p", max_msg_size=64 * 1024 * 1024)

    async def send(self, msg_type: MsgType, body: Mapping[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(encode_frame(msg_type, body))

    async def send_raw(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(data)

    async def recv(self, timeout: float = 5.0) -> Message | None:
        """Next frame, or None when the node closed the connection."""
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.BINARY:
            return None
        return decode_frame(msg.data)

    async def handshake(self, **hello: Any) -> Message:
        """Connect and authenticate; returns the node's answer to our AUTH step (or REJECT)."""
        await self.open()
        await self.send(MsgType.HELLO, self.hello(**hello))
        their = await self.recv()
        assert their is not None
        if their.type == MsgType.REJECT:
            return their
        assert their.type == MsgType.HELLO
        self.their_hello = their
        sig = self.key.sign(auth_message(nonce=their["nonce"], signer=self.node_id,
                                         genesis=self.node.chain.genesis_id)).signature
        await self.send(MsgType.AUTH, {"signature": bytes(sig)})
        auth = await self.recv()
        assert auth is not None
        return auth

    async def expect_close(self, timeout: float = 10.0) -> str:
        """Serve GETDATA from ``blocks`` until the node closes; returns the REJECT reason."""
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

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
