"""The inclusion window across in-process nodes over real sockets and LevelDB: a settler
leaves an honest answerer's opening out; the answerer's watcher proves it on chain (the other
participants leave the first half of the window to it), so it is not slashed and, proving its
own data, earns nothing from the settler's bond (docs/swarm.md §7a: the chain cannot tell a
left-out reveal from a withheld one), and the round settled again pays the answerer as
present; a wrong data-root outcome is voided once the participants post their leaves
(docs/swarm.md §7a). The built-in dev network has the window, and a round held on it is paid
by the first block past its window, empty or not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from consensus.genesis import DEV_BALANCE, dev_seed
from consensus.tx import Transaction, public_key, sign_transaction
from contracts.swarm import (
    CHALLENGER_SHARE_BPS,
    MAX_SETTLEMENT_LAG,
    ChallengeSwarmRound,
    PostRoundLeaves,
    SettleSwarmRound,
    beacon_height,
    build_root_settlement,
    held_round,
    settled_round,
    settler_bond,
)
from core.params import DEFAULT_SWARM_INCLUSION_WINDOW
from node.chain.chainstore import load_genesis
from node.node import Node
from node.swarm.settlement_duty import round_data
from swarm.inclusion import CLAIM_MISSING_OPENING, LATE_REVEAL_PENALTY_BPS
from swarm.messages import KIND_ANSWER, Payout
from tests.framework.nodes import swarm_service as svc
from tests.framework.swarm import (
    STAKE,
    mine_block,
    omitting_settlement,
    registered_swarm,
    settlement_sent,
    settlements,
    stop_all,
    tip_state,
)
from tests.framework.util import wait_for

WINDOW = 6
SETTLER = 3  # dev account 3: funded, not a swarm node
ROUND_FEE = 100_000  # paid by the origin (the client)


def challenges(node: Node, round_id: bytes) -> list[Transaction]:
    return [tx for tx in node.mempool.transactions()
            if isinstance(tx.payload, ChallengeSwarmRound) and tx.payload.round_id == round_id
            and tx.sender == node.node_id]


def test_the_built_in_dev_network_has_the_default_window() -> None:
    # `pouwchain node` without a genesis file: a settler's omission is challengeable there,
    # and a round a challenge voids can still settle again (after the beacon's delay)
    params = load_genesis(None).params
    assert params.swarm_inclusion_window == DEFAULT_SWARM_INCLUSION_WINDOW > 0
    assert params.swarm_beacon_delay + 1 + params.swarm_inclusion_window < MAX_SETTLEMENT_LAG


async def test_a_round_held_for_the_default_window_is_paid_by_the_first_empty_block_past_it(
        tmp_path: Path) -> None:
    """The node's own settlement on a chain with the dev network's window: held, and a quiet
    chain (only empty blocks after it) still pays it out when the window closes."""
    chain, nodes = await registered_swarm(
        tmp_path, genesis={"swarm_inclusion_window": DEFAULT_SWARM_INCLUSION_WINDOW})
    try:
        origin = nodes[0]
        state = await svc(origin).ask("What is 3+4?", fee=ROUND_FEE)
        rid = state.round_id
        settlement = await settlement_sent(origin, rid)
        assert isinstance(settlement.payload, SettleSwarmRound)
        outcome = settlement.payload.outcome
        height = await mine_block(chain, nodes, [settlement])
        held = held_round(tip_state(origin), rid)
        assert held is not None and held.deadline == height + DEFAULT_SWARM_INCLUSION_WINDOW
        await wait_for(lambda: svc(origin).rounds[rid].settlement_status.startswith(
            "settled at height"), message="settled")
        assert not svc(origin).duty.settled_for_good(svc(origin).rounds[rid])
        due: dict[bytes, int] = {p.node: p.amount for p in outcome.payouts}
        due[settlement.payload.request.client] = \
            due.get(settlement.payload.request.client, 0) + outcome.refund
        due[settlement.sender] = due.get(settlement.sender, 0) + held.bond
        before = {node: tip_state(origin).account(node).balance for node in due}
        while chain.tip.height < held.deadline:
            await mine_block(chain, nodes, [])
        assert held_round(tip_state(origin), rid) is not None  # the window's last block
        await mine_block(chain, nodes, [])  # the first block past it: empty, and it pays
        final = tip_state(origin)
        assert held_round(final, rid) is None and settled_round(final, rid) is not None
        assert {node: final.account(node).balance - before[node] for node in due} == due
        await wait_for(lambda: svc(origin).duty.settled_for_good(svc(origin).rounds[rid]),
                       message="settled for good once the window closed")
    finally:
        await stop_all(nodes)


async def test_an_omitted_opening_is_proven_by_its_node_and_the_round_settled_again(
        tmp_path: Path) -> None:
    chain, nodes = await registered_swarm(tmp_path, genesis={"swarm_inclusion_window": WINDOW})
    try:
        for node in nodes:
            svc(node).settles = False  # nobody settles honestly: the test's settler does
        origin = nodes[0]
        state = await svc(origin).ask("What is 5+8?", fee=ROUND_FEE)
        rid = state.round_id
        await wait_for(lambda: all(rid in svc(n).rounds and svc(n).rounds[rid].status
                                   == "complete" for n in nodes), message="final")
        revealed = [node for node in nodes[1:] if node.node_id in state.answerers
                    and (node.node_id, KIND_ANSWER) in state.reveals]  # not the client
        victim = revealed[-1]
        omitted = omitting_settlement(origin, rid, omit=victim.node_id, settler=SETTLER)
        assert isinstance(omitted.payload, SettleSwarmRound)
        slashes = {s.node: s.amount for s in omitted.payload.outcome.slashes}
        assert victim.node_id in slashes  # the settlement makes the victim a no-show
        before = tip_state(victim).account(victim.node_id).balance
        await mine_block(chain, nodes, [omitted])
        held = held_round(tip_state(victim), rid)
        assert held is not None and held.settler == public_key(dev_seed(SETTLER))
        assert tip_state(victim).stake(victim.node_id).bonded == STAKE - slashes[victim.node_id]
        assert not svc(victim).duty.settled_for_good(svc(victim).rounds[rid])  # keep the data
        # the victim's watcher holds the opening and proves the omission
        await wait_for(lambda: bool(challenges(victim, rid)), message="challenge sent")
        (challenge,) = challenges(victim, rid)
        assert isinstance(challenge.payload, ChallengeSwarmRound)
        assert challenge.payload.claim == CLAIM_MISSING_OPENING
        assert challenge.payload.leaf[0].node == victim.node_id
        # the others hold the opening too, but leave the window's first half to its node
        assert chain.tip.height + 1 <= held.deadline - WINDOW // 2
        assert not any(challenges(other, rid) for other in nodes if other is not victim)
        svc(victim).settles = True  # the victim will settle the round again once it is void
        await mine_block(chain, nodes, [challenge])
        after = tip_state(victim)  # a live view of the tip: read numbers now
        challenged_balance = after.account(victim.node_id).balance
        bond = settler_bond(omitted.payload.request, omitted.payload.outcome)
        assert held_round(after, rid) is None and settled_round(after, rid) is None
        assert after.stake(victim.node_id).bonded == STAKE  # not slashed
        assert bond > ROUND_FEE
        # the node proved its own opening: no share for it, the settler's bond comes back
        assert after.account(public_key(dev_seed(SETTLER))).balance == \
            DEV_BALANCE - omitted.fee
        assert after.account(victim.node_id).balance == before - challenge.fee
        # the round is open again: the victim settles it with its full data, and when the
        # window closes it is paid as present
        await wait_for(lambda: bool(settlements(victim, rid)), message="settled again")
        await wait_for(lambda: svc(victim).rounds[rid].settlement_status.startswith(
            "submitted: "), message="status")
        others = [other for other in nodes if other is not victim]
        # their duty is off: they only note the void
        await wait_for(lambda: all(svc(other).rounds[rid].settlement_status.startswith(
            "voided: ") for other in others), message="void noted")
        (again,) = settlements(victim, rid)
        assert isinstance(again.payload, SettleSwarmRound)
        assert not again.payload.outcome.slashes
        paid = {p.node: p.amount for p in again.payload.outcome.payouts}
        assert victim.node_id in again.payload.outcome.ranking
        height = await mine_block(chain, nodes, [again])
        while chain.tip.height < height + WINDOW:
            await mine_block(chain, nodes, [])
        await mine_block(chain, nodes, [])  # the first block past the window pays out
        final = tip_state(victim)
        assert held_round(final, rid) is None and settled_round(final, rid) is not None
        assert final.stake(victim.node_id).bonded == STAKE
        await wait_for(lambda: svc(victim).duty.settled_for_good(svc(victim).rounds[rid]),
                       message="settled for good once the window closed")
        assert paid.get(victim.node_id, 0) > 0
        assert final.account(victim.node_id).balance == \
            challenged_balance - again.fee + paid[victim.node_id]
    finally:
        await stop_all(nodes)


async def test_an_offline_nodes_omitted_opening_is_proven_by_another_in_the_second_half(
        tmp_path: Path) -> None:
    """The omitted node does not watch (offline): another participant that holds its reveal
    proves it once the window's first half has passed; the node gets its slash back less the
    late-reveal penalty, and the prover earns no more than that penalty."""
    chain, nodes = await registered_swarm(tmp_path, genesis={"swarm_inclusion_window": WINDOW})
    try:
        for node in nodes:
            svc(node).settles = False
        origin = nodes[0]
        state = await svc(origin).ask("What is 4+9?", fee=ROUND_FEE)
        rid = state.round_id
        await wait_for(lambda: all(rid in svc(n).rounds and svc(n).rounds[rid].status
                                   == "complete" for n in nodes), message="final")
        revealed = [node for node in nodes[1:] if node.node_id in state.answerers
                    and (node.node_id, KIND_ANSWER) in state.reveals]
        victim = revealed[-1]
        svc(victim).duty.watching = False  # offline as far as the window is concerned
        omitted = omitting_settlement(origin, rid, omit=victim.node_id, settler=SETTLER)
        height = await mine_block(chain, nodes, [omitted])
        held = held_round(tip_state(victim), rid)
        assert held is not None and held.deadline == height + WINDOW
        provers = [n for n in nodes if n is not victim]
        # the first half of the window is the node's own: nobody else proves it yet
        while chain.tip.height + 1 <= held.deadline - WINDOW // 2:
            assert not any(challenges(n, rid) for n in provers)
            await mine_block(chain, nodes, [])
        await wait_for(lambda: any(challenges(n, rid) for n in provers),
                       message="another participant's challenge")
        prover = next(n for n in provers if challenges(n, rid))
        (challenge,) = challenges(prover, rid)
        assert isinstance(challenge.payload, ChallengeSwarmRound)
        assert challenge.payload.leaf[0].node == victim.node_id
        before = tip_state(prover).account(prover.node_id).balance
        await mine_block(chain, nodes, [challenge])
        after = tip_state(victim)
        assert held_round(after, rid) is None and settled_round(after, rid) is None
        penalty = STAKE * LATE_REVEAL_PENALTY_BPS // 10_000
        share = min(held.bond * CHALLENGER_SHARE_BPS // 10_000, penalty)
        assert 0 < share <= penalty
        assert after.stake(victim.node_id).bonded == STAKE - penalty
        refund = ROUND_FEE if prover is origin else 0  # the origin is the round's client
        assert after.account(prover.node_id).balance == before - challenge.fee + share + refund
        assert after.account(public_key(dev_seed(SETTLER))).balance == \
            DEV_BALANCE - omitted.fee - share
    finally:
        await stop_all(nodes)


async def test_a_wrong_outcome_by_data_root_is_voided_by_the_posted_leaves(
        tmp_path: Path) -> None:
    """A data-root settlement whose outcome pays one node another's share: every
    participant's own leaves have the settlement's root, so they post them, and the chain's
    recomputation voids the settlement."""
    chain, nodes = await registered_swarm(tmp_path, genesis={"swarm_inclusion_window": WINDOW})
    try:
        for node in nodes:
            svc(node).settles = False
        origin = nodes[0]
        state = await svc(origin).ask("What is 6+7?", fee=ROUND_FEE)
        rid = state.round_id
        await wait_for(lambda: all(rid in svc(n).rounds and svc(n).rounds[rid].status
                                   == "complete" for n in nodes), message="final")
        commitments, answer_openings, judgment_openings = round_data(svc(origin).rounds[rid])
        params = origin.chain.params
        beacon = origin.chain.block_id_at(beacon_height(state.announcement.request, params))
        assert beacon is not None
        payload, _leaves = build_root_settlement(
            tip_state(origin), height=state.height, beacon_block=beacon,
            request=state.announcement.request,
            answerers=state.answerers, judges=state.judges, commitments=commitments,
            answer_openings=answer_openings, judgment_openings=judgment_openings,
            min_stake=params.min_node_stake, epoch_blocks=params.swarm_epoch_blocks)
        a, b, *rest = payload.outcome.payouts
        greedy = dataclasses.replace(payload, outcome=dataclasses.replace(
            payload.outcome, payouts=(Payout(node=a.node, amount=a.amount + b.amount),
                                      Payout(node=b.node, amount=0), *rest)))
        key = dev_seed(SETTLER)
        tx = sign_transaction(key, chain_id=params.chain_id, fee=10, payload=greedy,
                              nonce=tip_state(origin).account(public_key(key)).nonce)
        await mine_block(chain, nodes, [tx])
        assert held_round(tip_state(origin), rid) is not None
        await wait_for(lambda: bool(posts(nodes[1], rid)), message="leaves posted")
        (post,) = posts(nodes[1], rid)
        before = tip_state(nodes[1]).account(nodes[1].node_id).balance
        await mine_block(chain, nodes, [post])
        after = tip_state(nodes[1])
        assert held_round(after, rid) is None and settled_round(after, rid) is None
        bond = settler_bond(greedy.request, greedy.outcome)
        assert after.account(public_key(key)).balance == DEV_BALANCE - tx.fee - bond
        assert after.account(nodes[1].node_id).balance == \
            before - post.fee + bond * CHALLENGER_SHARE_BPS // 10_000
    finally:
        await stop_all(nodes)


def posts(node: Node, round_id: bytes) -> list[Transaction]:
    return [tx for tx in node.mempool.transactions()
            if isinstance(tx.payload, PostRoundLeaves) and tx.payload.round_id == round_id
            and tx.sender == node.node_id]
