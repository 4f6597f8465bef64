"""The Node surface other parts build on: hooks, status, submissions, stop."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from consensus.block import BlockHeader
from node.node import Node, NodeRejected
from node.p2p.policy import Verdict
from tests.framework.chain import extend, new_chain, transfer
from tests.framework.nodes import node_config


async def test_hooks_status_and_submissions(tmp_path: Path) -> None:
    node = Node(node_config(tmp_path, "n"))
    calls: list[str] = []

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"height": node.chain.height})

    class Recorder:
        async def start(self) -> None:
            calls.append("start")

        async def stop(self) -> None:
            calls.append("stop")

    node.app.router.add_get("/hello", hello)
    calls.append("route")
    node.services.append(Recorder())
    tips: list[BlockHeader] = []
    node.add_tip_listener(tips.append)
    await node.start()
    try:
        assert calls == ["route", "start"]
        async with ClientSession() as session, \
                session.get(f"http://127.0.0.1:{node.port}/hello") as response:
            assert (await response.json()) == {"height": 0}
        status = node.status()
        expected = {"network", "chain_id", "height", "tip", "peers", "syncing", "sync_progress",
                    "mining", "node_id", "listen"}
        assert expected <= set(status)
        assert status["network"] == "dev" and status["height"] == 0 and status["mining"] is None
        assert status["listen"] == f"127.0.0.1:{node.port}" and node.started_at > 0

        tx = transfer(1, 0)
        assert await node.submit_transaction(tx) == tx.id()
        with pytest.raises(NodeRejected) as info:
            await node.submit_transaction(tx)
        assert info.value.reason == "known" and info.value.verdict is Verdict.IGNORE
        forged = dataclasses.replace(transfer(2, 0), signature=bytes(64))
        with pytest.raises(NodeRejected) as info:
            await node.submit_transaction(forged)
        assert info.value.verdict is Verdict.REJECT

        sim = new_chain()
        block = extend(sim, [tx])
        update = await node.submit_block(block)
        assert len(update.connected) == 1 and tips[-1] == block.header
        assert tx.id() not in node.mempool
        bad = extend(sim)
        bad = dataclasses.replace(bad, header=dataclasses.replace(bad.header, height=7))
        with pytest.raises(NodeRejected):
            await node.submit_block(bad)
        assert node.chain.height == 1
    finally:
        await node.stop()
    assert calls[-1] == "stop"


async def test_signatures_verified_by_the_mempool_are_not_rechecked(tmp_path: Path) -> None:
    node = Node(node_config(tmp_path, "n"))
    await node.start()
    try:
        good = [transfer(i % 4, i // 4) for i in range(40)]
        for tx in good:
            await node.submit_transaction(tx)
        assert all(tx.id() in node.chain.verified_txs for tx in good)
        forged = dataclasses.replace(transfer(1, 99), signature=bytes(64))
        store = node.chain
        assert store.verify_signatures(good)
        # one unverified bad signature among remembered ones: the block is not vouched for,
        # whether the rest is checked inline (few) or in the pool (many)
        assert not store.verify_signatures([*good[:3], forged])
        assert not store.verify_signatures([*good, forged] + [transfer(2, n) for n in
                                                              range(40, 80)])
        # the id binds the signature: a forged copy of a remembered tx is not remembered
        twin = dataclasses.replace(good[0], signature=bytes(64))
        assert twin.id() not in store.verified_txs
        assert not store.verify_signatures([twin])
    finally:
        await node.stop()
