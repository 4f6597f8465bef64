"""Frames are routed by message type: other rooms register their handlers with the peer
manager, a handler's errors get the usual verdict, and a type nobody handles is ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import EncodingError
from node.p2p.peer import Peer
from node.p2p.policy import node_key
from node.p2p.protocol import Message, MsgType
from tests.framework.nodes import start_node
from tests.framework.rawpeer import RawPeer
from tests.framework.util import wait_for


async def test_register_handler_refuses_connection_frames_and_a_second_handler(
        tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n")

    async def handler(peer: Peer, msg: Message) -> None:
        return None

    try:
        for taken in (MsgType.PING, MsgType.HEADERS, MsgType.TX):
            with pytest.raises(ValueError):
                node.peers.register_handler(taken, handler)
        node.peers.register_handler(MsgType.SWARM, handler)
        with pytest.raises(ValueError):
            node.peers.register_handler(MsgType.SWARM, handler)
    finally:
        await node.stop()


async def test_a_registered_handler_gets_its_frames_and_its_errors_are_judged(
        tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n")
    got: list[tuple[bytes, str, bytes]] = []

    async def on_swarm(peer: Peer, msg: Message) -> None:
        got.append((peer.node_id, msg["kind"], msg["data"]))
        if msg["kind"] == "bad":
            raise EncodingError("not a swarm message")

    node.peers.register_handler(MsgType.SWARM, on_swarm)
    raw = RawPeer(node)
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        await raw.send(MsgType.SWARM, {"kind": "cap", "data": bytes(32)})
        await wait_for(lambda: got == [(raw.node_id, "cap", bytes(32))], message="handled")
        await raw.send(MsgType.SWARM, {"kind": "bad", "data": b""})
        await raw.expect_close()
        await wait_for(lambda: raw.node_id not in node.peers.peers, message="raw dropped")
        assert node.peers.bans.is_banned(node_key(raw.node_id))
        assert node.peers.misbehaviour[-1]["reason"] == "encoding"
    finally:
        await raw.close()
        await node.stop()


async def test_a_type_without_handler_is_ignored(tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n")  # the bare node: no swarm service
    raw = RawPeer(node)
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        await raw.send(MsgType.SWARM, {"kind": "cap", "data": bytes(32)})
        await wait_for(lambda: node.peers.received["SWARM"] == 1, message="routed")
        await raw.send(MsgType.PING, {"nonce": 7})
        pong = await raw.recv()
        while pong is not None and pong.type != MsgType.PONG:
            pong = await raw.recv()
        assert pong is not None and pong["nonce"] == 7
        assert raw.node_id in node.peers.peers and not node.peers.bans.entries()
    finally:
        await raw.close()
        await node.stop()
