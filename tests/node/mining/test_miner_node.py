"""The miner and job service inside the real Node (in process, real sockets and LevelDB)."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from consensus.genesis import dev_seed
from consensus.tx import sign_transaction
from contracts.jobs import STATUS_DONE, job_record
from core.state import State
from node.api.auth import read_token
from node.mining.jobs import JobService, job_request, npy_bytes, prepare_operands, product_hash
from node.mining.miner import Miner
from node.node import Node
from tests.framework.nodes import start_node
from tests.framework.util import wait_for

pytestmark = pytest.mark.usefixtures("restore_torch_threads")


def api_url(node: Node, path: str) -> str:
    return f"http://127.0.0.1:{node.port}{path}"


async def test_mining_node_mines_relays_and_settles_a_job(tmp_path: Path) -> None:
    miner_node = await start_node(tmp_path, "miner", mine=True, services=True)
    watcher = await start_node(tmp_path, "watcher", peers=[miner_node.listen_address],
                               services=True)
    try:
        assert isinstance(miner_node.miner, Miner) and isinstance(miner_node.jobs, JobService)
        assert watcher.miner is None and isinstance(watcher.jobs, JobService)
        a = np.random.default_rng(5).integers(-64, 64, size=(13, 70), dtype=np.int8)
        b = np.random.default_rng(6).integers(-64, 64, size=(70, 9), dtype=np.int8)
        ops = prepare_operands(a, b)
        tx = sign_transaction(dev_seed(2), chain_id=miner_node.chain.params.chain_id, nonce=0,
                              fee=10, payload=job_request(ops, assignee=miner_node.node_id,
                                                          escrow=777))
        async with aiohttp.ClientSession() as http:
            form = aiohttp.FormData()
            form.add_field("a", npy_bytes(a), filename="a.npy")
            form.add_field("b", npy_bytes(b), filename="b.npy")
            form.add_field("tx", tx.encode(), filename="tx")  # raw canonical bytes work too
            async with http.post(api_url(miner_node, "/api/v1/jobs/matmul"), data=form) as r:
                assert r.status == 202, await r.text()
                job_id = (await r.json())["id"]
            view: dict[str, Any] = {}
            slowest = 0.0
            async with asyncio.timeout(180):  # a bound on a hung node, not a timing claim
                while not (view.get("status") == "done"
                           and view["on_chain"]["status"] == "done"):
                    t = time.perf_counter()
                    async with http.get(api_url(miner_node, f"/api/v1/jobs/{job_id}")) as r:
                        view = await r.json()
                    slowest = max(slowest, time.perf_counter() - t)
                    await asyncio.sleep(0.1)  # polling interval
            async with http.get(api_url(miner_node, "/api/v1/status")) as r:
                status = await r.json()
        product = np.load(io.BytesIO(base64.b64decode(view["product_npy_b64"])))
        assert np.array_equal(product, a.astype(np.int64) @ b.astype(np.int64))
        assert view["mode"] == "mined"
        # the API kept answering while the miner worked (how fast depends on the machine's
        # load: reported, not asserted; tests/node/mining/test_miner.py counts it in rounds)
        print(f"slowest job poll while mining: {slowest * 1000:.0f} ms")
        mining = status["mining"]
        assert mining["enabled"] is True and mining["blocks_mined"] >= 2
        assert mining["useful_macs"] == 13 * 70 * 9 and mining["jobs_done"] == 1
        # the watcher followed the miner's chain and sees who computed the job
        await wait_for(lambda: watcher.chain.tip_id == miner_node.chain.tip_id, timeout=30,
                         message="watcher synced")
        record = job_record(State(watcher.chain.state_view()), bytes.fromhex(job_id))
        assert record is not None and record.status == STATUS_DONE
        assert record.worker == miner_node.node_id
        assert record.result_hash == product_hash(product)
        async with aiohttp.ClientSession() as http:
            async with http.get(api_url(watcher, f"/api/v1/jobs/{job_id}")) as r:
                remote = await r.json()
            async with http.get(api_url(miner_node, "/api/v1/jobs")) as r:
                listing = await r.json()
        assert remote["status"] == "elsewhere"  # the watcher answers from the chain
        assert remote["on_chain"]["status"] == "done"
        assert remote["on_chain"]["worker"] == miner_node.node_id.hex()
        assert remote["result_hash"] == view["result_hash"]
        assert [j["id"] for j in listing["jobs"]] == [job_id]
        assert listing["jobs"][0]["on_chain"] == "done"
    finally:
        await watcher.stop()
        await miner_node.stop()
    assert miner_node.miner._thread is None  # stopped with the node


async def test_generate_on_a_validator(tmp_path: Path) -> None:
    node = await start_node(tmp_path, "v", services=True)
    try:
        token = read_token(node.config.datadir)
        async with aiohttp.ClientSession() as http:
            async with http.post(api_url(node, "/api/v1/miner/generate"), json={"count": 5},
                                 headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status == 200, await r.text()
                body = await r.json()
        assert len(body["blocks"]) == 5 and body["height"] == 5 == node.chain.height
        assert body["blocks"][-1] == node.chain.tip_id.hex()
        assert node.miner is None  # generate works without --mine, like Bitcoin's
    finally:
        await node.stop()


async def test_a_mining_nodes_inference_is_mined_and_wins_blocks(tmp_path: Path) -> None:
    """On a mining node the built-in model's matmuls go through the miner (useful work on
    the current template): the answers equal a non-mining node's, the products count as
    useful work, and once a block is due an inference product's ticket wins it."""
    node = await start_node(tmp_path, "inference", services=True, mine=True,
                            swarm_backend="builtin:arith-l", mining_block_interval=0.5)
    plain = await start_node(tmp_path, "plain", swarm_backend="builtin:arith-l", services=True)
    try:
        service = node.swarm  # type: ignore[attr-defined]
        prompts = ["What is 12+30?", "What is 72*9+45?", "What is 99-57?"]
        mined = [(await service.backend.answer(p, max_tokens=16)).text for p in prompts]
        unmined = [(await plain.swarm.backend.answer(p, max_tokens=16)).text  # type: ignore
                   for p in prompts]
        assert mined == unmined and mined[0] == "42"
        stats = node.miner.stats()  # type: ignore[union-attr]
        assert stats["inference_products"] > 0 and \
            stats["useful_macs"] >= stats["inference_mined_macs"]
        async with asyncio.timeout(300):  # a bound on a miner that never wins, not a timing claim
            while node.miner.stats()["inference_blocks"] == 0:  # type: ignore[union-attr]
                await service.backend.answer("What is 45+46?", max_tokens=16)
        height = node.chain.height
        assert height >= 1 and node.chain.tip_header.certificate
    finally:
        await plain.stop()
        await node.stop()
