"""VOTE gossip on a real in-process node with an active finality chain (two validators: the
node's own key and one the test holds): a forged signature or undecodable bytes get the
sender banned; a validly signed vote our head cannot place (another fork's, a lagging
peer's) is dropped quietly; a double vote is reported once as slashing evidence and the
offender is slashed; the node's own vote reaches a new peer; /api/v1/finality and /metrics
say where finality stands."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from consensus.finality import registration_payload, sign_vote, validator_record
from consensus.genesis import dev_seed
from consensus.tx import public_key, sign_transaction
from contracts.finality import ReportVoteViolation
from core.bls import BACKEND, derive_secret
from core.state import State
from core.votes import Checkpoint, SignedVote, VoteData
from node.finality.keys import write_raw_key
from node.finality.service import FinalityService
from node.mining.service import MiningService
from node.node import Node
from node.p2p.policy import node_key
from node.p2p.protocol import MsgType
from testnet.client import parse_metrics
from testnet.genesis import write_genesis
from tests.framework.nodes import node_config, wired
from tests.framework.rawpeer import RawPeer
from tests.framework.util import wait_for

E = 2
OTHER_SECRET = derive_secret(b"finality-node test validator 1".ljust(32, b"."))
OTHER = public_key(dev_seed(1))


@dataclasses.dataclass
class TwoValidators:
    node: Node
    service: FinalityService
    mining: MiningService

    def other_vote(self, data: VoteData) -> SignedVote:
        return sign_vote(OTHER_SECRET, data, validator=OTHER,
                         chain_id=self.node.chain.params.chain_id)


@pytest.fixture
async def two_validators(tmp_path: Path) -> AsyncIterator[TwoValidators]:
    """The node (validator dev 0, registering itself) and validator dev 1 (registered by the
    test), both in epoch 1's set; the head at epoch 2's recorded checkpoint, the node's
    1 -> 2 vote signed."""
    genesis = tmp_path / "genesis.json"
    write_genesis(genesis, [dev_seed(0), dev_seed(1)], finality_epoch_blocks=E,
                  stakes={public_key(dev_seed(i)).hex(): 10**6 for i in (0, 1)})
    config = node_config(tmp_path, "v", dev_key=0, genesis_path=genesis)
    write_raw_key(config.datadir, os.urandom(32))
    node = wired(config)
    await node.start()
    try:
        assert node.finality is not None
        mining = next(s for s in node.services if isinstance(s, MiningService))
        await node.submit_transaction(sign_transaction(
            dev_seed(1), chain_id=node.chain.params.chain_id, nonce=0, fee=1000,
            payload=registration_payload(OTHER_SECRET)))
        await wait_for(lambda: len(node.mempool) == 2, 60, message="both registrations")
        # registered in block 1, epoch 1's set at 2, anchored at 3, epoch 2's checkpoint at 5
        await mining.miner.generate(2 * E + 1)
        service = node.finality
        await wait_for(lambda: service.last_vote is not None, 60, message="own vote")
        yield TwoValidators(node, service, mining)
    finally:
        await node.stop()


async def test_bad_votes_ban_and_unplaceable_votes_are_ignored(
        two_validators: TwoValidators) -> None:
    chain = two_validators
    node, service = chain.node, chain.service
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
    # validly signed, but for a checkpoint this chain does not have: ignored, not pooled
    elsewhere = chain.other_vote(VoteData(source=vote.data.source,
                                          target=Checkpoint(epoch=99, root=bytes(32))))
    await raw.send(MsgType.VOTE, {"vote": elsewhere.encode()})
    await wait_for(lambda: service.votes_rejected == 1, 60, message="ignored vote")
    assert raw.node_id in node.peers.peers and len(service.pool) == 1
    # a valid point that is not this validator's signature: banned
    forged = BACKEND.sign(derive_secret(os.urandom(32)), b"not the vote".ljust(32))
    await raw.send(MsgType.VOTE, {"vote": dataclasses.replace(vote, signature=forged).encode()})
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


async def test_a_double_vote_is_reported_once_and_slashed(
        two_validators: TwoValidators) -> None:
    chain = two_validators
    node, service = chain.node, chain.service
    own = service.last_vote
    assert own is not None
    honest = chain.other_vote(own.data)
    # the same target epoch, another root (another fork's checkpoint): a double vote
    double = chain.other_vote(VoteData(source=own.data.source,
                                       target=Checkpoint(epoch=own.data.target.epoch,
                                                         root=bytes([7]) * 32)))
    raw = RawPeer(node)
    assert (await raw.handshake()).type == MsgType.AUTH
    await raw.send(MsgType.VOTE, {"vote": honest.encode()})
    await wait_for(lambda: len(service.pool) == 2, 60, message="honest vote pooled")
    await raw.send(MsgType.VOTE, {"vote": double.encode()})
    await wait_for(lambda: service.reports_sent == 1, 60, message="evidence sent")
    [report] = [tx for tx in node.mempool.transactions()
                if isinstance(tx.payload, ReportVoteViolation)]
    assert report.sender == public_key(dev_seed(0))
    assert {report.payload.first, report.payload.second} == {honest, double}
    # once only, whatever the offender sends next
    await raw.send(MsgType.VOTE, {"vote": chain.other_vote(VoteData(
        source=own.data.source, target=Checkpoint(epoch=own.data.target.epoch,
                                                  root=bytes([8]) * 32))).encode()})
    await wait_for(lambda: service.votes_rejected == 2, 60, message="third vote seen")
    assert service.reports_sent == 1
    stake_before = State(node.chain.state_view()).stake(OTHER).bonded
    await chain.mining.miner.generate(1)
    state = State(node.chain.state_view())
    record = validator_record(state, OTHER)
    assert record is not None and record.slashed
    assert state.stake(OTHER).bonded < stake_before
    assert raw.node_id in node.peers.peers  # relaying evidence is no misbehaviour
    await raw.close()


async def test_the_last_vote_survives_a_restart(two_validators: TwoValidators) -> None:
    """The slashing guard: a restarted validator knows what it signed last, so it never
    signs a second vote for that target epoch (`may_sign`)."""
    node = two_validators.node
    last = two_validators.service.last_vote
    assert last is not None
    await node.stop()
    again = wired(node.config)
    try:
        assert again.finality is not None and again.finality.last_vote == last
        assert again.chain.finalized == node.chain.finalized
    finally:
        again.close()
