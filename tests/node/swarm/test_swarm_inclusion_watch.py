"""The inclusion window across in-process nodes over real sockets and LevelDB: a settler
leaves an honest answerer's opening out; the answerer's watcher proves it on chain, so it is
not slashed and the settler loses its bond (docs/swarm.md §7a)."""

from __future__ import annotations

from pathlib import Path

from consensus.genesis import DEV_BALANCE, dev_seed
from consensus.tx import Transaction, public_key
from contracts.swarm import (
    CHALLENGER_SHARE_BPS,
    ChallengeSwarmRound,
    SettleSwarmRound,
    held_round,
    settled_round,
    settler_bond,
)
from node.node import Node
from swarm.inclusion import CLAIM_MISSING_OPENING
from swarm.messages import KIND_ANSWER
from tests.framework.nodes import swarm_service as svc
from tests.framework.swarm import (
    STAKE,
    mine_block,
    omitting_settlement,
    registered_swarm,
    stop_all,
    tip_state,
)
from tests.framework.util import wait_for

WINDOW = 6
SETTLER = 3  # dev account 3: funded, not a swarm node


def challenges(node: Node, round_id: bytes) -> list[Transaction]:
    return [tx for tx in node.mempool.transactions()
            if isinstance(tx.payload, ChallengeSwarmRound) and tx.payload.round_id == round_id
            and tx.sender == node.node_id]


async def test_an_omitted_opening_is_challenged_and_the_settler_slashed(tmp_path: Path) -> None:
    chain, nodes = await registered_swarm(tmp_path, genesis={"swarm_inclusion_window": WINDOW})
    try:
        for node in nodes:
            svc(node).settles = False  # nobody settles honestly: the test's settler does
        origin = nodes[0]
        state = await svc(origin).ask("What is 5+8?")
        rid = state.round_id
        await wait_for(lambda: all(rid in svc(n).rounds and svc(n).rounds[rid].status
                                   == "complete" for n in nodes), message="final")
        revealed = [node for node in nodes if node.node_id in state.answerers
                    and (node.node_id, KIND_ANSWER) in state.reveals]
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
        # the victim's watcher holds the opening and proves the omission
        await wait_for(lambda: bool(challenges(victim, rid)), message="challenge sent")
        (challenge,) = challenges(victim, rid)
        assert isinstance(challenge.payload, ChallengeSwarmRound)
        assert challenge.payload.claim == CLAIM_MISSING_OPENING
        assert challenge.payload.leaf[0].node == victim.node_id
        await mine_block(chain, nodes, [challenge])
        after = tip_state(victim)
        bond = settler_bond(omitted.payload.request, omitted.payload.outcome)
        assert held_round(after, rid) is None and settled_round(after, rid) is None
        assert after.stake(victim.node_id).bonded == STAKE  # not slashed
        assert after.account(public_key(dev_seed(SETTLER))).balance == \
            DEV_BALANCE - omitted.fee - bond  # the settler lost its bond
        assert after.account(victim.node_id).balance == \
            before - challenge.fee + bond * CHALLENGER_SHARE_BPS // 10_000
        assert svc(victim).rounds[rid].settlement_status.startswith("challenged: ")
    finally:
        await stop_all(nodes)
