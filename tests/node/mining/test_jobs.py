"""Matmul jobs end to end in process: upload, exact product, receipt on chain; API errors."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from consensus.genesis import DEV_BALANCE, dev_config, dev_seed
from consensus.tx import Transaction, public_key, sign_transaction
from contracts import Transfer
from contracts.jobs import STATUS_DONE, JobRequest, job_record
from core.state import State
from node.api.auth import create_token
from node.api.chain import error_middleware
from node.chain.mempool import Mempool, MempoolConfig
from node.mining.jobs import (
    JOB,
    JOB_OPERANDS,
    JobLimits,
    JobService,
    job_request,
    npy_bytes,
    prepare_operands,
    product_hash,
)
from pouw.params import K_MAX
from tests.framework.nodes import Host, serve
from tests.framework.util import wait_for

pytestmark = pytest.mark.usefixtures("restore_torch_threads")

CLIENT = 1
ESCROW = 5_000
FEE = 10


def job_operands(seed: int, m: int = 30, k: int = 100,
                 n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(-64, 64, size=(m, k), dtype=np.int8),
            rng.integers(-64, 64, size=(k, n), dtype=np.int16))  # any integer dtype


def request_tx(host: Host, a: np.ndarray, b: np.ndarray, *, nonce: int = 0,
               seed: bytes = dev_seed(CLIENT), escrow: int = ESCROW,
               assignee: bytes | None = None) -> Transaction:
    ops = prepare_operands(a, b)
    payload = job_request(ops, assignee=assignee or bytes(host.identity.verify_key),
                          escrow=escrow, timeout=100, salt=os.urandom(32))
    return sign_transaction(seed, chain_id=1337, nonce=nonce, fee=FEE, payload=payload)


def multipart(a: Any, b: Any, tx: Any) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in (("a", a), ("b", b), ("tx", tx)):
        if value is None:
            continue
        if isinstance(value, np.ndarray):
            value = npy_bytes(value)
        if isinstance(value, Transaction):
            value = value.encode().hex()
        form.add_field(name, value, filename=f"{name}.npy" if name != "tx" else "tx")
    return form


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.int64) @ b.astype(np.int64)


def product_of(view: dict[str, Any]) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(view["product_npy_b64"])), allow_pickle=False)


async def start_jobs(host: Host) -> TestClient[Any, Any]:
    host.app.middlewares.append(error_middleware)
    await host.attach_mining()
    return await serve(host.app)


@pytest.fixture
async def mining(tmp_path: Path) -> AsyncIterator[tuple[Host, TestClient[Any, Any]]]:
    host = Host(tmp_path, mine=True, mining_block_interval=0.0, mining_interval=0.05)
    client = await start_jobs(host)
    yield host, client
    await client.close()
    host.close()


@pytest.fixture
async def validator(tmp_path: Path) -> AsyncIterator[tuple[Host, TestClient[Any, Any]]]:
    host = Host(tmp_path, mine=False)
    client = await start_jobs(host)
    yield host, client
    await client.close()
    host.close()


async def test_job_on_a_mining_node_is_mined_exact_and_settled(
        mining: tuple[Host, TestClient[Any, Any]]) -> None:
    host, client = mining
    a, b = job_operands(1)
    tx = request_tx(host, a, b)
    response = await client.post("/api/v1/jobs/matmul", data=multipart(a, b, tx))
    assert response.status == 202, await response.text()
    view = await response.json()
    job_id = view["id"]
    assert view["status"] in ("queued", "running", "done")
    assert view["shape"] == [30, 100, 20]
    assert view["padded_shape"] == [32, 112, 20, 16]

    async def settled() -> bool:
        nonlocal view
        view = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
        return bool(view["status"] == "done" and view["on_chain"]["status"] == "done")

    await wait_for(settled)
    product = product_of(view)
    assert product.shape == (30, 20)
    assert np.array_equal(product, reference(a, b))
    me = bytes(host.identity.verify_key).hex()
    assert view["computed_by"] == me and view["on_chain"]["worker"] == me
    assert view["mode"] == "mined"  # mined as a block's useful work
    block = host.chain.get_block(bytes.fromhex(view["mined_in_block"]))
    ops = prepare_operands(a, b)
    assert block is not None and (block.header.root_a, block.header.root_b) == (
        ops.root_a, ops.root_b)
    state = State(host.chain.state_view())
    record = job_record(state, bytes.fromhex(job_id))
    assert record is not None and record.status == STATUS_DONE
    assert record.worker == bytes(host.identity.verify_key)
    assert record.result_hash == product_hash(reference(a, b))
    assert view["on_chain"]["receipt_height"] == record.closed_height
    assert view["on_chain"]["request_height"] == record.created_height < record.closed_height
    assert state.account(public_key(dev_seed(CLIENT))).balance == DEV_BALANCE - FEE - ESCROW
    stats = await (await client.get("/api/v1/miner")).json()
    assert stats["useful_macs"] == 30 * 100 * 20
    assert stats["jobs_done"] == 1
    assert stats["nonuseful_macs"] > 0


async def test_job_on_a_validator_is_computed_and_settled_by_generate(
        validator: tuple[Host, TestClient[Any, Any]]) -> None:
    host, client = validator
    token = create_token(host.config.datadir)
    auth = {"Authorization": f"Bearer {token}"}
    a, b = job_operands(2, m=9, k=300, n=7)
    tx = request_tx(host, a, b)
    body = {"a": base64.b64encode(npy_bytes(a)).decode(),
            "b": base64.b64encode(npy_bytes(b)).decode(),
            "tx": base64.b64encode(tx.encode()).decode()}
    response = await client.post("/api/v1/jobs/matmul", json=body)
    assert response.status == 202, await response.text()
    job_id = (await response.json())["id"]
    view: dict[str, Any] = {}

    async def computed() -> bool:
        nonlocal view
        view = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
        return bool(view["status"] == "done")

    await wait_for(computed)
    assert view["mode"] == "computed" and view["on_chain"]["status"] == "unconfirmed"
    assert np.array_equal(product_of(view), reference(a, b))
    # nobody mines here: generate includes the request, then the receipt
    response = await client.post("/api/v1/miner/generate", json={"count": 1}, headers=auth)
    assert response.status == 200, await response.text()
    mined = await response.json()
    assert len(mined["blocks"]) == 1 and mined["height"] == 1

    async def receipt_pending() -> bool:
        view = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
        return bool(view["on_chain"]["receipt_tx"])

    await wait_for(receipt_pending)
    response = await client.post("/api/v1/miner/generate", json={"count": 2}, headers=auth)
    assert response.status == 200
    assert len((await response.json())["blocks"]) == 2
    await wait_for(lambda: _status_is(client, job_id, "done"))
    view = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
    assert view["on_chain"]["request_height"] == 1
    assert view["on_chain"]["receipt_height"] == 2


async def _status_is(client: TestClient[Any, Any], job_id: str, status: str) -> bool:
    view = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
    return bool(view["on_chain"]["status"] == status)


def _npy(x: Any) -> bytes:
    return npy_bytes(np.asarray(x))


@pytest.mark.parametrize(("make", "status", "reason"), [
    (lambda h, a, b: multipart(a, None, request_tx(h, a, b)), 400, "missing_field"),
    (lambda h, a, b: multipart(b"garbage", b, request_tx(h, a, b)), 400, "bad_npy"),
    (lambda h, a, b: multipart(a.astype(np.float32), b, request_tx(h, a, b)), 400, "bad_dtype"),
    (lambda h, a, b: multipart(a[None], b, request_tx(h, a, b)), 400, "bad_shape"),
    (lambda h, a, b: multipart(np.full_like(a, 64), b, request_tx(h, a, b)), 400, "bad_values"),
    (lambda h, a, b: multipart(a, b[:5], request_tx(h, a, b)), 400, "shape_mismatch"),
    (lambda h, a, b: multipart(a, b, b"\x01\x02"), 400, "bad_tx"),
    (lambda h, a, b: multipart(a, b, request_tx(h, a, b, assignee=bytes(32))), 400,
     "wrong_assignee"),
    (lambda h, a, b: multipart(a, b, request_tx(h, a, b * 0)), 400, "operands_mismatch"),
    (lambda h, a, b: multipart(a, b, sign_transaction(
        dev_seed(CLIENT), chain_id=1337, nonce=0, fee=1,
        payload=Transfer(to=bytes(32), amount=1))), 400, "not_a_job_request"),
    (lambda h, a, b: multipart(a, b, request_tx(h, a, b, seed=dev_seed(77))), 400,
     "tx_rejected"),  # an unfunded client cannot lock the escrow
    (lambda h, a, b: multipart(a, b, request_tx(h, a, b, escrow=0)), 400, "escrow_too_low"),
])
async def test_matmul_input_errors(validator: tuple[Host, TestClient[Any, Any]], make: Any,
                                   status: int, reason: str) -> None:
    host, client = validator
    a, b = job_operands(3)
    response = await client.post("/api/v1/jobs/matmul", data=make(host, a, b))
    assert response.status == status, await response.text()
    body = await response.json()
    assert body["reason"] == reason, body
    assert host.jobs.jobs == {}
    assert len(host.mempool) == 0


async def test_matmul_body_errors(validator: tuple[Host, TestClient[Any, Any]]) -> None:
    _, client = validator
    for kwargs, status, reason in (
        ({"data": b"x", "headers": {"Content-Type": "text/plain"}}, 415,
         "unsupported_media_type"),
        ({"data": b"{", "headers": {"Content-Type": "application/json"}}, 400, "bad_json"),
        ({"json": {"a": "AAAA"}}, 400, "bad_json"),
        ({"json": {"a": "!!", "b": "AA", "tx": "00"}}, 400, "bad_encoding"),
    ):
        response = await client.post("/api/v1/jobs/matmul", **kwargs)
        assert response.status == status, await response.text()
        assert (await response.json())["reason"] == reason


async def test_too_large_shapes_are_refused(validator: tuple[Host, TestClient[Any, Any]]) -> None:
    """k past K_MAX has its own reason, telling the client to split along k."""
    host, client = validator
    m, k = 8, K_MAX + 1
    a = np.zeros((m, k), dtype=np.int8)
    b = np.zeros((k, 4), dtype=np.int8)

    payload = JobRequest(assignee=bytes(host.identity.verify_key), root_a=bytes(32),
                         root_b=bytes(32), m=m, k=k, n=4, escrow=1, timeout=1,
                         salt=bytes(32))
    tx = sign_transaction(dev_seed(CLIENT), chain_id=1337, nonce=0, fee=1, payload=payload)
    response = await client.post("/api/v1/jobs/matmul", data=multipart(a, b, tx))
    assert response.status == 400
    body = await response.json()
    assert body["reason"] == "k_too_large"
    assert "split the product along k" in json.dumps(body)


async def test_duplicate_job_and_unknown_ids(validator: tuple[Host, TestClient[Any, Any]]) -> None:
    host, client = validator
    a, b = job_operands(4)
    tx = request_tx(host, a, b)
    first = await client.post("/api/v1/jobs/matmul", data=multipart(a, b, tx))
    assert first.status == 202
    again = await client.post("/api/v1/jobs/matmul", data=multipart(a, b, tx))
    assert again.status == 409
    assert (await again.json())["reason"] == "duplicate_job"
    missing = await client.get(f"/api/v1/jobs/{'ab' * 32}")
    assert missing.status == 404 and (await missing.json())["reason"] == "job_not_found"
    bad = await client.get("/api/v1/jobs/xyz")
    assert bad.status == 400 and (await bad.json())["reason"] == "bad_job_id"


async def test_generate_requires_the_token(validator: tuple[Host, TestClient[Any, Any]]) -> None:
    host, client = validator
    token = create_token(host.config.datadir)
    url = "/api/v1/miner/generate"
    response = await client.post(url, json={"count": 1})
    assert response.status == 401 and (await response.json())["reason"] == "token_required"
    response = await client.post(url, json={"count": 1}, headers={"Authorization": "Bearer x"})
    assert response.status == 403 and (await response.json())["reason"] == "bad_token"
    for count in (0, -1, "3", 10**6):
        response = await client.post(url, json={"count": count},
                                     headers={"Authorization": f"Bearer {token}"})
        assert response.status == 400 and (await response.json())["reason"] == "bad_count"
    assert host.chain.height == 0


async def test_old_products_are_dropped_past_the_memory_budget(
        validator: tuple[Host, TestClient[Any, Any]]) -> None:

    host, client = validator
    host.jobs.limits = JobLimits(max_kept_product_bytes=30 * 20 * 4 + 100)  # one product
    ids = []
    for nonce, seed in enumerate((5, 6)):
        a, b = job_operands(seed)
        response = await client.post("/api/v1/jobs/matmul",
                                     data=multipart(a, b, request_tx(host, a, b, nonce=nonce)))
        assert response.status == 202
        ids.append((await response.json())["id"])
        await wait_for(lambda job_id=ids[-1]: _computed(client, job_id))
    first = await (await client.get(f"/api/v1/jobs/{ids[0]}")).json()
    second = await (await client.get(f"/api/v1/jobs/{ids[1]}")).json()
    assert first["product_dropped"] is True and "product_npy_b64" not in first
    assert first["result_hash"]  # the hash stays: the client can still check a copy
    assert "product_npy_b64" in second


async def _computed(client: TestClient[Any, Any], job_id: str) -> bool:
    view = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
    return bool(view["status"] == "done")


async def test_job_in_a_round_that_wins_nothing_is_still_exact(tmp_path: Path) -> None:

    genesis = dev_config(initial_target=1)  # nobody wins: no block carries the job
    host = Host(tmp_path, genesis=genesis, clock=lambda: genesis.timestamp + 5, mine=True)
    client = await start_jobs(host)
    try:
        a, b = job_operands(7)
        response = await client.post("/api/v1/jobs/matmul",
                                     data=multipart(a, b, request_tx(host, a, b)))
        assert response.status == 202
        job_id = (await response.json())["id"]
        await wait_for(lambda: _computed(client, job_id))
        view = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
        assert view["mode"] == "mining" and view["mined_in_block"] is None
        assert np.array_equal(product_of(view), reference(a, b))
        assert host.miner.stats()["useful_macs"] == 30 * 100 * 20
    finally:
        await client.close()
        host.close()


async def test_size_limits_answer_413(validator: tuple[Host, TestClient[Any, Any]]) -> None:

    host, client = validator
    a, b = job_operands(8)
    host.jobs.limits = JobLimits(max_matrix_bytes=1000)  # a is 3,128 bytes as .npy
    response = await client.post("/api/v1/jobs/matmul",
                                 data=multipart(a, b, request_tx(host, a, b)))
    assert response.status == 413 and (await response.json())["reason"] == "too_large"
    host.jobs.limits = JobLimits(max_product_entries=30 * 20 - 1)
    response = await client.post("/api/v1/jobs/matmul",
                                 data=multipart(a, b, request_tx(host, a, b)))
    assert response.status == 413 and (await response.json())["reason"] == "too_large"
    host.jobs.limits = JobLimits(max_queued=0)
    response = await client.post("/api/v1/jobs/matmul",
                                 data=multipart(a, b, request_tx(host, a, b)))
    assert response.status == 503 and (await response.json())["reason"] == "queue_full"
    assert len(host.mempool) == 0  # nothing refused was admitted


# -- the job store: jobs outlive the process (node.mining.jobs.JobStore) ----------------------

async def test_jobs_survive_a_restart_queued_then_done(tmp_path: Path) -> None:
    host = Host(tmp_path, mine=False)
    a, b = job_operands(5, m=9, k=40, n=7)
    try:
        jobs = JobService(host)  # not started: the job stays queued
        job = await jobs.submit(a, b, request_tx(host, a, b))
        assert job.status == "queued"
    finally:
        host.close()  # the process is gone; only the chain's LevelDB remains
    host = Host(tmp_path, mine=False)
    try:
        jobs = JobService(host)
        again = jobs.jobs[job.job_id]
        assert again.status == "queued" and jobs.pending() == 1
        assert again.request_tx_id == job.request_tx_id and again.requester == job.requester
        assert np.array_equal(again.ops.a, job.ops.a) and np.array_equal(again.ops.b, job.ops.b)
        jobs.start(asyncio.get_running_loop())
        await wait_for(lambda: again.status == "done", message="restored job computed")
        jobs.stop()
        assert again.product is not None and np.array_equal(again.product, reference(a, b))
    finally:
        host.close()
    host = Host(tmp_path, mine=False)
    try:
        jobs = JobService(host)
        done = jobs.jobs[job.job_id]
        assert done.status == "done" and jobs.pending() == 0
        assert done.result_hash == product_hash(reference(a, b))
        assert done.product is not None and np.array_equal(done.product, reference(a, b))
        assert done.ops.a.size == 0  # operands are dropped once computed
        assert host.chain.db.get(JOB_OPERANDS + job.job_id) is None
    finally:
        host.close()


async def test_an_unreadable_job_record_is_dropped(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    host = Host(tmp_path, mine=False)
    host.chain.db.put(JOB + bytes(32), b"\xc1 junk")
    host.chain.db.put(JOB + bytes(31) + b"\x01", msgpack.packb({"tx": b"x"}))
    try:
        with caplog.at_level(logging.WARNING, logger="pouwchain.jobs"):
            jobs = JobService(host)
        assert jobs.jobs == {}
        assert sum(r.getMessage() == "job record dropped" for r in caplog.records) == 2
        assert list(host.chain.db.iterate_prefix(JOB)) == []
    finally:
        host.close()


async def test_receipt_pays_the_nodes_own_relay_minimum(tmp_path: Path) -> None:
    host = Host(tmp_path, mine=False)
    host.mempool = Mempool(params=host.chain.params,
                           config=MempoolConfig(min_fee_per_kb=1000))  # 1 per byte
    client = await start_jobs(host)
    try:
        token = create_token(host.config.datadir)
        a, b = job_operands(3, m=5, k=20, n=4)
        payload = job_request(prepare_operands(a, b), assignee=bytes(host.identity.verify_key),
                              escrow=ESCROW, timeout=100, salt=os.urandom(32))
        tx = sign_transaction(dev_seed(CLIENT), chain_id=1337, nonce=0, fee=2000,
                              payload=payload)
        response = await client.post("/api/v1/jobs/matmul", data=multipart(a, b, tx))
        assert response.status == 202, await response.text()
        job_id = (await response.json())["id"]
        await wait_for(lambda: _status_is(client, job_id, "unconfirmed"))
        response = await client.post("/api/v1/miner/generate", json={"count": 1},
                                     headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200, await response.text()

        async def receipt() -> bool:
            view = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
            return bool(view["status"] == "done" and view["on_chain"]["receipt_tx"])

        await wait_for(receipt)
        sent = [t for t in host.mempool.transactions() if t.sender == bytes(
            host.identity.verify_key)]
        assert len(sent) == 1 and sent[0].fee >= len(sent[0].encode()) > 10
    finally:
        await client.close()
        host.close()
