"""A raw peer that misbehaves is disconnected and banned; the node keeps serving others.

Each kind of REJECT-level input from issue 4 is sent by a fresh identity: an invalid block
(valid PoUW, wrong state root), a bad PoUW certificate, a transaction with a bad signature,
bytes that are not a frame, and frames over the size limits. After each, the node must have
closed the connection with a reason, logged a ban, and refuse the same identity again; an
honest node stays connected throughout and still receives blocks at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from consensus.block import Block
from consensus.genesis import load_genesis_config
from node.p2p.protocol import MAX_FRAME, MsgType, encode_frame
from pouw import Certificate
from tests.framework.chain import make_block, new_chain, transfer
from tests.framework.nodes import TestNetwork, TestNode, address_of
from tests.framework.rawpeer import PeerRefused, RawPeer
from tests.framework.util import wait_for

pytestmark = pytest.mark.slow  # real node processes

Attack = Callable[[RawPeer], Awaitable[str]]


def bad_certificate(block: Block) -> Block:
    """Flip one operand byte inside the certificate: well-formed, but the tile won't verify."""
    cert = Certificate.decode(block.header.certificate)
    rows = bytearray(cert.rows_a)
    rows[0] ^= 0x01
    tampered = dataclasses.replace(cert, rows_a=bytes(rows)).encode()
    return dataclasses.replace(block, header=dataclasses.replace(block.header,
                                                                 certificate=tampered))


def attacks(network: TestNetwork) -> dict[str, tuple[Attack, tuple[str, ...], tuple[str, ...]]]:
    """name -> (what the raw peer does, REJECT reasons it may receive, ban reasons logged)."""
    chain = new_chain(load_genesis_config(network.genesis))
    invalid = make_block(chain, state_root=bytes(range(32)))  # valid PoUW, lying state root
    forged = bad_certificate(make_block(chain, seed=1))

    async def send_block(peer: RawPeer, block: Block) -> str:
        await peer.announce(block)
        return await peer.serve_until_closed({block.header.block_id(): block})

    async def bad_signature(peer: RawPeer) -> str:
        tx = transfer(4, 0, address_of(5), 10)
        sig = bytearray(tx.signature)
        sig[10] ^= 0xFF
        forged_tx = dataclasses.replace(tx, signature=bytes(sig))
        await peer.send(MsgType.TX, {"tx": forged_tx.encode()})
        return await peer.serve_until_closed()

    async def garbage(peer: RawPeer) -> str:
        await peer.send_raw(os.urandom(300))
        return await peer.serve_until_closed()

    async def oversized(peer: RawPeer) -> str:
        try:  # over the socket's cap: the node may hang up before we finish sending
            await peer.send_raw(b"\x92\x08" + bytes(MAX_FRAME + 128 * 1024))
        except (ConnectionError, aiohttp.ClientError):
            pass
        return await peer.serve_until_closed()

    async def oversized_for_type(peer: RawPeer) -> str:
        # under the global cap but far over a PING's limit
        frame = encode_frame(MsgType.PING, {"nonce": 1})
        await peer.send_raw(frame[:-1] + b"\xc6" + (70_000).to_bytes(4, "big") + bytes(70_000))
        return await peer.serve_until_closed()

    oversize = ("frame.oversized",)
    return {
        "invalid block": (lambda p: send_block(p, invalid), ("state.root",), ("state.root",)),
        "bad certificate": (lambda p: send_block(p, forged), ("certificate.invalid",),
                            ("certificate.invalid",)),
        "bad signature": (bad_signature, ("tx.signature",), ("tx.signature",)),
        "garbage": (garbage, ("frame.malformed",), ("frame.malformed",)),
        # aiohttp closes the socket itself (1009) before the node can send its REJECT
        "oversized frame": (oversized, (*oversize, "closed (CLOSE: )"), oversize),
        "oversized for its type": (oversized_for_type, oversize, oversize),
    }


def banned_events(node: TestNode, peer: RawPeer) -> list[dict[str, object]]:
    prefix = peer.node_id.hex()[:16]
    return [e for e in node.log_events()
            if e.get("event") == "peer.banned" and str(e.get("peer", "")).startswith(prefix)]


def test_misbehaving_peers_are_banned_while_node_serves_others(network: TestNetwork) -> None:
    victim, honest = network.add_nodes(2)
    network.connect(honest, victim)
    failures: list[str] = []

    async def scenario(name: str, attack: Attack, wire: tuple[str, ...],
                       logged: tuple[str, ...]) -> None:
        seed = os.urandom(32)
        async with RawPeer(victim.url, seed=seed) as peer:
            await peer.connect()
            assert peer.node_id.hex() in victim.peer_ids()
            reason = await attack(peer)
        assert reason in wire, f"closed with {reason!r}, expected one of {wire}"
        events = banned_events(victim, peer)
        assert events and events[0].get("reason") in logged, f"ban log {events}"
        # the victim drops the peer once its connection has shut down, just after the close
        await wait_for(lambda: peer.node_id.hex() not in victim.peer_ids(),
                       message="the banned peer dropped")
        # the same identity is refused from now on...
        async with RawPeer(victim.url, seed=seed) as again:
            with pytest.raises(PeerRefused, match="banned"):
                await again.connect()
        # ...while a different, well-behaved identity is still welcome
        async with RawPeer(victim.url) as other:
            await other.connect()
        # and the honest node never lost its connection
        assert honest.node_id in victim.peer_ids()

    for name, (attack, wire, logged) in attacks(network).items():
        try:
            asyncio.run(scenario(name, attack, wire, logged))
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)
    # only the honest node is left (the well-behaved identities have hung up)
    network.wait_until(lambda: victim.status()["peers"] == 1, message="only the honest peer")
    # the victim still serves: its new block reaches the honest node
    [block_hash] = network.generate(victim, 1)
    network.sync_blocks(timeout=30, block=block_hash)
    # the generated block is block 1 on both chains (the raw peers' blocks never connected)
    assert victim.block(1)["id"] == honest.block(1)["id"] == block_hash
