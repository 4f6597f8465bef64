"""The miner in real node processes: a mining node's inference wins are not orphaned by its
own self-generated round on the same parent, and `inference_blocks` counts chain blocks."""

from __future__ import annotations

import collections
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from node.api.explorer.pages import MAX_ROWS
from tests.framework.nodes import TestNetwork, TestNode
from tests.framework.util import wait_until

pytestmark = pytest.mark.slow

MINED = re.compile(r"mined block [0-9a-f]+ at height (\d+)")
INFERENCE_WINS = 3  # inference-won blocks the miner must report before the checks


def mined_heights(node: TestNode) -> collections.Counter[int]:
    """Height -> blocks the node's miner stored at it (its "mined block" log lines)."""
    return collections.Counter(int(m.group(1)) for e in node.log_events()
                               if (m := MINED.match(str(e.get("event", "")))))


def chain_sources(node: TestNode) -> collections.Counter[str]:
    """The node's whole best chain by work source ("inference", "self", ...)."""
    view: dict[str, Any] = node.api("GET", f"/explorer/blocks?count={MAX_ROWS}", auth=False)
    assert len(view["blocks"]) == view["height"] + 1  # the whole chain
    return collections.Counter(str(b["source"]) for b in view["blocks"])


def test_inference_wins_are_on_the_chain_not_lost_to_the_miners_own_round(
        tmp_path: Path) -> None:
    """Node 0 mines (a paced dev chain, 1 s blocks) and answers with arith-l, so its
    inference products race its self-generated rounds for each due block. The miner offers
    one block per parent: it logs at most one block per height (no own sibling), and every
    block its `inference_blocks` counts is an inference block of the best chain."""
    network = TestNetwork(tmp_path)
    try:
        miner = network.add_node(mine=True, start=False, config={
            "swarm_backend": "builtin:arith-l", "mining_block_interval": 1.0,
            "swarm_settle_backoff": 1})
        other = network.add_node(start=False, config={
            "swarm_backend": "builtin:arith-l?form=1", "swarm_settle_backoff": 1})
        network.start_all([miner, other])
        network.connect(other, miner)
        asked = itertools.count(1)

        def inference_won() -> bool:
            n = next(asked)
            miner.api("POST", "/v1/chat/completions", auth=False, timeout=120,
                      messages=[{"role": "user", "content": f"What is {n}+{2 * n}?"}])
            return int(miner.status()["mining"]["inference_blocks"]) >= INFERENCE_WINS

        # a hang bound (a miner whose inference never wins), not a timing claim
        wait_until(inference_won, 900, interval=0,
                   message=f"{INFERENCE_WINS} blocks won by the miner's inference products")

        questions = next(asked) - 1
        heights = mined_heights(miner)
        twice = {h: c for h, c in heights.items() if c > 1}
        print(f"questions: {questions}; blocks mined: {sum(heights.values())} at "
              f"{len(heights)} heights; heights mined twice: {twice}")

        def counted_equals_chain() -> tuple[int, int] | None:
            counted = int(miner.status()["mining"]["inference_blocks"])
            on_chain = chain_sources(miner)["inference"]
            print(f"inference_blocks {counted}, on the chain {on_chain}")
            return (counted, on_chain) if counted == on_chain else None

        assert heights and not twice
        # the counter moves after its block became the tip: wait for the two to agree
        wait_until(counted_equals_chain, 120, interval=0.5,
                   message="inference_blocks equals the chain's inference blocks")
    finally:
        network.teardown()  # every node stopped
