"""VOTE gossip on a real in-process node with an active finality chain: a bad signature or
undecodable bytes get the sender banned; a vote our head cannot place (a lagging or forked
peer's) is dropped quietly and forgotten; the node's own vote reaches a new peer."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import aiohttp

from consensus.genesis import dev_seed
from consensus.tx import public_key
from core.bls import BACKEND, derive_secret
from core.votes import Checkpoint, VoteData
from node.finality.keys import write_raw_key
from node.mining.service import MiningService
from node.p2p.policy import node_key
from node.p2p.protocol import MsgType
from testnet.client import parse_metrics
from testnet.genesis import write_genesis
from tests.framework.nodes import node_config, wired
from tests.framework.rawpeer import RawPeer
from tests.framework.util import wait_for

E = 2


async def test_bad_votes_ban_and_unplaceable_votes_are_ignored(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.json"
    write_genesis(genesis, [dev_seed(0), dev_seed(1)], finality_epoch_blocks=E,
                  stakes={public_key(dev_seed(0)).hex(): 10**6})
    config = node_config(tmp_path, "v", dev_key=0, genesis_path=genesis)
    write_raw_key(config.datadir, os.urandom(32))
    node = wired(config)
    await node.start()
    try:
        service = node.finality
        assert service is not None
        mining = next(s for s in node.services if isinstance(s, MiningService))
        await wait_for(lambda: len(node.mempool) == 1, 60, message="self-registration")
        # registered in block 1, epoch 1's set at 2, anchored at 3; epoch 2's checkpoint
        # recorded at 5: the node votes 1 -> 2
        await mining.miner.generate(2 * E + 1)
        await wait_for(lambda: service.last_vote is not None, 60, message="own vote")
        vote = service.last_vote
        assert vote is not None and vote.data.target.epoch == 2
        # the API and /metrics say where finality stands
        async with aiohttp.ClientSession(f"http://127.0.0.1:{node.port}") as http:
            async with http.get("/api/v1/finality") as answer:
                report = await answer.json()
            await wait_for(lambda: service.summary.active, 30, message="summary refreshed")
            async with http.get("/metrics") as answer:
                metrics = parse_metrics(await answer.text())
        assert report["active"] and report["justified"]["epoch"] == 1
        assert report["validator"]["registered"] and report["validator"]["in_set"]
        assert report["validator"]["last_vote"] == {"source_epoch": 1, "target_epoch": 2}
        assert metrics["pouwchain_finality_active"] == 1
        assert metrics["pouwchain_justified_height"] == E
        assert metrics["pouwchain_finality_votes_total"] == 1  # signed, none received yet
        assert node.status()["finalized_height"] == metrics["pouwchain_finalized_height"] == 0

        raw = RawPeer(node)
        assert (await raw.handshake()).type == MsgType.AUTH
        first = await raw.recv(timeout=30)
        assert first is not None and first.type == MsgType.VOTE and first["vote"] == vote.encode()
        # a target this chain has no checkpoint for: ignored, not punished, not pooled
        unknown = dataclasses.replace(vote, data=VoteData(
            source=vote.data.source, target=Checkpoint(epoch=99, root=bytes(32))))
        await raw.send(MsgType.VOTE, {"vote": unknown.encode()})
        await wait_for(lambda: service.votes_rejected == 1, 60, message="ignored vote")
        assert raw.node_id in node.peers.peers and len(service.pool) == 1
        # a valid point that is not this validator's signature: banned
        forged = BACKEND.sign(derive_secret(os.urandom(32)), b"not the vote".ljust(32))
        await raw.send(MsgType.VOTE, {"vote": dataclasses.replace(vote, signature=forged)
                                      .encode()})
        assert await raw.expect_close(timeout=60) == "votes.signature"
        assert node.peers.bans.is_banned(node_key(raw.node_id))
        await raw.close()

        junk = RawPeer(node)
        assert (await junk.handshake()).type == MsgType.AUTH
        await junk.send(MsgType.VOTE, {"vote": b"\x93 not a vote"})
        assert (await junk.expect_close(timeout=60)).startswith("encoding")
        await junk.close()
        assert node.peers.bans.is_banned(node_key(junk.node_id))
        assert len(service.pool) == 1  # only the node's own vote
    finally:
        await node.stop()
