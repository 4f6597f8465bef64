"""``/metrics``: Prometheus text that parses and carries the node's real numbers."""

from __future__ import annotations

import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.framework.chain import transfer
from tests.framework.nodes import ApiTestNode, MinerStats

pytestmark = pytest.mark.api_node

Client = TestClient[web.Request, web.Application]
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text: str) -> dict[str, float]:
    """Samples by name{labels}; checks every family has HELP and TYPE before its samples."""
    samples: dict[str, float] = {}
    typed: set[str] = set()
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("gauge", "counter")
            typed.add(name)
        else:
            match = SAMPLE.match(line)
            assert match, line
            name, labels, value = match.groups()
            assert name in typed and name in helped, name
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
