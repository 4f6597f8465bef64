"""End to end on real node processes: three swarm nodes (built-in variants from node.toml),
`pouwchain ask` against one node and the official openai client against another; every node
shows the same settled round."""

from __future__ import annotations

import subprocess
import sys

import openai

from testnet.launcher import swarm_backend
from testnet.process import REPO_ROOT
from tests.functional.framework import TestNetwork, wait_until


def test_swarm_round_on_real_nodes(network: TestNetwork) -> None:
    nodes = [network.add_node(start=False, config={"swarm_backend": swarm_backend(i)})
             for i in range(3)]
    for node in nodes:
        node.launch()
    for node in nodes:
        node.wait_started()
    network.connect(nodes[1], nodes[0])
    network.connect(nodes[2], nodes[0])
    network.connect(nodes[2], nodes[1])

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
