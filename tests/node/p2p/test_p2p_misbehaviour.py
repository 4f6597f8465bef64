"""A raw peer sending bad input is disconnected and banned; the node keeps serving others."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from consensus.block import Block
from node.node import Node
from node.p2p.policy import node_key
from node.p2p.protocol import MAX_FRAME, MsgType, work_bytes
from tests.framework.chain import Chain, extend, make_block, new_chain, transfer
from tests.framework.nodes import start_node
from tests.framework.rawpeer import RawPeer
from tests.framework.util import wait_for


async def announce(raw: RawPeer, block: Block) -> None:
    raw.blocks[block.header.block_id()] = block.encode()
    await raw.send(MsgType.INV, {"blocks": [[block.header.block_id(), block.header.height,
                                             work_bytes(2)]]})


async def invalid_state_root(raw: RawPeer, sim: Chain) -> None:
    await announce(raw, make_block(sim, state_root=bytes(32)))


async def bad_pouw_certificate(raw: RawPeer, sim: Chain) -> None:
    good = make_block(sim)
    other = make_block(sim, timestamp=good.header.timestamp + 1)
    forged = dataclasses.replace(good.header, certificate=other.header.certificate)
    await announce(raw, Block(header=forged, transactions=good.transactions))


async def bad_signature_tx(raw: RawPeer, sim: Chain) -> None:
    tx = transfer(2, 0)
    sig = bytes([tx.signature[0] ^ 1]) + tx.signature[1:]
    await raw.send(MsgType.TX, {"tx": dataclasses.replace(tx, signature=sig).encode()})


async def malformed_block(raw: RawPeer, sim: Chain) -> None:
    block = make_block(sim)
    raw.blocks[block.header.block_id()] = block.encode()[:-7]  # truncated: not a block
    await raw.send(MsgType.INV, {"blocks": [[block.header.block_id(), 1, work_bytes(2)]]})


async def malformed_tx(raw: RawPeer, sim: Chain) -> None:
    await raw.send(MsgType.TX, {"tx": transfer(2, 0).encode()[:-3]})


async def garbage(raw: RawPeer, sim: Chain) -> None:
    await raw.send_raw(b"\xc1 this is not msgpack \x00\xff")


async def oversized_frame(raw: RawPeer, sim: Chain) -> None:
    await raw.send_raw(b"\x00" * (MAX_FRAME + 1000))


async def huge_frame(raw: RawPeer, sim: Chain) -> None:
    # beyond the WebSocket's own cap: the node cuts the connection before the frame ends
    with contextlib.suppress(ConnectionError):
        await raw.send_raw(b"\x00" * (3 * MAX_FRAME))


Attack = Callable[[RawPeer, Chain], Awaitable[None]]


@pytest.mark.parametrize("attack, reason", [
    (invalid_state_root, "state.root"),
    (bad_pouw_certificate, "certificate.commitment"),
    (bad_signature_tx, "tx.signature"),
    (malformed_block, "encoding"),
    (malformed_tx, "encoding"),
    (garbage, "frame.malformed"),
    (oversized_frame, "frame.oversized"),
    (huge_frame, "frame.oversized"),
])
async def test_reject_disconnects_and_bans(tmp_path: Path, attack: Attack, reason: str) -> None:
    node = await start_node(tmp_path, "n")
    honest = await start_node(tmp_path, "h")
    raw = RawPeer(node)
    sim = new_chain()
    try:
        await honest.peers.connect(node.listen_address)
        assert (await raw.handshake()).type == MsgType.AUTH
        await wait_for(lambda: len(node.peers) == 2)
        await attack(raw, sim)
        await raw.expect_close()
        await wait_for(lambda: raw.node_id not in node.peers.peers, message="raw dropped")
        assert node.peers.bans.is_banned(node_key(raw.node_id))
        assert node.peers.misbehaviour[-1]["reason"] == reason
        # the identity stays banned on reconnect
        again = RawPeer(node, key=raw.key)
        answer = await again.handshake()
        assert answer.type == MsgType.REJECT and answer["reason"] == "banned"
        await again.close()
        # nothing was stored, and the honest peer is still served
        assert node.chain.height == 0
        block = extend(sim)
        await node.submit_block(block)
        await wait_for(lambda: honest.chain.tip_id == block.header.block_id(),
                         message="honest peer still served")
        assert honest.node_id in node.peers.peers
    finally:
        await raw.close()
        await node.stop()
        await honest.stop()


async def test_ignore_duplicates_and_unrequested(tmp_path: Path) -> None:
    node: Node = await start_node(tmp_path, "n")
    raw = RawPeer(node)
    sim = new_chain()
    block = extend(sim)
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        await node.submit_block(block)
        # announcing a block we have, an unsolicited answer and a tx twice: all ignored
        await announce(raw, block)
        await raw.send(MsgType.BLOCKS, {"req": 999, "blocks": [block.encode()], "missing": []})
        tx = transfer(1, 0)
        await raw.send(MsgType.TX, {"tx": tx.encode()})
        await raw.send(MsgType.TX, {"tx": tx.encode()})
        await raw.send(MsgType.PING, {"nonce": 5})
        pong = await raw.recv()
        while pong is not None and pong.type != MsgType.PONG:
            pong = await raw.recv()
        assert pong is not None and pong["nonce"] == 5
        await wait_for(lambda: tx.id() in node.mempool)
        assert raw.node_id in node.peers.peers and not node.peers.bans.entries()
        assert node.peers.received["GETDATA"] == 0
    finally:
        await raw.close()
        await node.stop()
