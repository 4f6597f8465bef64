"""Bans kept in LevelDB, per-peer rate limits, and the relay fee at p2p: a below-fee
transaction is dropped without a penalty, a flooding peer is throttled and then banned."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from node.chain.db import Database
from node.config import ConfigError
from node.node import Node
from node.p2p.policy import BAN_PREFIX, BanList, TokenBucket, node_key
from node.p2p.protocol import MsgType
from tests.framework.chain import transfer
from tests.framework.nodes import node_config, start_node, wired
from tests.framework.rawpeer import RawPeer
from tests.framework.util import wait_for


def test_bans_outlive_the_process(tmp_path: Path) -> None:
    with Database(tmp_path / "db") as db:
        bans = BanList(default_seconds=3600)
        assert bans.attach(db) == 0
        bans.ban(["id:aa", "addr:1.2.3.4"], reason="tx.signature")
        bans.ban(["id:bb"], reason="frame.malformed", seconds=0.0)  # already over
        bans.ban(["id:cc"], reason="encoding")
        bans.unban("id:cc")
    with Database(tmp_path / "db") as db:
        again = BanList()
        assert again.attach(db) == 2
        assert again.is_banned("id:aa") and again.is_banned("addr:1.2.3.4")
        assert not again.is_banned("id:bb") and not again.is_banned("id:cc")
        assert again.reasons["id:aa"] == "tx.signature"
        assert 3500 < again.entries()["id:aa"] <= 3600
        # the expired and the lifted ban are gone from disk too
        assert sorted(k for k, _ in db.iterate_prefix(BAN_PREFIX)) == \
            [BAN_PREFIX + b"addr:1.2.3.4", BAN_PREFIX + b"id:aa"]


def test_an_unreadable_ban_entry_is_dropped(tmp_path: Path) -> None:
    with Database(tmp_path / "db") as db:
        db.put(BAN_PREFIX + b"id:dd", b"\xc1")
        db.put(BAN_PREFIX + b"id:ee", msgpack.packb(["soon", 1]))
        db.put(BAN_PREFIX + b"id:ff", msgpack.packb([time.time() + 60, "kept"]))
        bans = BanList()
        assert bans.attach(db) == 1
        assert bans.is_banned("id:ff") and not bans.is_banned("id:dd")
        assert [k for k, _ in db.iterate_prefix(BAN_PREFIX)] == [BAN_PREFIX + b"id:ff"]


def test_token_bucket_refills_and_goes_into_debt() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    start = bucket.stamp
    assert [bucket.take(start) for _ in range(4)] == [True, True, True, False]
    assert bucket.overdraft == 1.0
    assert not bucket.take(start + 0.5)  # refilled 1: the debt is paid, no token yet
    assert bucket.take(start + 1.5)  # 2 more tokens
    assert bucket.take(start + 100.0) and bucket.tokens == 2.0  # capped at the burst


async def test_below_fee_transaction_is_dropped_without_a_penalty(tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n")
    raw = RawPeer(node)
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        cheap, paid = transfer(1, 0, fee=0), transfer(2, 0)
        await raw.send(MsgType.TX, {"tx": cheap.encode()})
        await raw.send(MsgType.TX, {"tx": paid.encode()})  # frames are handled in order
        await wait_for(lambda: paid.id() in node.mempool, message="paid tx admitted")
        assert cheap.id() not in node.mempool
        assert raw.node_id in node.peers.peers and not node.peers.bans.entries()
    finally:
        await raw.close()
        await node.stop()


async def test_flooding_peer_is_throttled_then_banned(tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n", peer_tx_rate=0.001, peer_tx_burst=3.0)
    raw = RawPeer(node)
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        txs = [transfer(1, n) for n in range(5)]
        for tx in txs:
            await raw.send(MsgType.TX, {"tx": tx.encode()})
        await wait_for(lambda: node.peers.throttled["TX"] == 2, message="2 frames throttled")
        assert [tx.id() in node.mempool for tx in txs] == [True] * 3 + [False] * 2
        assert raw.node_id in node.peers.peers  # throttled, not banned yet
        # 4 bursts of debt: the peer is banned
        for n in range(13):
            await raw.send(MsgType.TX, {"tx": transfer(2, n).encode()})
        assert await raw.expect_close() == "rate.tx_flood"
        assert node.peers.bans.is_banned(node_key(raw.node_id))
        assert node.peers.misbehaviour[-1]["reason"] == "rate.tx_flood"
    finally:
        await raw.close()
        await node.stop()


async def test_swarm_frames_are_rate_limited(tmp_path: Path) -> None:
    node = await start_node(tmp_path, "n", peer_swarm_rate=0.001, peer_swarm_burst=2.0)
    raw = RawPeer(node)
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        for _ in range(3):
            await raw.send(MsgType.SWARM, {"kind": "phase", "data": b"\x90"})
        await wait_for(lambda: node.peers.throttled["SWARM"] == 1, message="1 frame throttled")
        assert node.peers.received["SWARM"] == 3
    finally:
        await raw.close()
        await node.stop()


async def test_a_built_node_keeps_its_bans_across_a_restart(tmp_path: Path) -> None:
    config = node_config(tmp_path, "n")
    node: Node = wired(config)
    await node.start()
    raw = RawPeer(node)
    try:
        assert (await raw.handshake()).type == MsgType.AUTH
        tx = transfer(2, 0)
        forged = dataclasses.replace(tx, signature=bytes([tx.signature[0] ^ 1]) +
                                     tx.signature[1:])
        await raw.send(MsgType.TX, {"tx": forged.encode()})
        assert await raw.expect_close() == "tx.signature"
    finally:
        await raw.close()
        await node.stop()
    node = wired(config)
    await node.start()
    again = RawPeer(node, key=raw.key)
    try:
        answer = await again.handshake()
        assert answer.type == MsgType.REJECT and answer["reason"] == "banned"
    finally:
        await again.close()
        await node.stop()


@pytest.mark.parametrize("name,value", [("peer_tx_rate", -1), ("peer_swarm_burst", "x"),
                                        ("min_relay_fee_per_kb", -1),
                                        ("min_relay_fee_per_kb", 1.5),
                                        ("mempool_fsync_interval", -1)])
def test_bad_policy_settings_are_config_errors(tmp_path: Path, name: str,
                                               value: Any) -> None:
    with pytest.raises(ConfigError, match=name):
        node_config(tmp_path, "n", **{name: value})
