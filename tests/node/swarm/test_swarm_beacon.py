"""A round on a chain with a beacon delay (docs/swarm.md §5.2a "Ties"), across in-process nodes
over real sockets and LevelDB with the real built-in models: no settlement is sent until the
round's beacon block is mined; then the settlement names that block and its outcome is the
one the beacon's seed gives, on chain and in every node's round view."""

from __future__ import annotations

from pathlib import Path

from contracts.swarm import SettleSwarmRound, beacon_height, settled_round
from node.swarm.settlement_duty import round_settlement
from swarm.settlement import beacon_seed
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
