"""End to end on real node processes: three swarm nodes (built-in variants from node.toml),
`pouwchain ask` against one node and the official openai client against another; every node
shows the same settled round."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from typing import Any

import openai
import pytest

from consensus.genesis import dev_seed, load_genesis_config
from consensus.tx import public_key, sign_transaction
from contracts.registry import (
    CALIBRATION_QUESTIONS,
    RegisterSwarmNode,
    SubmitCalibration,
    calibration_seed,
)
from contracts.staking import Stake
from swarm.calibration import calibration_questions
from swarm.runtime.factory import make_backend
from testnet.client import ApiError
from testnet.genesis import DEV_CHAIN_ID
from testnet.launcher import ARITH, swarm_backend
from testnet.process import REPO_ROOT
from tests.framework.nodes import TestNetwork, TestNode, address_of
from tests.framework.swarm import beacon_wait, wait_past_inclusion_windows
from tests.framework.util import wait_until

pytestmark = pytest.mark.slow  # real node processes


def test_swarm_round_on_real_nodes(network: TestNetwork) -> None:
    nodes = [network.add_node(start=False, config={"swarm_backend": swarm_backend(i, ARITH)})
             for i in range(3)]
    network.start_all(nodes)
    network.connect_all(nodes)

    done = subprocess.run(
        [sys.executable, "-m", "node.cli", "ask", "What is 17+25?", "--node", nodes[0].url],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].strip(), done.stdout
    round_line = next(line for line in lines if line.startswith("round "))
    round_id = round_line.split()[1]
    assert "(complete)" in round_line
    assert any(line.startswith("settle   not on chain") for line in lines)

    client = openai.OpenAI(base_url=f"{nodes[1].url}/v1", api_key="none", max_retries=0)
    completion = client.chat.completions.create(
        model="pouwchain-swarm", messages=[{"role": "user", "content": "What is 6*7?"}])
    extra = completion.model_extra or {}
    assert completion.choices[0].message.content
    assert extra["answerer"] in {n.node_id for n in nodes}

    def views() -> list[dict[str, object]] | None:
        out = [n.api("GET", f"/api/v1/rounds/{round_id}", auth=False) for n in nodes]
        return out if all(v["status"] == "complete" for v in out) else None

    settled = wait_until(views, 30, message="the round complete on every node")
    assert isinstance(settled, list)
    first = settled[0]
    assert first["answer"] == lines[0]
    for view in settled:
        assert view["result"] == first["result"] and view["chosen"] == first["chosen"]


def register_swarm_nodes(network: TestNetwork, via: TestNode, accounts: range) -> None:
    """Dev accounts ``accounts`` (running ``swarm_backend(i, ARITH)``) stake, register and pass
    calibration (the expected answers), sent through ``via``; every node syncs the blocks."""
    models = {i: make_backend(swarm_backend(i, ARITH)).model_id for i in accounts}
    for i in accounts:
        via.send_tx(sign_transaction(dev_seed(i), chain_id=DEV_CHAIN_ID, nonce=0, fee=10,
                                     payload=Stake(amount=9_000)))
        via.send_tx(sign_transaction(dev_seed(i), chain_id=DEV_CHAIN_ID, nonce=1, fee=10,
                                     payload=RegisterSwarmNode(models=(models[i],))))
    wait_until(lambda: all(via.account(address_of(i))["nonce"] == 2 for i in accounts),
               60, message="registrations mined")

    def calibrate(i: int) -> bool:
        if via.account(address_of(i))["nonce"] == 3:
            return True
        if any(address_of(i) in str(t) for t in via.mempool()):
            return False
        tip = bytes.fromhex(via.tip())
        questions = calibration_questions(calibration_seed(tip, public_key(dev_seed(i))),
                                          count=CALIBRATION_QUESTIONS)
        tx = sign_transaction(dev_seed(i), chain_id=DEV_CHAIN_ID, nonce=2, fee=10,
                              payload=SubmitCalibration(seed_block=tip, answers=tuple(
                                  str(q.expected).encode() for q in questions)))
        with contextlib.suppress(ApiError):  # the tip moved under us: retry on the next
            via.send_tx(tx)
        return False

    wait_until(lambda: all([calibrate(i) for i in accounts]), 90, interval=0.2,
               message="calibrations mined")
    network.sync_blocks(timeout=60)


def ask_registry_round(client: openai.OpenAI, question: str) -> Any:
    """The completion of the first round the registry can draw: a 503 (no eligible node yet,
    e.g. while a per-epoch candidate table does not show new nodes) is asked again."""
    def ask() -> Any:
        try:
            return client.chat.completions.create(
                model="pouwchain-swarm", messages=[{"role": "user", "content": question}])
        except openai.APIStatusError as exc:
            if exc.status_code == 503 and "registry" in exc.message:
                return None
            raise

    return wait_until(ask, 60, interval=0.5, message="a round drawn from the registry")


def test_openai_client_round_settles_on_chain(network: TestNetwork) -> None:
    """Three node processes with funded identities stake, register and calibrate over the
    API; the openai client asks one; the settlement lands in a block and every node shows the
    round settled and the answerers' new reputations."""
    nodes = []
    for i in range(3):
        node = network.add_node(start=False, mine=i == 0, dev_key=i,
                                config={"swarm_backend": swarm_backend(i, ARITH),
                                        "mining_block_interval": 0.5})
        nodes.append(node)
    network.start_all(nodes)
    network.connect_all(nodes)
    register_swarm_nodes(network, nodes[0], range(3))

    client = openai.OpenAI(base_url=f"{nodes[1].url}/v1", api_key="none", max_retries=0)
    before = {address_of(i): nodes[0].account(address_of(i))["reputation"]
              for i in range(3)}  # what calibration gave
    completion = ask_registry_round(client, "What is 9*9?")
    assert completion.choices[0].message.content
    round_id = (completion.model_extra or {})["round_id"]

    def settled() -> list[dict[str, object]] | None:
        views = [n.api("GET", f"/api/v1/rounds/{round_id}", auth=False) for n in nodes]
        return views if all(str(v["settlement_status"]).startswith("settled at height")
                            for v in views) else None

    # the settlement waits for the round's beacon block, k blocks above its request
    params = load_genesis_config(network.genesis).params
    views = wait_until(settled, 60 + beacon_wait(params, block_interval=0.5),
                       message="the settlement on chain, seen by every node")
    print("round timings at the origin (ms):", views[1]["timings_ms"])
    again = client.chat.completions.create(  # a warm round (models loaded, caches hot)
        model="pouwchain-swarm", messages=[{"role": "user", "content": "What is 12+13?"}])
    warm = nodes[1].api("GET", f"/api/v1/rounds/{(again.model_extra or {})['round_id']}",
                        auth=False)
    print("warm round timings at the origin (ms):", warm["timings_ms"])
    assert warm["status"] == "complete" and warm["answer"] == again.choices[0].message.content
    result = views[0]["result"]
    assert isinstance(result, dict)
    for view in views:
        assert view["result"] == result
    # the warm round settles too and moves the same nodes: once both have landed, each
    # node's reputation is what the later settlement claimed for it
    warm_id = (again.model_extra or {})["round_id"]
    wait_until(lambda: all(str(n.api("GET", f"/api/v1/rounds/{warm_id}", auth=False)[
        "settlement_status"]).startswith("settled at height") for n in nodes),
        60 + beacon_wait(params, block_interval=0.5),
        message="the warm round's settlement on chain")
    warm_view = nodes[0].api("GET", f"/api/v1/rounds/{warm_id}", auth=False)
    later = warm_view["result"]
    # the testnet genesis holds settlements for its inclusion window: reputations move when
    # the windows close (in the first block past them)
    wait_past_inclusion_windows([n.url for n in nodes], settled_heights=(
        views[0]["settled"]["height"], warm_view["settled"]["height"]),
        window=params.swarm_inclusion_window)
    changes: dict[str, int] = {}
    for settled_result in (result, later):  # a node's change covers all its roles in a round
        per_node = {e["node"]: e["reputation_change"]
                    for e in settled_result["answers"] + settled_result["judges"]}
        for address, change in per_node.items():
            changes[address] = changes.get(address, 0) + change
    for address, change in changes.items():
        for node in nodes:  # both settlements' changes are in every node's state
            assert node.account(address)["reputation"] == max(0, before[address] + change)
    assert any(a["reputation"] != 0 for a in result["answers"]) or len(result["answers"]) < 2


def test_round_settles_when_its_origin_dies(network: TestNetwork) -> None:
    """Three funded node processes stake, register and calibrate; a fourth node
    with no backend and an unfunded identity coordinates a round and is killed as soon as the
    client has its answer. Its own settlement can never land, so a backup participant (the
    first in draw order) settles after ``settle_backoff``; every surviving node shows the round
    settled by that backup."""
    nodes = []
    for i in range(3):
        node = network.add_node(start=False, mine=i == 0, dev_key=i, config={
            "swarm_backend": swarm_backend(i, ARITH), "mining_block_interval": 0.5})
        nodes.append(node)
    origin = network.add_node(start=False)  # coordinates only: not a candidate, cannot pay
    everyone = [*nodes, origin]
    network.start_all(everyone)
    for i, node in enumerate(everyone):
        for other in everyone[i + 1:]:
            network.connect(node, other)
    register_swarm_nodes(network, nodes[0], range(3))

    client = openai.OpenAI(base_url=f"{origin.url}/v1", api_key="none", max_retries=0)
    completion = ask_registry_round(client, "What is 7+8?")
    answered = time.monotonic()
    origin.kill()
    round_id = (completion.model_extra or {})["round_id"]
    assert completion.choices[0].message.content

    def settled() -> list[dict[str, Any]] | None:
        views = [n.api("GET", f"/api/v1/rounds/{round_id}", auth=False) for n in nodes]
        for view in views:
            assert not str(view["settlement_status"]).startswith("not on chain"), view
        return views if all(str(v["settlement_status"]).startswith("settled at height")
                            for v in views) else None

    views = wait_until(settled, 90 + beacon_wait(load_genesis_config(network.genesis).params,
                                                 block_interval=0.5),
                       message="a backup's settlement on chain, on every node")
    elapsed = time.monotonic() - answered
    record = views[0]["settled"]
    participants = [node for node in dict.fromkeys([*views[0]["answerers"],
                                                    *views[0]["judges"]])
                    if node != origin.node_id]
    print(f"settled by backup {participants.index(record['settler']) + 1} of "
          f"{len(participants)} after {elapsed:.1f} s: {views[0]['settlement_status']}")
    assert record["settler"] == participants[0]
    assert record["settler"] != origin.node_id
    for view in views:
        assert view["settled"] == record and view["status"] == "complete"
        assert view["result"] == views[0]["result"]
        assert view["settlement_status"] == \
            f"settled at height {record['height']}: tx {record['tx']} by {record['settler']}"
