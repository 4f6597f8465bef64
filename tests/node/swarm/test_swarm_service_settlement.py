"""Rounds drawn from the chain's registry, settled on chain, across in-process nodes over real
sockets and LevelDB with the real built-in models: equivocation is kept, gossiped and
slashed; a backup participant settles when the origin does not; a duplicate settlement costs
its sender nothing; the fast path ranks with the chain's reputations."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import msgpack
import pytest

from consensus.genesis import dev_seed
from consensus.tx import Transaction, public_key, sign_transaction
from contracts.bank import Transfer
from contracts.registry import (
    CALIBRATION_QUESTIONS,
    RegisterSwarmNode,
    SubmitCalibration,
    calibration_seed,
)
from contracts.staking import Stake
from contracts.swarm import SettleSwarmRound, build_settlement, selected_nodes, settled_round
from node.builder import build_node
from node.node import Node, NodeRejected
from node.p2p.protocol import Message, MsgType
from node.swarm.service import RoundState
from swarm.calibration import calibration_questions
from swarm.commit_reveal import answer_opening, commit, judgment_opening
from swarm.messages import KIND_ANSWER, Commitment, RequestAnnouncement, sign_request
from swarm.runtime.factory import make_backend
from tests.framework.chain import Chain, extend, new_chain, transfer, undelayed_config
from tests.framework.chain import tx as make_tx
from tests.framework.nodes import node_config, preload
from tests.framework.nodes import swarm_service as svc
from tests.framework.rawpeer import RawPeer
from tests.framework.swarm import (
    EPOCH_BLOCKS,
    STAKE,
    VARIANTS,
    mine_block,
    registered_swarm,
    round_view,
    settlement_sent,
    settlements,
    stop_all,
    tip_state,
    write_genesis_config,
)
from tests.framework.util import wait_for


async def _next_epoch(chain: Chain, nodes: Sequence[Node]) -> None:
    """Empty blocks up to the next epoch start (see `EPOCH_BLOCKS`)."""
    blocks = [extend(chain)]
    while chain.tip.height % EPOCH_BLOCKS:
        blocks.append(extend(chain))
    await nodes[0].process_blocks(blocks)
    await wait_for(lambda: all(n.chain.height == chain.tip.height for n in nodes), message="blocks")


async def _settled_round(chain: Chain, nodes: Sequence[Node], origin: Node,
                         prompt: str) -> tuple[RoundState, Transaction]:
    """A round asked at ``origin`` whose settlement (sent by the origin) is mined."""
    state = await svc(origin).ask(prompt)
    tx = await settlement_sent(origin, state.round_id)
    await mine_block(chain, nodes, [tx])
    return state, tx


async def _next_swarm(raw: RawPeer, kind: str) -> bytes:
    """The data of the next SWARM frame of ``kind`` the node sends us (pings answered)."""
    while True:
        msg: Message | None = await raw.recv(timeout=10.0)
        assert msg is not None, "the node closed the connection"
        if msg.type == MsgType.PING:
            await raw.send(MsgType.PONG, {"nonce": msg["nonce"]})
        elif msg.type == MsgType.SWARM and msg["kind"] == kind:
            return bytes(msg["data"])


async def test_fast_path_ranks_with_the_chain_reputations(tmp_path: Path) -> None:
    """After one settled round the nodes' reputations differ; the next round's fast path
    (every node) gives exactly the outcome that lands on chain: ranking, scores, payouts and
    new reputations (which start from the old ones)."""
    chain, nodes = await registered_swarm(tmp_path)
    try:
        ids = [n.node_id for n in nodes]
        await _settled_round(chain, nodes, nodes[0], "What is 8+9?")  # xs says 7: ranks differ
        await _next_epoch(chain, nodes)
        state, tx = await _settled_round(chain, nodes, nodes[1], "What is 6+7?")
        reputations = {c.node: c.reputation for c in state.candidates}
        assert len(set(reputations.values())) > 1, reputations
        assert isinstance(tx.payload, SettleSwarmRound)
        on_chain = tx.payload.outcome
        settled = settled_round(tip_state(nodes[2]), state.round_id)
        assert settled is not None and settled.outcome_id == on_chain.id()
        for node in nodes:
            local = svc(node).rounds[state.round_id]
            assert local.settlement is not None and local.settlement.outcome == on_chain
            assert local.chosen == on_chain.ranking[0] == state.chosen
        assert {u.node: u.score for u in on_chain.reputations} == {
            node: tip_state(nodes[0]).reputation(node) for node in ids}
    finally:
        await stop_all(nodes)


async def test_equivocation_is_gossiped_and_slashed_on_chain(tmp_path: Path) -> None:
    """A raw peer holding a selected node's key sends a second, different answer commitment
    as soon as the request arrives. Every node keeps both, the round excludes the node and
    lists it under equivocators, and the settlement on chain slashes 20% of its stake and
    takes 400 reputation."""
    chain, nodes = await registered_swarm(tmp_path)
    raw = RawPeer(nodes[0])
    try:
        ids = [n.node_id for n in nodes]
        await _settled_round(chain, nodes, nodes[0], "What is 8+9?")
        await _next_epoch(chain, nodes)
        before = {node: tip_state(nodes[0]).reputation(node) for node in ids}
        cheat = max(ids, key=lambda node: (before[node], node))
        assert before[cheat] > 0
        bonded = tip_state(nodes[0]).stake(cheat).bonded
        assert bonded >= STAKE
        auth = await raw.handshake()
        assert auth.type != MsgType.REJECT
        asking = asyncio.create_task(svc(nodes[0]).ask("What is 4+9?"))
        request = RequestAnnouncement.decode(bytes(msgpack.unpackb(
            await _next_swarm(raw, "req"), raw=False)[0])).request
        # after the node's own commitment (sent first, the forged one would count as its
        # answer and the origin could move on before the real one: a no-show, not a double)
        while Commitment.decode(await _next_swarm(raw, "commit")).node != cheat:
            pass
        second, _ = commit(dev_seed(ids.index(cheat)), round_id=request.round_id(),
                           kind=KIND_ANSWER, payload=b"999", salt=os.urandom(32))
        await raw.send(MsgType.SWARM, {"kind": "commit", "data": second.encode()})
        state = await asyncio.wait_for(asking, 60)
        assert cheat in state.answerers
        await wait_for(lambda: all(
            svc(n).rounds[state.round_id].status == "complete" for n in nodes), message="final")
        for node in nodes:
            local = svc(node).rounds[state.round_id]
            assert len(local.commitments[(cheat, KIND_ANSWER)]) == 2
            assert second in local.commitments[(cheat, KIND_ANSWER)]
            view = await round_view(node, state.round_id)
            assert view["equivocators"] == [cheat.hex()]
            assert view["result"]["equivocators"] == [cheat.hex()]
            assert cheat.hex() not in {a["node"] for a in view["result"]["answers"]}
        assert state.chosen != cheat
        tx = await settlement_sent(nodes[0], state.round_id)
        assert isinstance(tx.payload, SettleSwarmRound) and second in tx.payload.commitments
        slash = bonded * 2000 // 10_000  # 20%
        assert [(s.node, s.amount) for s in tx.payload.outcome.slashes] == [(cheat, slash)]
        height = await mine_block(chain, nodes, [tx])
        for node in nodes:
            chain_state = tip_state(node)
            assert chain_state.stake(cheat).bonded == bonded - slash
            assert chain_state.reputation(cheat) == max(0, before[cheat] - 400)
            view = await round_view(node, state.round_id)
            assert view["settlement_status"] == \
                f"settled at height {height}: tx {tx.id().hex()} by {nodes[0].node_id.hex()}"
            assert view["equivocators"] == [cheat.hex()]
    finally:
        await raw.close()
        await stop_all(nodes)


async def test_a_third_commitment_is_neither_kept_nor_relayed(tmp_path: Path) -> None:
    """Two digests per node and kind prove equivocation; more are dropped (bounded memory and
    gossip), and a copy of a kept one changes nothing."""
    _, nodes = await registered_swarm(tmp_path, answer_timeout=1.0, judge_timeout=1.0)
    raw = RawPeer(nodes[0])
    try:
        svc(nodes[2]).silent = True  # its only commitments are the raw peer's
        assert (await raw.handshake()).type != MsgType.REJECT
        asking = asyncio.create_task(svc(nodes[0]).ask("What is 3+3?"))
        request = RequestAnnouncement.decode(bytes(msgpack.unpackb(
            await _next_swarm(raw, "req"), raw=False)[0])).request
        made = [commit(dev_seed(2), round_id=request.round_id(), kind=KIND_ANSWER,
                       payload=str(k).encode(), salt=os.urandom(32))[0] for k in range(3)]
        for c in (*made, made[0]):
            await raw.send(MsgType.SWARM, {"kind": "commit", "data": c.encode()})
        state = await asyncio.wait_for(asking, 60)
        for node in nodes:
            kept = svc(node).rounds[state.round_id].commitments[(nodes[2].node_id, KIND_ANSWER)]
            assert kept == made[:2]
        assert state.view()["equivocators"] == [nodes[2].node_id.hex()]
    finally:
        await raw.close()
        await stop_all(nodes)


async def test_backup_settles_when_the_origin_does_not(tmp_path: Path) -> None:
    """The origin completes the round and stops without settling. The first backup (in
    selection order) sends the settlement after one backoff, the second sees it pending and
    sends nothing; once mined, every node says who settled. A duplicate settlement, sent by
    hand before the block, leaves every mempool when the block lands and is then rejected
    (``swarm.already_settled``): its sender keeps its balance and nonce."""
    backoff = 0.4
    chain, nodes = await registered_swarm(tmp_path, settle_backoff=backoff)
    origin, others = nodes[0], nodes[1:]
    stopped = False
    try:
        svc(origin).settles = False  # a lazy origin; it also stops right after the round
        state = await svc(origin).ask("What is 5+8?")
        await wait_for(lambda: all(state.round_id in svc(n).rounds and svc(n).rounds[
            state.round_id].status == "complete" for n in others), message="final")
        await origin.stop()
        stopped = True
        rounds = [svc(n).rounds[state.round_id] for n in others]
        order = sorted(others, key=lambda n: svc(n).settler_position(rounds[0]) or 0)
        assert [svc(n).settler_position(rounds[0]) for n in order] == [1, 2]
        first, second = order
        tx = await settlement_sent(second, state.round_id)
        assert tx.sender == first.node_id
        await asyncio.sleep(3 * backoff)  # the second backup's turn has passed
        for node in others:
            assert [t.id() for t in settlements(node, state.round_id)] == [tx.id()]
        second_round = svc(second).rounds[state.round_id]
        assert second_round.settlement_tx is None
        assert second_round.settlement_status == \
            f"submitted: tx {tx.id().hex()} by {first.node_id.hex()}"

        k = nodes.index(second)
        account = tip_state(second).account(second.node_id)
        assert isinstance(tx.payload, SettleSwarmRound)
        reveals = list(second_round.reveals.values())
        duplicate = sign_transaction(dev_seed(k), chain_id=second.chain.params.chain_id,
                                     nonce=account.nonce, fee=10, payload=build_settlement(
            tip_state(second), height=second_round.height,
            beacon_block=tx.payload.beacon_block, request=tx.payload.request,
            answerers=second_round.answerers, judges=second_round.judges,
            commitments=second_round.all_commitments(),
            answer_openings=[answer_opening(r) for r in reveals if r.kind == KIND_ANSWER],
            judgment_openings=[judgment_opening(r) for r in reveals if r.kind != KIND_ANSWER]))
        await second.submit_transaction(duplicate)  # admitted: only the sender's own replayed
        height = await mine_block(chain, others, [tx])
        await wait_for(lambda: all(not settlements(n, state.round_id) for n in others),
                         message="the duplicate dropped from every mempool")
        with pytest.raises(NodeRejected) as rejected:
            await second.submit_transaction(duplicate)
        assert rejected.value.reason == "invalid:swarm.already_settled"
        assert tip_state(second).account(second.node_id) == account  # cost nothing
        await second.submit_transaction(transfer(k, account.nonce))  # its nonce is free
        status = f"settled at height {height}: tx {tx.id().hex()} by {first.node_id.hex()}"
        for node in others:
            assert svc(node).settlement_status(svc(node).rounds[state.round_id]) == status
            assert svc(node).rounds[state.round_id].view()["settled"]["settler"] == \
                first.node_id.hex()
    finally:
        await stop_all(others if stopped else nodes)


async def test_more_eligible_nodes_than_a_message_carries_still_settle(tmp_path: Path) -> None:
    """With 80 eligible nodes the origin draws from all of them (as validators do), sends
    only the drawn nodes' records, and the settlement passes the chain's redraw; a peer
    rejects a round whose draw is not the chain's."""
    config = undelayed_config()
    chain = new_chain(config)
    genesis = write_genesis_config(tmp_path / "genesis.json", config)
    extra = [bytes([200 + i // 256, i % 256]) * 16 for i in range(80)]
    model = make_backend(f"builtin:{VARIANTS[3]}").model_id
    funding = [make_tx(1, k, Transfer(to=public_key(s), amount=STAKE + 1_000))
               for k, s in enumerate(extra)]
    blocks = [extend(chain, funding)]
    blocks.append(extend(chain, [sign_transaction(s, chain_id=1337, nonce=n, fee=10, payload=p)
                                 for s in extra for n, p in (
                                     (0, Stake(amount=STAKE)),
                                     (1, RegisterSwarmNode(models=(model,))))]))
    parent = blocks[-1].header.block_id()
    blocks.append(extend(chain, [sign_transaction(s, chain_id=1337, nonce=2, fee=10,
                                                  payload=SubmitCalibration(
                                                      seed_block=parent, answers=tuple(
                                                          str(q.expected).encode() for q in
                                                          calibration_questions(
                                                              calibration_seed(
                                                                  parent, public_key(s)),
                                                              count=CALIBRATION_QUESTIONS))))
                                 for s in extra]))
    while chain.tip.height % EPOCH_BLOCKS:
        blocks.append(extend(chain))
    blocks.append(extend(chain))  # the next epoch's table holds all 80
    nodes: list[Node] = []
    for i in range(2):
        node = build_node(node_config(tmp_path, f"m{i}", dev_key=i, genesis_path=genesis),
                          swarm_options={"answer_timeout": 0.5, "judge_timeout": 0.5,
                                         "reveal_timeout": 0.5})
        preload(node, blocks)
        await node.start()
        nodes.append(node)
    await nodes[1].peers.connect(nodes[0].listen_address)
    await wait_for(lambda: len(nodes[0].peers) == 1, message="connected")
    try:
        origin = svc(nodes[0])
        pool, height = origin.candidates()
        assert len(pool) == 80
        state = await origin.ask("What is 1+2?")  # nobody answers: the round still settles
        request = state.announcement.request
        drawn = selected_nodes(tip_state(nodes[0]), request, height=height,
                               min_stake=chain.params.min_node_stake)
        assert (state.answerers, state.judges) == (tuple(drawn[0]), tuple(drawn[1]))
        assert len(state.candidates) <= len(set(drawn[0]) | set(drawn[1]))
        await wait_for(lambda: request.round_id() in svc(nodes[1]).rounds, message="gossip")
        assert svc(nodes[1]).rounds[request.round_id()].answerers == state.answerers
        tx = await settlement_sent(nodes[0], state.round_id)
        await mine_block(chain, nodes, [tx])
        assert settled_round(tip_state(nodes[1]), state.round_id) is not None

        # a draw that is not the chain's is dropped by a peer that can check it
        forged = sign_request(dev_seed(0), chain_id=1337, prompt=b"What is 2+2?", fee=0,
                              answers=1, judges=1, nonce=bytes(32))
        wrong = next(n for n in extra if n not in selected_nodes(
            tip_state(nodes[1]), forged.request, height=height, min_stake=1)[0])
        data = msgpack.packb([forged.encode(), [[wrong, STAKE, 0, True]], public_key(
            dev_seed(0)), height, [[wrong], [wrong]]], use_bin_type=True)
        assert svc(nodes[1])._handle("req", data) is False
        assert forged.request.round_id() not in svc(nodes[1]).rounds
    finally:
        await stop_all(nodes)


async def test_two_rounds_settled_at_once_take_two_nonces(tmp_path: Path) -> None:
    """An origin settling two rounds at the same moment signs both settlements with its next
    nonces in turn: before, both took the same nonce and the second was refused as an
    underpriced replacement, leaving its round unsettled."""
    chain, nodes = await registered_swarm(tmp_path)
    try:
        origin = nodes[0]
        svc(origin).settles = False  # the rounds finish without their settlements
        first = await svc(origin).ask("What is 2+3?")
        second = await svc(origin).ask("What is 4+4?")
        assert not settlements(origin, first.round_id) and not settlements(origin, second.round_id)
        svc(origin).settles = True
        await asyncio.gather(svc(origin).duty.run(first), svc(origin).duty.run(second))
        sent = [await settlement_sent(origin, state.round_id) for state in (first, second)]
        low, high = sorted(tx.nonce for tx in sent)
        assert high == low + 1
        assert all(state.settlement_status.startswith("submitted") for state in (first, second))
        await mine_block(chain, nodes, sent)
        for state in (first, second):
            assert settled_round(tip_state(nodes[1]), state.round_id) is not None
    finally:
        await stop_all(nodes)
