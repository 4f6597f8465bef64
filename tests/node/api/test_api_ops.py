"""The operator's view of a node (issue 13): ``/health`` and ``/ready``, the ``swarm``
section of ``/api/v1/status``, the swarm's ``/metrics`` (counters and round-latency and
settlement-lag histograms), ``GET /api/v1/rounds`` and JSON 404s on unknown routes. Real
nodes on real sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from node.node import Node
from tests.framework.nodes import ApiTestNode, node_config, serve, wired
from tests.framework.nodes import swarm_service as svc
from tests.framework.swarm import mine_block, registered_swarm, settlement_sent, stop_all

POEM = "Write a short poem about the sea."  # the built-in models abstain on it


async def get(node: Node, path: str) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{node.port}{path}") as resp:
        body = await resp.json() if resp.content_type == "application/json" \
            else await resp.text()
        return resp.status, dict(resp.headers), body


def samples(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric's samples (``""``: no labels)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f"pouwchain_{name}{{") or line.startswith(f"pouwchain_{name} "):
            head, value = line.rsplit(" ", 1)
            out[head[len(f"pouwchain_{name}"):].strip("{}")] = float(value)
    return out


async def test_health_and_ready_on_a_plain_node(tmp_path: Path) -> None:
    node = wired(node_config(tmp_path, "plain"))
    await node.start()
    try:
        status, _, body = await get(node, "/health")
        assert status == 200 and body["status"] == "ok"
        status, _, body = await get(node, "/ready")
        assert status == 200 and body["ready"] is True
        assert body["checks"]["synced"]["ok"] and body["checks"]["swarm_registered"]["ok"]
        # unknown routes: JSON 404s in the one error shape, OpenAI's under /v1/ too
        for path in ("/nope", "/api/v1/nope", "/v1/embeddings"):
            status, headers, body = await get(node, path)
            assert status == 404 and headers["Content-Type"].startswith("application/json")
            assert body["error"]["code"] == body["reason"] == "not_found"
            assert body["error"]["type"] == "not_found_error" and path in body["error"]["message"]
        _, _, body = await get(node, "/v1/embeddings")
        assert "/v1/chat/completions" in body["error"]["message"]
        status, headers, body = await get(node, "/v1/completions")  # served, with POST
        assert status == 405 and headers["Allow"] == "POST"
        assert body["error"]["code"] == "method_not_allowed"
    finally:
        await node.stop()


async def test_ready_is_503_while_the_swarm_node_registers(tmp_path: Path) -> None:
    # registering needs stake: a fresh unfunded identity never gets past it
    node = wired(node_config(tmp_path, "joining", swarm_backend="builtin:arith-s",
                             swarm_register=True))
    await node.start()
    try:
        status, headers, body = await get(node, "/ready")
        assert status == 503 and int(headers["Retry-After"]) > 0
        assert body["error"]["code"] == "not_ready"
        checks = body["error"]["checks"]
        assert checks["synced"]["ok"] and not checks["swarm_registered"]["ok"]
        assert "registration" in checks["swarm_registered"]["detail"]
        _, _, status_body = await get(node, "/api/v1/status")
        swarm = status_body["swarm"]
        assert swarm["enabled"] and swarm["model"] == "arith-s" and not swarm["registered"]
        assert not swarm["capable"]
        assert swarm["registration"]["enabled"] and swarm["registration"]["phase"] != "calibrated"
        status, _, _ = await get(node, "/health")
        assert status == 200  # alive all along
    finally:
        await node.stop()


async def test_ready_is_503_while_syncing(tmp_path: Path) -> None:
    node = ApiTestNode(tmp_path / "api")
    client = await serve(node.app)
    try:
        node.syncing, node.sync_progress = True, 0.25
        async with client.get("/ready") as resp:
            body = await resp.json()
            assert resp.status == 503 and body["reason"] == "not_ready"
            assert body["error"]["checks"]["synced"] == {"ok": False, "detail": "syncing (25%)"}
        node.syncing, node.best_peer_height = False, 7  # a peer is ahead
        async with client.get("/ready") as resp:
            assert resp.status == 503
        node.best_peer_height = 0
        async with client.get("/ready") as resp:
            assert resp.status == 200
    finally:
        await client.close()
        node.close()


async def test_status_and_metrics_show_the_swarm(tmp_path: Path) -> None:
    chain, nodes = await registered_swarm(tmp_path, registered=3, count=3)
    origin = nodes[0]
    try:
        answered = await svc(origin).ask("What is 40+13?")
        failed = await svc(origin).ask(POEM)
        assert answered.answer is not None and failed.error_code == "unsupported_prompt"
        await mine_block(chain, nodes, [await settlement_sent(origin, answered.round_id)])

        _, _, status = await get(origin, "/api/v1/status")
        swarm = status["swarm"]
        assert swarm["enabled"] and swarm["registered"] and swarm["capable"]  # by the test chain
        assert swarm["registration"]["phase"] == "off"  # not by its own registration machine
        rounds = swarm["rounds"]
        assert (rounds["originated"], rounds["answered"]) == (2, 1)
        assert rounds["failed"] == {"unsupported_prompt": 1}
        assert rounds["abstained_by_reason"].get("unsupported_prompt", 0) == rounds["abstained"]
        settlement = swarm["settlement"]
        lag = chain.tip.height - answered.height
        assert settlement["settled"] == 1 and settlement["last_lag_blocks"] == lag >= 1
        assert settlement["unsettled"] == 1
        assert settlement["oldest_unsettled_blocks"] == chain.tip.height - failed.height
        # a node the origin drew: its abstention is counted where it was sent
        drawn = next(n for n in nodes if n.node_id in failed.answerers)
        _, _, drawn_status = await get(drawn, "/api/v1/status")
        assert drawn_status["swarm"]["rounds"]["abstained_by_reason"]["unsupported_prompt"] >= 1

        _, _, text = await get(origin, "/metrics")
        assert samples(text, "swarm_rounds_total")['outcome="answered"'] == 1
        assert samples(text, "swarm_rounds_total")['outcome="unsupported_prompt"'] == 1
        latency = samples(text, "swarm_round_seconds_count")
        assert latency == {'outcome="answered"': 1, 'outcome="failed"': 1}
        buckets = samples(text, "swarm_round_seconds_bucket")
        assert buckets['outcome="failed",le="+Inf"'] == 1
        assert "# TYPE pouwchain_swarm_round_seconds histogram" in text
        assert samples(text, "swarm_settlement_lag_blocks_count") == {"": 1}
        assert samples(text, "swarm_settlement_lag_blocks_sum") == {"": lag}
        # the failed round settles too (a refund), its settlement not mined here
        assert samples(text, "swarm_unsettled_rounds") == {"": 1}
        assert samples(text, "swarm_oldest_unsettled_blocks") == {
            "": chain.tip.height - failed.height}
        _, _, drawn_text = await get(drawn, "/metrics")
        abstained = samples(drawn_text, "swarm_abstentions_total")
        assert abstained['role="answer",reason="unsupported_prompt"'] >= 1

        # the rounds this node holds, newest first
        status_code, _, listed = await get(origin, "/api/v1/rounds?limit=1")
        assert status_code == 200 and listed["count"] == 2
        assert [r["round_id"] for r in listed["rounds"]] == [failed.round_id.hex()]
        assert listed["rounds"][0]["error_code"] == "unsupported_prompt"
        for bad in ("0", "x", "1001", "-1"):
            status_code, _, body = await get(origin, f"/api/v1/rounds?limit={bad}")
            assert status_code == 400 and body["error"]["code"] == "bad_limit"
    finally:
        await stop_all(nodes)
