"""A round on a chain with a beacon delay (docs/swarm.md §5.2a "Ties"), across in-process nodes
over real sockets and LevelDB with the real built-in models: no settlement is sent until the
round's beacon block is mined; then the settlement names that block and its outcome is the
one the beacon's seed gives, on chain and in every node's round view."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.tx import Transaction
from contracts.swarm import MAX_REQUEST_LAG, SettleSwarmRound, beacon_height, settled_round
from core.params import DEFAULT_SWARM_BEACON_DELAY
from node.chain.chainstore import load_genesis
from node.node import NodeRejected
from node.swarm.settlement_duty import round_settlement
from swarm.settlement import beacon_seed
from tests.framework.chain import extend, fork
from tests.framework.nodes import swarm_service as svc
from tests.framework.swarm import (
    mine_block,
    registered_swarm,
    settlement_sent,
    settlements,
    stop_all,
    tip_state,
)
from tests.framework.util import wait_for

DELAY = 3


def test_the_built_in_dev_network_has_the_default_delay() -> None:
    # `pouwchain node` without a genesis file: a client cannot grind the tie order there, and
    # a request asked as late as a node allows still commits before its beacon block
    params = load_genesis(None).params
    assert params.swarm_beacon_delay == DEFAULT_SWARM_BEACON_DELAY > MAX_REQUEST_LAG


async def test_a_round_settles_with_its_beacon_seed(tmp_path: Path) -> None:
    chain, nodes = await registered_swarm(tmp_path, genesis={"swarm_beacon_delay": DELAY})
    origin = nodes[0]
    try:
        state = await svc(origin).ask("What is 8+9?")
        request = state.announcement.request
        assert request.beacon_height == state.height == origin.chain.height
        beacon = beacon_height(request, origin.chain.params)
        assert beacon == state.height + DELAY
        # the fast path answered; the settlement waits for the beacon block
        await wait_for(lambda: svc(origin).settlement_status(state).startswith(
            f"waiting for the beacon block at height {beacon}"), message="waiting")
        for _ in range(DELAY - 1):
            await mine_block(chain, nodes, [])
        assert not any(settlements(n, state.round_id) for n in nodes)
        await mine_block(chain, nodes, [])  # the beacon block
        tx = await settlement_sent(origin, state.round_id)
        assert isinstance(tx.payload, SettleSwarmRound)
        beacon_id = chain.headers[beacon].block_id()
        assert tx.payload.beacon_block == beacon_id
        seeded = round_settlement(state, beacon_seed(state.round_id, beacon_id)).outcome
        assert tx.payload.outcome == seeded
        height = await mine_block(chain, nodes, [tx])
        settled = settled_round(tip_state(nodes[1]), state.round_id)
        assert settled is not None and settled.height == height
        assert settled.outcome_id == seeded.id()
        # every node's round view shows the chain's outcome once the beacon is mined
        for node in nodes:
            local = svc(node).rounds[state.round_id]
            assert local.beacon_seeded and local.settlement is not None
            assert local.settlement.outcome == seeded
    finally:
        await stop_all(nodes)


async def test_after_a_reorg_the_settlement_names_the_new_chain_s_beacon(
        tmp_path: Path) -> None:
    """A settlement built on one branch names that branch's beacon block; after a reorg to a
    branch with another block at that height it cannot apply: the node drops it from its
    mempool, and builds one naming the new branch's block, which settles."""
    chain, nodes = await registered_swarm(tmp_path, genesis={"swarm_beacon_delay": DELAY})
    origin = nodes[0]
    for node in nodes:
        svc(node).settles = False  # no automatic settlements: the test builds them
    duty = svc(origin).duty
    try:
        state = await svc(origin).ask("What is 8+9?")
        beacon = beacon_height(state.announcement.request, origin.chain.params)
        for _ in range(DELAY - 1):
            await mine_block(chain, nodes, [])
        branch = fork(chain)  # forks below the beacon height
        await mine_block(chain, nodes, [])  # branch A's beacon block
        old = await duty.host.call_chain(duty._transaction, state)
        assert isinstance(old, Transaction) and isinstance(old.payload, SettleSwarmRound)
        assert old.payload.beacon_block == chain.headers[beacon].block_id()
        await origin.submit_transaction(old)  # valid on branch A: pending
        # branch B: another block at the beacon height, and one more: the heavier chain
        blocks = [extend(branch, seed=7), extend(branch, seed=7)]
        await origin.process_blocks(blocks)
        await wait_for(lambda: all(n.chain.tip_id == branch.tip.block_id() for n in nodes),
                       message="reorg to branch B")
        new_beacon = branch.headers[beacon].block_id()
        # the pending settlement names branch A's block: the node drops it (it would hold
        # up the settler's later nonces), and it is refused if sent again
        await wait_for(lambda: not settlements(origin, state.round_id),
                       message="the stale settlement dropped")
        assert new_beacon != old.payload.beacon_block
        with pytest.raises(NodeRejected, match=r"swarm\.beacon_block"):
            await origin.submit_transaction(old)
        new = await duty.host.call_chain(duty._transaction, state)
        assert isinstance(new, Transaction) and isinstance(new.payload, SettleSwarmRound)
        assert new.payload.beacon_block == new_beacon
        seeded = round_settlement(state, beacon_seed(state.round_id, new_beacon)).outcome
        assert new.payload.outcome == seeded
        await origin.submit_transaction(new)
        height = await mine_block(branch, nodes, [new])
        settled = settled_round(tip_state(nodes[1]), state.round_id)
        assert settled is not None and settled.height == height
        assert settled.outcome_id == seeded.id()
    finally:
        await stop_all(nodes)
