"""The explorer's pages on a real node in-process (the browser tests are
tests/functional/test_explorer.py): headers, escaping, search and 404, the certificate, live
blocks over SSE, and which work a block came from."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from consensus.genesis import dev_seed
from consensus.tx import sign_transaction
from contracts.jobs import JobRequest, job_id_of
from core.state import State
from node.api.explorer.pages import ACCOUNT_TXS, CSP
from node.api.explorer.work import (
    INFERENCE,
    JOBS,
    SELF,
    InferenceRoots,
    JobRoots,
    WeightOperands,
    source_of,
)
from pouw.mining import operand_roots
from pouw.params import R_MIN
from swarm.runtime.builtin import (
    VARIANT_NAMES,
    ArithModel,
    BuiltinBackend,
    mined_weight_roots,
    padded_weight,
    variant_path,
)
from tests.framework.chain import transfer
from tests.framework.nodes import LiveNode
from tests.framework.util import wait_for


async def fetch(live: LiveNode, path: str, *, status: int = 200,
                redirects: bool = True) -> tuple[aiohttp.ClientResponse, str]:
    async with live.session() as http, http.get(path, allow_redirects=redirects) as resp:
        text = await resp.text()
        assert resp.status == status, (path, text[:300])
        return resp, text


async def test_every_page_is_html_with_a_content_security_policy(node: LiveNode) -> None:
    await node.mine([transfer(1, 0, amount=42)])
    for path in ("/", "/block/1", "/swarm", "/jobs", "/chat",
                 f"/account/{node.node.node_id.hex()}"):
        resp, text = await fetch(node, path)
        assert resp.content_type == "text/html", path
        assert resp.headers["Content-Security-Policy"] == CSP
        assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "<script>" not in text  # the one script is a file: <script src=...>
        assert "http://" not in text.replace(node.url, "") and "https://" not in text
    _, overview = await fetch(node, "/")
    assert re.search(r'id="height" class="big">1<', overview)
    resp, script = await fetch(node, "/explorer/static/explorer.js")
    assert resp.content_type == "text/javascript" and "EventSource" in script
    await fetch(node, "/explorer/static/nothing.js", status=404)


async def test_user_text_is_escaped(node: LiveNode) -> None:
    query = "<script>alert(1)</script>"
    _, text = await fetch(node, f"/search?q={query}", status=404)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>alert" not in text


async def test_search_finds_heights_blocks_txs_and_accounts(node: LiveNode) -> None:
    tx = transfer(1, 0, amount=42)
    block = await node.mine([tx])
    block_id = block.header.block_id().hex()
    to = tx.payload.to.hex()  # type: ignore[attr-defined]
    for query, page in (("1", "/block/1"), (block_id, f"/block/{block_id}"),
                        (tx.id().hex(), f"/tx/{tx.id().hex()}"), (to, f"/account/{to}")):
        resp, _ = await fetch(node, f"/search?q={query}", status=302, redirects=False)
        assert resp.headers["Location"] == page
    _, account = await fetch(node, f"/account/{to}")
    assert tx.id().hex()[:8] in account  # its recent transactions
    for unknown in ("2", "ab" * 32, "not a thing", ""):
        _, text = await fetch(node, f"/search?q={unknown}", status=404)
        assert "Not found" in text
    for path in ("/block/7", f"/block/{'ab' * 32}", "/block/x", f"/tx/{'ab' * 32}",
                 f"/round/{'ab' * 32}", "/round/zz", "/account/12"):
        await fetch(node, path, status=404)


async def test_block_page_shows_the_certificate(node: LiveNode) -> None:
    block = await node.mine()
    _, text = await fetch(node, "/block/1")
    cert = text[text.index('id="certificate"'):]
    ticket = re.search(r"Ticket</th><td class=\"mono\">(0x[0-9a-f]{64})", cert)
    assert ticket is not None and int(ticket.group(1), 16) <= block.header.target
    assert "row " in cert and " of " in cert  # tile and chunk
    _, genesis = await fetch(node, "/block/0")
    assert "not mined" in genesis


async def test_new_blocks_reach_the_live_stream(node: LiveNode) -> None:
    async with node.session() as http, http.get("/explorer/events") as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert await resp.content.readline() == b"retry: 2000\n"
        await resp.content.readline()  # the stream is open: the explorer listens
        block = await node.mine()
        lines = [await asyncio.wait_for(resp.content.readline(), 30) for _ in range(2)]
    assert lines[0] == b"event: block\n"
    event = json.loads(lines[1].removeprefix(b"data: "))
    assert event["height"] == event["tip_height"] == 1
    assert event["id"] == block.header.block_id().hex()


async def test_a_generated_block_is_self_generated_work(node: LiveNode) -> None:
    token = node.api.token
    async with node.session() as http, http.post(
            "/api/v1/miner/generate", json={"count": 1},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        mined = (await resp.json())["blocks"]
    assert node.miner is None  # not mining on its own: the builder's miner answered
    _, text = await fetch(node, "/")
    row = text[text.index(f'<td class="mono"><a href="/block/{mined[0]}"'):]
    assert f'class="tag {SELF}"' in row[:row.index("</tr>")]


async def test_a_block_on_a_jobs_operands_is_jobs_work(node: LiveNode) -> None:
    """A header whose operand roots are a job's on chain is that job's work, whoever mined
    it; another miner's block on operands no one knows is self-generated."""
    request = JobRequest(assignee=node.node.node_id, root_a=b"\x01" * 32, root_b=b"\x02" * 32,
                         m=16, k=256, n=16, escrow=100, timeout=50, salt=bytes(32))
    tx = sign_transaction(dev_seed(1), chain_id=node.chain.params.chain_id, nonce=0, fee=10,
                          payload=request)
    block = await node.mine([tx])
    roots = JobRoots()
    roots.catch_up(node.chain)
    state = State(node.chain.state_view())
    job_id = job_id_of(requester=tx.sender, root_a=request.root_a, root_b=request.root_b,
                       m=16, k=256, n=16, salt=bytes(32))
    on_job = dataclasses.replace(block.header, root_a=request.root_a, root_b=request.root_b)
    assert roots.job_of(on_job, state) == job_id
    assert source_of(on_job, jobs=roots, state=state, inference={}, miner=None) == JOBS
    assert source_of(block.header, jobs=roots, state=state, inference={},
                     miner=None) == SELF


async def test_a_block_on_a_known_models_weights_is_inference_work(node: LiveNode) -> None:
    """A header whose B root is a shipped model's weight matrix, padded as mining pads it,
    is inference work of that model, whoever mined it; the rows route says so, and other
    blocks stay self-generated."""
    block = await node.mine()
    inference = InferenceRoots(None).compute()
    assert set(inference.values()) == set(VARIANT_NAMES)
    served = BuiltinBackend.load("arith-xs")  # the node's own model: listed once
    assert isinstance(served, WeightOperands)
    assert [name for name, _ in InferenceRoots(served).models()] == list(VARIANT_NAMES)
    weight = ArithModel(variant_path("arith-m")).weights["h1.fc2"]
    padded = padded_weight(weight, R_MIN)
    root_b = operand_roots(np.zeros((8, padded.shape[0]), dtype=np.int8), padded)[1]
    assert inference[root_b] == "arith-m"
    mined = dataclasses.replace(block.header, root_b=root_b)
    roots = JobRoots()
    state = State(node.chain.state_view())
    assert source_of(mined, jobs=roots, state=state, inference=inference,
                     miner=None) == INFERENCE
    assert source_of(block.header, jobs=roots, state=state, inference=inference,
                     miner=None) == SELF
    _, text = await fetch(node, "/explorer/blocks?count=5")
    view = json.loads(text)
    assert [(b["height"], b["source"]) for b in view["blocks"]] == [(1, SELF), (0, "genesis")]
    assert view["shares"] == {JOBS: 0.0, INFERENCE: 0.0, SELF: 1.0}
    for bad in ("0", "1001", "x", "-1"):
        resp, text = await fetch(node, f"/explorer/blocks?count={bad}", status=400)
        assert resp.content_type == "application/json"
        assert json.loads(text)["error"]["code"] == "bad_count"


async def test_the_nodes_own_model_joins_the_index_when_its_roots_are_ready(
        tmp_path: Path) -> None:
    """A model that is not a shipped variant (arith-xs with its weight columns rotated,
    served from its own file) is labelled too, once its roots are computed off the loop;
    the shipped variants' roots never wait for it."""
    with safe_open(str(variant_path("arith-xs")), framework="np") as f:
        tensors = {k: np.roll(f.get_tensor(k), 1, axis=1) if k.endswith(".wq")
                   else f.get_tensor(k) for k in f.keys()}
        metadata = {**(f.metadata() or {}), "name": "custom-xs"}
    path = tmp_path / "custom-xs.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    backend = BuiltinBackend.load(path)
    roots = InferenceRoots(backend)
    assert roots.own_model() is backend
    first = await roots.roots()
    assert set(VARIANT_NAMES) <= set(first.values())
    index = await wait_for(lambda: _with_model(roots, "custom-xs"), 60,
                           message="the node's own model's roots computed")
    assert {r for r, name in index.items() if name == "custom-xs"} == mined_weight_roots(
        np.ascontiguousarray(w) for w in backend.weight_operands().values())
    assert set(VARIANT_NAMES) | {"custom-xs"} == set(index.values())


async def _with_model(roots: InferenceRoots, name: str) -> Mapping[bytes, str] | None:
    index = await roots.roots()
    return index if name in index.values() else None


async def test_the_account_page_lists_the_accounts_history(node: LiveNode) -> None:
    """The account page's transactions are GET /api/v1/accounts/{address}/txs's: pending
    first, then confirmed, newest first, both directions."""
    sender = transfer(1, 0, to=2, amount=42).sender.hex()
    await node.mine([transfer(1, 0, to=2, amount=42)])
    await node.mine([transfer(2, 0, to=1, amount=7)])
    pending = transfer(1, 1, to=2, amount=5)
    async with node.session() as http:
        async with http.post("/api/v1/txs", json={"tx": pending.encode().hex()}) as resp:
            assert resp.status in (200, 202), await resp.text()
        async with http.get(f"/api/v1/accounts/{sender}/txs?limit={ACCOUNT_TXS}") as resp:
            listed = (await resp.json())["txs"]
    assert [(t["status"], t["direction"]) for t in listed] == [
        ("pending", "out"), ("confirmed", "in"), ("confirmed", "out")]
    _, text = await fetch(node, f"/account/{sender}")
    table = text[text.index('id="history"'):]
    assert re.findall(r'href="/tx/([0-9a-f]{64})"', table) == [t["id"] for t in listed]
    assert "pending" in table and ">in<" in table and ">out<" in table


async def test_a_node_stops_with_a_live_stream_open(node: LiveNode) -> None:
    """Node.stop ends the explorer's SSE streams instead of waiting on them."""
    async with node.session() as http, http.get("/explorer/events") as resp:
        await resp.content.readline()
        await asyncio.wait_for(node.stop(), 30)
        assert await asyncio.wait_for(resp.content.read(), 30) == b"\n"
