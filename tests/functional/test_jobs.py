"""A matmul job submitted over the API comes back exact and is recorded on chain."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from consensus.genesis import dev_seed
from consensus.tx import sign_transaction
from node.mining.jobs import job_request, npy_bytes, prepare_operands, product_hash
from pouw.params import VALUE_MAX, VALUE_MIN
from testnet.genesis import DEV_CHAIN_ID
from tests.framework.nodes import TestNetwork, address_of
from tests.framework.util import wait_until

pytestmark = pytest.mark.slow  # real node processes

ESCROW = 50_000
FEE = 100


def test_matmul_job_is_exact_and_recorded_on_chain(network: TestNetwork) -> None:
    miner = network.add_node(mine=True)
    watcher = network.add_node()
    network.connect(watcher, miner)

    rng = np.random.default_rng(4)
    a = rng.integers(VALUE_MIN, VALUE_MAX + 1, size=(37, 300), dtype=np.int8)  # odd sizes: padding
    b = rng.integers(VALUE_MIN, VALUE_MAX + 1, size=(300, 21), dtype=np.int8)
    expected = a.astype(np.int64) @ b.astype(np.int64)  # the numpy int64 reference

    ops = prepare_operands(a, b)
    assignee = bytes.fromhex(miner.node_id)
    client = 5
    tx = sign_transaction(dev_seed(client), chain_id=DEV_CHAIN_ID, nonce=0, fee=FEE,
                          payload=job_request(ops, assignee=assignee, escrow=ESCROW))
    before_client = watcher.balance(address_of(client))
    submitted = miner.api("POST", "/api/v1/jobs/matmul", auth=False,
                          a=base64.b64encode(npy_bytes(a)).decode(),
                          b=base64.b64encode(npy_bytes(b)).decode(), tx=tx.encode().hex())
    job_id = submitted["id"]
    assert submitted["shape"] == [37, 300, 21]

    def finished() -> dict[str, object] | None:
        job: dict[str, object] = miner.api("GET", f"/api/v1/jobs/{job_id}", auth=False)
        assert job["status"] != "failed", job
        on_chain = job["on_chain"]
        assert isinstance(on_chain, dict)
        return job if job["status"] == "done" and on_chain["status"] == "done" else None

    job = wait_until(finished, 120, interval=0.25, message="job done and receipt on chain")
    product = np.load(io.BytesIO(base64.b64decode(job["product_npy_b64"])), allow_pickle=False)
    assert product.shape == expected.shape
    assert np.array_equal(product.astype(np.int64), expected)  # exact, entry for entry
    assert job["computed_by"] == miner.node_id
    assert job["result_hash"] == product_hash(expected).hex()

    # the record is on chain as every node sees it: request and receipt confirmed, with
    # the product's hash and the worker who computed it
    network.sync_blocks(timeout=60)
    receipt = watcher.api("GET", f"/api/v1/txs/{job['on_chain']['receipt_tx']}", auth=False)
    assert receipt["status"] == "confirmed"
    assert receipt["tx"]["sender"] == miner.node_id
    assert receipt["tx"]["payload"]["job_id"] == job_id
    assert receipt["tx"]["payload"]["result_hash"] == product_hash(expected).hex()
    request = watcher.api("GET", f"/api/v1/txs/{tx.id().hex()}", auth=False)
    assert request["status"] == "confirmed"
    assert watcher.balance(address_of(client)) == before_client - ESCROW - FEE
    # a mining node mines the job as its proof of work: the block's header carries the job's
    # operand roots, so anyone can tie the useful work to the block it secured
    assert job["mode"] == "mined", job["mode"]
    block = watcher.block(str(job["mined_in_block"]))
    assert block["header"]["root_a"] == ops.root_a.hex()
    assert block["header"]["root_b"] == ops.root_b.hex()
    stats = miner.status()["mining"]
    assert stats["useful_macs"] > 0
