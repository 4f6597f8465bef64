"""``/metrics``: Prometheus text that parses and carries the node's real numbers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from node.api.errors import HttpLimits
from node.node import Node
from node.swarm.backend import LLM_CACHE_DIR
from swarm.runtime.llm.batched import LLMSwarmBackend
from tests.framework.chain import transfer
from tests.framework.llm import seed_cache
from tests.framework.nodes import (
    ApiTestNode,
    MinerStats,
    SwarmStats,
    node_config,
    swarm_service,
    wired,
)
from tests.framework.util import wait_for

pytestmark = pytest.mark.api_node

Client = TestClient[web.Request, web.Application]
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text: str) -> dict[str, float]:
    """Samples by name{labels}; checks every family has HELP and TYPE before its samples."""
    samples: dict[str, float] = {}
    typed: set[str] = set()
    helped: set[str] = set()
    histograms: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("gauge", "counter", "histogram")
            typed.add(name)
            if kind == "histogram":
                histograms.add(name)
        else:
            match = SAMPLE.match(line)
            assert match, line
            name, labels, value = match.groups()
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            if family in histograms:  # a histogram's _bucket{le}, _sum and _count
                assert name != family and (not name.endswith("_bucket") or 'le="' in labels)
                name_typed = family
            else:
                name_typed = name
            assert name_typed in typed and name_typed in helped, name
            samples[name + (labels or "")] = float(value)
    return samples


async def scrape(client: Client) -> dict[str, float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    return parse(await resp.text())


async def test_metrics_without_miner(node: ApiTestNode, client: Client) -> None:
    m = await scrape(client)
    assert m["pouwchain_height"] == 0 and m["pouwchain_peers"] == 0
    assert m["pouwchain_mempool_transactions"] == 0 and m["pouwchain_mining"] == 0
    assert m["pouwchain_blocks_mined_total"] == 0 and m["pouwchain_sync_progress"] == 1
    info = [k for k in m if k.startswith("pouwchain_info{")]
    assert info and 'network="dev"' in info[0] and 'chain_id="1337"' in info[0]
    node.mine()
    node.mine()
    tx = transfer(1, 0)
    await node.submit_transaction(tx)
    await node.peers.connect("127.0.0.1:1")
    node.syncing, node.sync_progress, node.best_peer_height = True, 0.5, 9
    m = await scrape(client)
    assert m["pouwchain_best_peer_height"] == 9
    assert m["pouwchain_height"] == 2 and m["pouwchain_peers"] == 1
    assert m["pouwchain_mempool_transactions"] == 1
    assert m["pouwchain_mempool_bytes"] == len(tx.encode())
    assert m["pouwchain_syncing"] == 1 and m["pouwchain_sync_progress"] == 0.5


async def test_metrics_with_miner_stats(node: ApiTestNode, client: Client) -> None:
    node.miner = MinerStats(blocks_mined=7, tickets_per_s=2500.0, useful_macs=300,
                            nonuseful_macs=100, jobs_done=2)
    m = await scrape(client)
    assert m["pouwchain_mining"] == 1 and m["pouwchain_blocks_mined_total"] == 7
    assert m["pouwchain_tickets_per_second"] == 2500.0
    assert m['pouwchain_work_macs_total{kind="useful"}'] == 300
    assert m['pouwchain_work_macs_total{kind="nonuseful"}'] == 100
    assert m["pouwchain_useful_work_ratio"] == 0.75 and m["pouwchain_jobs_done_total"] == 2


def inference(m: Mapping[str, float], what: str) -> dict[str, float]:
    """pouwchain_inference_<what>_total by its ``how`` label."""
    return {how: m[f'pouwchain_inference_{what}_total{{how="{how}"}}']
            for how in ("mined", "plain", "local")}


async def test_inference_counters_of_a_mining_node_are_the_miners(
        node: ApiTestNode, client: Client) -> None:
    """The model counts every product, the miner those that went through it: a mining node's
    products are all mined or plain, none local, and never counted twice."""
    node.miner = MinerStats(useful_macs=5000, inference_products=7, inference_macs=4000,
                            inference_mined_products=5, inference_mined_macs=3000)
    node.swarm = SwarmStats(products=7, macs=4000, answer_batches=1, answers=1)
    m = await scrape(client)
    assert inference(m, "products") == {"mined": 5, "plain": 2, "local": 0}
    assert inference(m, "macs") == {"mined": 3000, "plain": 1000, "local": 0}
    assert m['pouwchain_mined_macs_by_source_total{source="inference"}'] == 3000
    assert m['pouwchain_mined_macs_by_source_total{source="jobs"}'] == 2000


async def test_inference_counters_without_a_model_are_zero(
        node: ApiTestNode, client: Client) -> None:
    m = await scrape(client)
    assert inference(m, "products") == inference(m, "macs") == {
        "mined": 0, "plain": 0, "local": 0}
    node.swarm = SwarmStats()  # a swarm service whose backend counts nothing (built-in, API)
    assert inference(await scrape(client), "products")["local"] == 0


async def metrics_of(node: Node) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{node.port}/metrics") as resp:
        assert resp.status == 200
        return parse(await resp.text())


async def test_a_non_mining_node_serving_the_language_model_counts_its_products(
        tmp_path: Path, llm_cache: Path) -> None:
    """A real node without a miner serving the shipped SmolLM2 (int8): /metrics shows its
    model's products and MACs as local, equal to the swarm service's counters, and they
    grow with the node's answers."""
    seed_cache(llm_cache, tmp_path / "llm" / LLM_CACHE_DIR)  # its own cache, not converted again
    node = wired(node_config(tmp_path, "llm", swarm_backend="smollm2"))
    await node.start()
    try:
        assert node.miner is None
        service = swarm_service(node)
        backend = service.backend
        assert isinstance(backend, LLMSwarmBackend)

        async def agreed(more_than: int) -> dict[str, float] | None:
            """/metrics when the model's counters did not move while it was read."""
            before = dict(service.inference_stats())
            m = await metrics_of(node)
            if dict(service.inference_stats()) != before or before["products"] <= more_than:
                return None
            return m if inference(m, "products")["local"] == before["products"] and \
                inference(m, "macs")["local"] == before["macs"] else None

        m = await wait_for(lambda: agreed(0), 300, message="the warm-up's products")
        assert m["pouwchain_mining"] == 0
        assert inference(m, "products")["mined"] == inference(m, "products")["plain"] == 0
        assert m['pouwchain_mined_macs_by_source_total{source="inference"}'] == 0
        seen = int(inference(m, "products")["local"])
        answer = await backend.answer("What is 2+2?", max_tokens=2)
        assert answer.text
        m = await wait_for(lambda: agreed(seen), 300, message="the answer's products")
        assert inference(m, "macs")["local"] > 0
    finally:
        await node.stop()


async def test_http_connection_counts(tmp_path: Path) -> None:
    """A real node's API with a cap of 2 connections per address: a third is refused (429)
    and counted; the open connections are a gauge."""
    node = wired(node_config(tmp_path, "gate"))
    node.http_limits = HttpLimits(max_connections_per_ip=2)
    await node.start()
    gate = node.http_gate
    assert gate is not None
    try:
        first = await metrics_of(node)
        assert first["pouwchain_http_connections_refused_total"] == 0
        assert first["pouwchain_http_connections"] >= 1  # the scrape's own
        # the server sees the scrape's close a moment after the client: until then a second
        # held connection would be the third and refused (a race under load)
        await wait_for(lambda: gate.open["127.0.0.1"] == 0)
        held = [await asyncio.open_connection("127.0.0.1", node.port) for _ in range(2)]
        await wait_for(lambda: gate.open["127.0.0.1"] == 2)
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 429")
        writer.close()
        held[0][1].close()
        await wait_for(lambda: gate.open["127.0.0.1"] == 1)
        m = await metrics_of(node)
        assert m["pouwchain_http_connections_refused_total"] == 1
        assert m["pouwchain_http_connections"] == 2  # the one still held and the scrape
        held[1][1].close()
    finally:
        await node.stop()
