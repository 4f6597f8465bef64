"""The swarm with the shipped language model, end to end on real node processes: three nodes
serve SmolLM2-135M-Instruct (int8; the miner's node mines its products) with the testnet's
heterogeneous sampling settings, stake, register and calibrate by themselves; the official
openai client asks "What is the capital of France?", the answer names Paris, and the round
settles on chain, the same on every node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from consensus.genesis import load_genesis_config
from node.swarm.backend import LLM_CACHE_DIR
from testnet.launcher import swarm_settings
from tests.framework.llm import seed_cache
from tests.framework.nodes import TestNetwork, TestNode
from tests.framework.swarm import beacon_wait
from tests.framework.util import wait_until

pytestmark = pytest.mark.slow  # real node processes

NODES = 3
QUESTION = "What is the capital of France?"
LOAD_TIMEOUT = 300.0  # three processes convert and load the model on a shared CPU
# A calibration must land while its seed block is among the last CALIBRATION_WINDOW (64)
# blocks, so the chain's pace bounds how slow a node may answer: the window is 64 intervals.
# Three SmolLM2 nodes answered their 16 calibration questions in 106-193 s each on a 2-vCPU
# Zen 2 beside a busy core and the rest of the suite (35-50 s on the Sapphire Rapids before);
# at 1 s a block every seed went stale. 5 s gives a 320 s window.
BLOCK_INTERVAL = 5.0
CALIBRATED_TIMEOUT = 900.0  # loading, then answering, possibly twice


def _llm_registration(node: TestNode) -> dict[str, Any]:
    status: dict[str, Any] = node.api("GET", "/api/v1/swarm/registration", auth=False)
    return status


def _calibrated(nodes: list[TestNode]) -> list[TestNode] | None:
    """The calibrated nodes, once there is one."""
    done = [n for n in nodes if _llm_registration(n)["phase"] == "calibrated"]
    return done or None


def _ask_france(client: openai.OpenAI, origin: TestNode) -> tuple[str, dict[str, Any]] | None:
    """The answer and the round view at the origin, once the round is drawn from the
    registry (None while no registered node is eligible yet: a calibration counts from the
    next candidate table on)."""
    try:
        completion = client.chat.completions.create(
            model="pouwchain-swarm", messages=[{"role": "user", "content": QUESTION}])
    except openai.APIStatusError as exc:
        if exc.status_code == 503:
            return None
        raise
    round_id = (completion.model_extra or {})["round_id"]
    view: dict[str, Any] = origin.api("GET", f"/api/v1/rounds/{round_id}", auth=False)
    if str(view["settlement_status"]).startswith("not on chain"):
        return None
    return str(completion.choices[0].message.content), view


def test_openai_client_asks_the_language_model_swarm_and_the_round_settles(
        network: TestNetwork, llm_cache: Path) -> None:
    nodes = [network.add_node(start=False, mine=i == 0, dev_key=i, config={
        **swarm_settings(i), "mining_block_interval": BLOCK_INTERVAL}) for i in range(NODES)]
    for node in nodes:  # each opens its own datadir/llm-cache, seeded: no conversion
        seed_cache(llm_cache, node.datadir / LLM_CACHE_DIR)
        node.launch()
    for node in nodes:
        node.wait_started(LOAD_TIMEOUT)
    network.connect_all(nodes)

    calibrated = wait_until(lambda: _calibrated(nodes), CALIBRATED_TIMEOUT, interval=0.5,
                            message="a language-model node calibrated on chain")
    print("calibrated:", [str(n) for n in calibrated],
          [_llm_registration(n).get("calibration") for n in nodes])

    origin = nodes[1]
    client = openai.OpenAI(base_url=f"{origin.url}/v1", api_key="none", max_retries=0,
                           timeout=120)
    # a calibration counts from the next candidate table (an epoch of blocks) on
    params = load_genesis_config(network.genesis).params
    answer, view = wait_until(lambda: _ask_france(client, origin),
                              120 + 2 * params.swarm_epoch_blocks * BLOCK_INTERVAL,
                              interval=0.5, message="a round drawn from the registry")
    print(f"answer {answer!r}; round timings at the origin (ms): {view['timings_ms']}; "
          f"answers {[a['text'] for a in view['answers']]}")
    assert "Paris" in answer
    assert answer == view["answer"]
    round_id = view["round_id"]

    def settled() -> list[dict[str, Any]] | None:
        views = [n.api("GET", f"/api/v1/rounds/{round_id}", auth=False) for n in nodes]
        return views if all(str(v["settlement_status"]).startswith("settled at height")
                            for v in views) else None

    # the settlement waits for the round's beacon block, k blocks above its request
    views = wait_until(settled, 120 + beacon_wait(params, block_interval=BLOCK_INTERVAL),
                       interval=0.5,
                       message="the settlement on chain, seen by every node")
    result = views[0]["result"]
    assert result is not None and all(v["result"] == result for v in views)
    assert {v["answer"] for v in views} == {answer}
    print("settled:", views[0]["settlement_status"])
