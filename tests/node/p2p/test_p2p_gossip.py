"""Gossip between real in-process nodes: transactions, blocks, orphans, no echo storms."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from consensus.block import Block, BlockHeader
from node.node import Node, NodeRejected
from node.p2p.protocol import MsgType, work_bytes
from tests.framework.chain import extend, make_block, new_chain, transfer
from tests.framework.nodes import start_node
from tests.framework.rawpeer import RawPeer
from tests.framework.util import DEFAULT_TIMEOUT, wait_for


async def test_tx_and_block_propagate_along_a_line(tmp_path: Path) -> None:
    a = await start_node(tmp_path, "a")
    b = await start_node(tmp_path, "b")
    c = await start_node(tmp_path, "c")
    tips: list[BlockHeader] = []
    c.add_tip_listener(tips.append)
    try:
        await a.peers.connect(b.listen_address)
        await c.peers.connect(b.listen_address)
        await wait_for(lambda: len(b.peers) == 2)
        tx = transfer(1, 0, amount=5)
        tx_id = await a.submit_transaction(tx)
        await wait_for(lambda: tx_id in c.mempool, message="tx at c")
        assert tx_id in b.mempool
        # gossip never came back to its origin, and nobody got it twice
        await asyncio.sleep(0.2)
        assert a.peers.received["TX"] == 0
        assert b.peers.received["TX"] == 1 and c.peers.received["TX"] == 1

        sim = new_chain()
        block = extend(sim, [tx])
        update = await a.submit_block(block)
        assert [blk.header.block_id() for blk in update.connected] == [block.header.block_id()]
        # b relays the block on its header and proof before it connects it (early relay), so
        # c may connect it first: wait for every node, not for the end of the line alone
        block_id = block.header.block_id()
        await wait_for(lambda: [n.chain.tip_id for n in (a, b, c)] == [block_id] * 3,
                       message="block at a, b and c")
        # the confirmed transaction left every mempool; c's miner hook saw the new tip
        await wait_for(lambda: tx_id not in c.mempool and tx_id not in b.mempool)
        await wait_for(lambda: bool(tips) and tips[-1].block_id() == block_id,
                       message="c's tip listener")
        # announced, then fetched: each relay fetched the block exactly once
        assert b.peers.received["INV"] >= 1 and a.peers.received["GETDATA"] == 1
        # a duplicate submission changes nothing
        again = await c.submit_block(block)
        assert not again.connected
    finally:
        for n in (a, b, c):
            await n.stop()


async def test_orphan_parent_is_fetched(tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n")
    raw = RawPeer(node)
    sim = new_chain()
    b1 = extend(sim)
    b2 = extend(sim)
    raw.blocks = {b.header.block_id(): b.encode() for b in (b1, b2)}
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        # announce only the child: the node fetches it, finds it an orphan, fetches the parent
        await raw.send(MsgType.INV, {"blocks": [[b2.header.block_id(), 2, work_bytes(3)]]})
        serving = asyncio.create_task(raw.expect_close(timeout=10))
        await wait_for(lambda: node.chain.height == 2, message="orphan connected")
        assert node.chain.tip_id == b2.header.block_id()
        assert raw.node_id in node.peers.peers  # unknown parents are not misbehaviour
        serving.cancel()
    finally:
        await raw.close()
        await node.stop()


async def test_orphan_chase_stops_after_one_parent(tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n")
    raw = RawPeer(node)
    sim = new_chain()
    chain = [extend(sim) for _ in range(5)]
    raw.blocks = {b.header.block_id(): b.encode() for b in chain}
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        tip = chain[-1].header
        await raw.send(MsgType.INV, {"blocks": [[tip.block_id(), tip.height, work_bytes(6)]]})
        serving = asyncio.create_task(raw.expect_close(timeout=10))
        await wait_for(lambda: len(raw.getdata) >= 2, message="tip and its parent fetched")
        await asyncio.sleep(0.3)
        # the tip, then its parent; the parent is an orphan too: no walk back block by block
        assert raw.getdata == [[tip.block_id()], [tip.parent_hash]]
        assert node.chain.height == 0
        serving.cancel()
    finally:
        await raw.close()
        await node.stop()


def hold_connecting(node: Node, block_id: bytes) -> threading.Event:
    """Hold ``node``'s chain thread when it is about to connect ``block_id``, until the
    returned event is set: its early relay (header and proof, checked before) goes out, and
    its relay cache serves the block, for as long as the test needs."""
    release = threading.Event()
    connect = node._add_blocks

    def held(blocks: list[Block]) -> Any:
        if any(b.header.block_id() == block_id for b in blocks):
            release.wait(DEFAULT_TIMEOUT)
        return connect(blocks)

    node._add_blocks = held  # type: ignore[method-assign]
    return release


async def test_early_relay_of_a_block_that_fails_late_bans_nobody(tmp_path: Path) -> None:
    a = await start_node(tmp_path, "a")
    b = await start_node(tmp_path, "b")
    c = await start_node(tmp_path, "c")
    releases: list[threading.Event] = []
    try:
        await b.peers.connect(a.listen_address)
        await c.peers.connect(b.listen_address)
        await wait_for(lambda: len(b.peers) == 2)
        sim = new_chain()
        # valid header and PoUW proof, some transactions, a state root that is a lie: a
        # announces it early (proof checked), then its own full validation fails
        txs = [transfer(i % 4, i // 4) for i in range(40)]
        bad = make_block(sim, txs, state_root=bytes(32))
        bad_id = bad.header.block_id()
        # a and b each validate it only once the next node along the line has (events, not
        # timing): b fetches it from a's relay cache, relays it early in turn, and c fetches
        # it from b's
        releases += [hold_connecting(a, bad_id), hold_connecting(b, bad_id)]
        submitted = asyncio.create_task(a.submit_block(bad))
        await wait_for(lambda: c.chain.tree.is_invalid(bad_id), message="c rejected it")
        releases[1].set()
        await wait_for(lambda: b.chain.tree.is_invalid(bad_id), message="b rejected it")
        releases[0].set()
        with pytest.raises(NodeRejected) as info:
            await submitted
        assert info.value.reason == "state.root"
        assert a.chain.height == b.chain.height == c.chain.height == 0
        # a good block afterwards goes through, announced early along the line
        good = extend(sim)
        await a.submit_block(good)
        await wait_for(lambda: c.chain.tip_id == good.header.block_id())
        # and whoever fetched the bad one did not ban the honest relayer that sent it
        assert a.node_id in b.peers.peers and b.node_id in c.peers.peers
        assert not b.peers.bans.entries() and not c.peers.bans.entries()
    finally:
        for release in releases:
            release.set()
        for n in (a, b, c):
            await n.stop()


async def test_block_a_peer_cannot_serve_is_fetched_from_another_announcer(
        tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n")
    first, second = RawPeer(node), RawPeer(node)
    sim = new_chain()
    block = extend(sim)
    block_id = block.header.block_id()
    inv = {"blocks": [[block_id, 1, work_bytes(2)]]}
    try:
        assert (await first.handshake()).type == MsgType.AUTH
        assert (await second.handshake()).type == MsgType.AUTH
        await first.send(MsgType.INV, inv)
        request = await first.recv()
        while request is not None and request.type != MsgType.GETDATA:
            request = await first.recv()
        assert request is not None
        # while the first request is in flight, the second peer announces the same block:
        # not fetched twice at once
        await second.send(MsgType.INV, inv)
        await asyncio.sleep(0.1)
        # the first peer cannot serve it after all: the node asks the other announcer
        await first.send(MsgType.BLOCKS, {"req": request["req"], "blocks": [],
                                          "missing": [block_id]})
        second.blocks = {block_id: block.encode()}
        serving = asyncio.create_task(second.expect_close(timeout=10))
        await wait_for(lambda: node.chain.tip_id == block_id, message="fetched from second")
        assert second.getdata == [[block_id]]
        serving.cancel()
    finally:
        await first.close()
        await second.close()
        await node.stop()


async def test_tx_ahead_of_its_predecessor_is_accepted_when_sent_again(
        tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n")
    raw = RawPeer(node)
    first, second = transfer(1, 0), transfer(1, 1)
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        await raw.send(MsgType.TX, {"tx": second.encode()})  # nonce gap: ignored, not banned
        await raw.send(MsgType.TX, {"tx": first.encode()})
        await wait_for(lambda: first.id() in node.mempool)
        assert second.id() not in node.mempool
        await raw.send(MsgType.TX, {"tx": second.encode()})  # not "seen" forever
        await wait_for(lambda: second.id() in node.mempool, message="re-sent tx admitted")
        assert raw.node_id in node.peers.peers
    finally:
        await raw.close()
        await node.stop()
