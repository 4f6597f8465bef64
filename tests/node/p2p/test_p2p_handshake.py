"""Handshake over real sockets: success and every rejection reason."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from consensus.genesis import dev_config
from node.node import Node
from node.p2p.manager import ConnectError
from node.p2p.policy import node_key
from node.p2p.protocol import MsgType, encode_frame
from tests.framework.nodes import node_config, start_node
from tests.framework.rawpeer import RawPeer
from tests.framework.util import wait_for


async def test_handshake_connects_both_sides(tmp_path: Path) -> None:
    a = await start_node(tmp_path, "a")
    b = await start_node(tmp_path, "b")
    try:
        peer_id = await a.peers.connect(b.listen_address)
        assert peer_id == b.node_id
        await wait_for(lambda: a.node_id in b.peers.peers, message="inbound registered")
        [info] = a.peers.info()
        assert info["node_id"] == b.node_id.hex() and info["outbound"] is True
        assert info["listen"] == b.listen_address
        assert b.peers.info()[0]["outbound"] is False
        # identity key persisted with mode 0600
        mode = stat.S_IMODE(os.stat(a.config.datadir / "node.key").st_mode)
        assert mode == 0o600
        # a duplicate connection to the same identity is refused
        with pytest.raises(ConnectError) as info_dup:
            await a.peers.connect(b.listen_address.replace("127.0.0.1", "localhost"))
        assert info_dup.value.reason == "duplicate"
        # disconnect by node id
        assert await a.peers.disconnect(b.node_id.hex())
        await wait_for(lambda: not a.peers.peers and not b.peers.peers, message="disconnect")
    finally:
        await a.stop()
        await b.stop()


async def test_refuses_self_and_wrong_network(tmp_path: Path) -> None:
    a = await start_node(tmp_path, "a")
    other_net = await start_node(tmp_path, "b", network="othernet")
    genesis_file = tmp_path / "g.json"
    genesis_file.write_text('{"chain_id": 7, "timestamp": 1, "target_block_time": 10,'
                            ' "initial_target": "0xffff", "unbonding_delay": 1}')
    other_genesis = await start_node(tmp_path, "c", genesis_path=genesis_file)
    try:
        with pytest.raises(ConnectError) as info:
            await a.peers.connect(a.listen_address)
        assert info.value.reason == "self"
        # our own address under another name reaches the handshake, which refuses "self"
        with pytest.raises(ConnectError) as info:
            await a.peers.connect(a.listen_address.replace("127.0.0.1", "localhost"))
        assert info.value.reason == "self"
        with pytest.raises(ConnectError) as info:
            await a.peers.connect(other_net.listen_address)
        assert info.value.reason == "network"
        with pytest.raises(ConnectError) as info:
            await a.peers.connect(other_genesis.listen_address)
        assert info.value.reason == "network"  # chain id differs before genesis is compared
        assert not a.peers.peers and not other_net.peers.peers
        # refused for the wrong network is not misbehaviour: no ban
        assert not a.peers.bans.entries()
    finally:
        for n in (a, other_net, other_genesis):
            await n.stop()


@pytest.mark.parametrize("override, reason", [
    ({"version": 99}, "version"),
    ({"genesis": bytes(32)}, "genesis"),
    ({"time": 1}, "clock"),
])
async def test_raw_hello_rejections(tmp_path: Path, override: dict[str, object],
                                    reason: str) -> None:
    node = await start_node(tmp_path, "n")
    raw = RawPeer(node)
    try:
        answer = await raw.handshake(**override)
        assert answer.type == MsgType.REJECT and answer["reason"] == reason
        assert not node.peers.peers
    finally:
        await raw.close()
        await node.stop()


async def test_bad_identity_signature_is_banned(tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n")
    raw = RawPeer(node)
    try:
        await raw.open()
        await raw.send(MsgType.HELLO, raw.hello())
        their = await raw.recv()
        assert their is not None and their.type == MsgType.HELLO
        # sign the wrong nonce
        sig = raw.key.sign(b"not the nonce").signature
        await raw.send(MsgType.AUTH, {"signature": bytes(sig)})
        assert await raw.expect_close() == "auth"
        assert node.peers.bans.is_banned(node_key(raw.node_id))
        again = RawPeer(node, key=raw.key)
        answer = await again.handshake()
        assert answer.type == MsgType.REJECT and answer["reason"] == "banned"
        await again.close()
    finally:
        await raw.close()
        await node.stop()


async def test_handshake_timeout_and_full(tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n", handshake_timeout=0.3, max_peers=1)
    silent = RawPeer(node)
    first = RawPeer(node)
    second = RawPeer(node)
    try:
        await silent.open()
        assert await silent.expect_close(timeout=5) == "timeout"
        assert (await first.handshake()).type != MsgType.REJECT
        await wait_for(lambda: len(node.peers) == 1)
        answer = await second.handshake()
        assert answer.type == MsgType.REJECT and answer["reason"] == "full"
    finally:
        for r in (silent, first, second):
            await r.close()
        await node.stop()


async def test_node_json_and_reopen_keeps_identity(tmp_path: Path) -> None:

    node = await start_node(tmp_path, "n")
    info = json.loads((node.config.datadir / "node.json").read_text())
    assert info["port"] == node.port and info["node_id"] == node.node_id.hex()
    assert info["api"] == f"http://127.0.0.1:{node.port}" and info["pid"] == os.getpid()
    first_id = node.node_id
    await node.stop()
    assert not (node.config.datadir / "node.json").exists()
    again = Node(node_config(tmp_path, "n"))
    assert again.node_id == first_id
    await again.stop()
    assert dev_config().params.chain_id == again.chain.params.chain_id


async def test_silent_peer_times_out(tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n", ping_interval=0.1, ping_timeout=0.4)
    raw = RawPeer(node)
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        await wait_for(lambda: raw.node_id in node.peers.peers)
        # the raw peer never answers PING: dropped for silence, not banned
        assert await raw.expect_close(timeout=5) == "timeout"
        await wait_for(lambda: raw.node_id not in node.peers.peers)
        assert not node.peers.bans.entries()
    finally:
        await raw.close()
        await node.stop()


async def test_send_queue_is_bounded_for_a_peer_that_never_reads(tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n")
    raw = RawPeer(node)
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        await wait_for(lambda: raw.node_id in node.peers.peers)
        peer = node.peers.peers[raw.node_id]
        frame = encode_frame(MsgType.INV, {"blocks": [[i.to_bytes(32, "big"), i, b"\x01"]
                                                      for i in range(1000)]})
        results = [peer.send_frame(frame) for _ in range(3000)]
        # the queue filled (the raw peer reads nothing): later frames were dropped, counted,
        # and sending never blocked the event loop
        assert not all(results) and peer.dropped_sends == results.count(False)
        assert peer.dropped_sends >= 3000 - 1024 - 1
    finally:
        await raw.close()
        await node.stop()
