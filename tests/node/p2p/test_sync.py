"""Headers-first sync between real in-process nodes."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import sys
import time
from pathlib import Path

import pytest

from consensus.block import Block, BlockHeader
from node.chain.chainstore import ChainStore
from node.node import Node
from node.p2p.policy import node_key
from node.p2p.protocol import MsgType, work_bytes
from pouw import Certificate
from tests.framework.chain import extend, fork, new_chain, transfer
from tests.framework.nodes import node_config, preload, start_node
from tests.framework.rawpeer import RawPeer
from tests.framework.util import ROOT, wait_for

CHAIN_LENGTH = 300


@functools.cache
def long_chain() -> tuple[Block, ...]:
    sim = new_chain()
    return tuple(extend(sim, seed=i) for i in range(CHAIN_LENGTH))


async def test_empty_node_syncs_from_two_peers(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = list(long_chain())
    # small header batches, so sync needs several header rounds
    monkeypatch.setattr("node.p2p.manager.MAX_HEADERS", 120)
    monkeypatch.setattr("node.p2p.sync.MAX_HEADERS", 120)
    a = await start_node(tmp_path, "a", sync_batch=16)
    c = await start_node(tmp_path, "c")
    preload(a, blocks)
    preload(c, blocks)
    b = await start_node(tmp_path, "b", sync_batch=16)
    try:
        started = time.perf_counter()
        await b.peers.connect(a.listen_address)
        await b.peers.connect(c.listen_address)
        await wait_for(lambda: b.chain.height == CHAIN_LENGTH, timeout=60, message="sync")
        elapsed = time.perf_counter() - started
        print(f"synced {CHAIN_LENGTH} blocks in {elapsed:.2f}s: "
              f"{CHAIN_LENGTH / elapsed:.0f} blocks/s")
        assert b.chain.tip_id == a.chain.tip_id
        assert b.chain.state_root() == a.chain.state_root()
        # blocks came from both peers; headers in several rounds of at most 120
        assert a.peers.received["GETDATA"] > 0 and c.peers.received["GETDATA"] > 0
        headers_rounds = a.peers.received["GETHEADERS"] + c.peers.received["GETHEADERS"]
        assert headers_rounds >= CHAIN_LENGTH // 120
        await wait_for(lambda: not b.syncing, message="sync flag cleared")
        assert b.sync_progress == 1.0 and b.best_peer_height == CHAIN_LENGTH
        status = b.status()
        assert status["height"] == CHAIN_LENGTH and status["peers"] == 2
    finally:
        for n in (a, b, c):
            await n.stop()


async def test_fork_finds_common_ancestor_and_reorgs(tmp_path: Path) -> None:
    base = new_chain()
    prefix = [extend(base, seed=i) for i in range(20)]
    side_a, side_b = fork(base), fork(base)
    left_only = transfer(3, 0, amount=333)
    fork_a = [extend(side_a, [left_only] if i == 0 else [], seed=100 + i) for i in range(5)]
    fork_b = [extend(side_b, seed=200 + i) for i in range(30)]
    a = await start_node(tmp_path, "a")
    b = await start_node(tmp_path, "b")
    preload(a, prefix + fork_a)
    preload(b, prefix + fork_b)
    try:
        await a.peers.connect(b.listen_address)
        await wait_for(lambda: a.chain.tip_id == b.chain.tip_id, timeout=30, message="reorg")
        assert a.chain.height == 50
        assert a.chain.state_root() == b.chain.state_root()
        # the locator found the fork point in one round trip: only fork B's 30 blocks moved
        await wait_for(lambda: a.blocks_received == 30, message="blocks counted")
        assert b.peers.received["GETHEADERS"] <= 2
        # b did not take the lighter branch
        assert b.chain.height == 50 and b.blocks_received == 0
        # the payment only fork A confirmed went back to a's pool and was gossiped to b
        await wait_for(lambda: left_only.id() in a.mempool and left_only.id() in b.mempool,
                         message="re-added tx gossiped")
    finally:
        await a.stop()
        await b.stop()


async def test_resume_after_restart(tmp_path: Path) -> None:
    blocks = list(long_chain())
    a = await start_node(tmp_path, "a")
    preload(a, blocks[:200])
    b = await start_node(tmp_path, "b")
    try:
        await b.peers.connect(a.listen_address)
        await wait_for(lambda: b.chain.height == 200, timeout=30, message="first sync")
        await b.stop()
        preload(a, blocks[200:])
        b = Node(node_config(tmp_path, "b"))
        assert b.chain.height == 200  # the store kept everything
        await b.start()
        await b.peers.connect(a.listen_address)
        await wait_for(lambda: b.chain.height == CHAIN_LENGTH, timeout=30, message="resume")
        await wait_for(lambda: b.blocks_received == CHAIN_LENGTH - 200, message="counted")
    finally:
        await a.stop()
        await b.stop()


async def test_seed_discovery_reaches_tip_without_manual_connect(tmp_path: Path) -> None:
    blocks = list(long_chain())[:40]
    a = await start_node(tmp_path, "a")
    preload(a, blocks)
    b = await start_node(tmp_path, "b", peers=[a.listen_address], discover=True)
    # c only knows b; it learns a's address from b's ADDR answer and dials it
    c = await start_node(tmp_path, "c", peers=[b.listen_address], discover=True)
    try:
        await wait_for(lambda: c.chain.height == 40 and b.chain.height == 40, timeout=30,
                         message="sync through seeds")
        await wait_for(lambda: a.node_id in c.peers.peers, timeout=15, message="addr discovery")
        # the address book survives a restart: c comes back without seeds and reconnects
        await c.stop()
        c = await start_node(tmp_path, "c", discover=True)
        await wait_for(lambda: len(c.peers) == 2, timeout=15, message="reconnect from book")
    finally:
        for n in (a, b, c):
            await n.stop()


@pytest.mark.slow
async def test_killed_mid_sync_reopens_consistent_and_resumes(tmp_path: Path) -> None:
    """SIGKILL while sync batches are written with group commit: the store reopens on a
    consistent tip (state root matches the tip header) and the node resumes to the tip."""


    blocks = list(long_chain())
    a = await start_node(tmp_path, "a")
    preload(a, blocks)
    datadir = tmp_path / "b"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.node.p2p.sync_child", str(datadir), a.listen_address,
        stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    try:
        assert child.stdout is not None
        height = 0
        while height < 60:  # kill it part way through
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            assert line, "child exited"
            height = int(line)
        child.kill()
        await child.wait()
        assert height < CHAIN_LENGTH
        store = ChainStore.open(datadir / "chain", genesis=new_chain().config)
        assert 60 <= store.height <= CHAIN_LENGTH
        assert store.state_root() == store.tip_header.state_root
        assert store.tip_id == blocks[store.height - 1].header.block_id()
        store.close()
        b = await start_node(tmp_path, "b")
        await b.peers.connect(a.listen_address)
        await wait_for(lambda: b.chain.height == CHAIN_LENGTH, timeout=30, message="resume")
        await b.stop()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await a.stop()


async def test_peer_serving_a_bad_block_during_sync_is_banned(tmp_path: Path) -> None:
    """Batches go to several peers; the one that serves a corrupt block is banned and the
    node still reaches the tip from the honest one."""


    blocks = list(long_chain())[:40]
    honest = await start_node(tmp_path, "h")
    preload(honest, blocks)
    node = await start_node(tmp_path, "n", sync_batch=4)
    raw = RawPeer(node)
    raw.headers = [b.header.encode() for b in blocks]
    raw.blocks = {b.header.block_id(): b.encode() for b in blocks}
    raw.blocks = {k: v[:-5] for k, v in raw.blocks.items()}  # every block truncated
    tip = blocks[-1].header
    try:
        answer = await raw.handshake(tip=tip.block_id(), height=tip.height,
                                     work=work_bytes(tip.height + 1))
        assert answer.type == MsgType.AUTH
        serving = asyncio.create_task(raw.expect_close(timeout=30))
        await node.peers.connect(honest.listen_address)
        await wait_for(lambda: node.chain.height == 40, timeout=30, message="sync")
        assert raw.getdata, "the raw peer was asked for blocks"
        assert node.peers.bans.is_banned(node_key(raw.node_id))
        assert await serving == "encoding"
        assert node.chain.tip_id == honest.chain.tip_id
    finally:
        await raw.close()
        await node.stop()
        await honest.stop()


def forged_proof(header: BlockHeader) -> BlockHeader:
    """``header`` with one operand byte of its certificate flipped: well-formed and bound to
    the header, but the tile no longer verifies (certificate.invalid)."""
    cert = Certificate.decode(header.certificate)
    rows = bytearray(cert.rows_a)
    rows[0] ^= 0x01
    return dataclasses.replace(header, certificate=dataclasses.replace(
        cert, rows_a=bytes(rows)).encode())


async def test_peer_sending_a_header_with_a_bad_proof_is_banned_before_any_body(
        tmp_path: Path) -> None:
    """Headers-first with proofs: the node verifies each new header's PoUW certificate when
    the headers arrive, so the peer whose fourth header carries a forged proof is banned
    (certificate.invalid) without being asked for a single block, the good three included."""
    blocks = list(long_chain())[:4]
    headers = [b.header for b in blocks[:3]] + [forged_proof(blocks[3].header)]
    node = await start_node(tmp_path, "n")
    raw = RawPeer(node)
    raw.headers = [h.encode() for h in headers]
    raw.blocks = {b.header.block_id(): b.encode() for b in blocks}  # honest bodies, if asked
    tip = headers[-1]
    try:
        answer = await raw.handshake(tip=tip.block_id(), height=tip.height,
                                     work=work_bytes(tip.height + 1))
        assert answer.type == MsgType.AUTH
        assert await raw.expect_close(timeout=30) == "certificate.invalid"
        assert raw.getdata == []  # no body was ever asked for
        assert node.peers.bans.is_banned(node_key(raw.node_id))
        assert node.peers.misbehaviour[-1]["reason"] == "certificate.invalid"
        assert node.peers.received["GETDATA"] == 0 and node.chain.height == 0
    finally:
        await raw.close()
        await node.stop()
