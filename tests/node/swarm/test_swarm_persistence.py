"""Swarm rounds outlive a restart until they settle (node.swarm.round.RoundStore).

Every participant keeps an on-chain round's signed messages in its LevelDB as they arrive. A
node that stops after a round completes, before anyone settled it, comes back with the round
(same commitments and reveals) and settles it; once the settlement is on chain every node
drops the record. A record that cannot be read is dropped with a log line.
"""

from __future__ import annotations

from pathlib import Path

import msgpack

from node.builder import SwarmOptions, build_node
from node.chain.db import Database
from node.swarm.round import ROUND_PREFIX, RoundStore
from tests.framework.nodes import swarm_service as svc
from tests.framework.swarm import (
    FAST,
    mine_block,
    registered_swarm,
    settlement_sent,
    stop_all,
)
from tests.framework.util import wait_for


def kept(db: Database, round_id: bytes) -> bool:
    return db.get(ROUND_PREFIX + round_id) is not None


async def test_a_restarted_origin_settles_the_round_it_kept(tmp_path: Path) -> None:
    # backups wait long: only the restarted origin settles here
    chain, nodes = await registered_swarm(tmp_path, settle_backoff=600.0)
    origin, others = nodes[0], nodes[1:]
    try:
        svc(origin).settles = False  # it stops before it would settle
        state = await svc(origin).ask("What is 5+8?")
        await wait_for(lambda: all(state.round_id in svc(n).rounds and svc(n).rounds[
            state.round_id].status == "complete" for n in others), message="final")
        assert state.height and all(kept(n.chain.db, state.round_id) for n in nodes)
        config = origin.config
        await origin.stop()
        nodes = others
        origin = build_node(config, swarm_options=SwarmOptions(
            answer_timeout=FAST["answer_timeout"], judge_timeout=FAST["judge_timeout"],
            reveal_timeout=FAST["reveal_timeout"], settle_backoff=600.0))
        restored = svc(origin).rounds[state.round_id]
        assert restored.status == "complete"
        assert restored.all_commitments() == state.all_commitments()
        assert restored.reveals == state.reveals
        assert (restored.answerers, restored.judges, restored.height) == \
            (state.answerers, state.judges, state.height)
        await origin.start()
        nodes = [origin, *others]
        for other in others:
            await origin.peers.connect(other.listen_address)
        tx = await settlement_sent(origin, state.round_id)
        assert tx.sender == origin.node_id
        # the others got the round's ``final`` on connect (whether the settlement itself
        # reached them depends on whether it was sent before they connected: not asserted)
        await wait_for(lambda: all(svc(n).rounds[state.round_id].status == "complete"
                                   for n in nodes), message="final")
        await mine_block(chain, nodes, [tx])
        await wait_for(lambda: not any(kept(n.chain.db, state.round_id) for n in nodes),
                       message="records dropped once settled")
        assert all(svc(n).rounds[state.round_id].settled is not None for n in nodes)
    finally:
        await stop_all(nodes)


def test_an_unreadable_round_record_is_dropped(tmp_path: Path) -> None:
    with Database(tmp_path / "db") as db:
        db.put(ROUND_PREFIX + bytes(32), b"\xc1")
        db.put(ROUND_PREFIX + bytes(31) + b"\x01", msgpack.packb([1, 2, 3]))
        rounds, bad = RoundStore(db).load()
        assert rounds == []
        assert sorted(r for r, _ in bad) == sorted([bytes(32), bytes(31) + b"\x01"])
        assert list(db.iterate_prefix(ROUND_PREFIX)) == []
