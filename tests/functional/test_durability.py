"""What a node accepted survives SIGKILL: transactions the API accepted, bans, jobs.

A non-mining node process (nothing is mined between the answers and the kill) is killed with
SIGKILL right after the last answer, restarted on the same data directory, and must hold what
it accepted; the transactions then confirm. A damaged journal entry costs only itself, with
a log line. docs/api.md ("Durability") is the promise these tests hold the node to.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import os
from typing import Any

import msgpack
import numpy as np
import pytest

from consensus.genesis import dev_seed
from consensus.tx import Transaction, sign_transaction
from node.chain.db import Database
from node.chain.mempool import JOURNAL
from node.mining.jobs import job_request, npy_bytes, prepare_operands
from node.p2p.protocol import MsgType
from pouw.params import VALUE_MAX, VALUE_MIN
from testnet.client import ApiError
from testnet.genesis import DEV_CHAIN_ID
from tests.framework.chain import transfer
from tests.framework.nodes import FUNDED, TestNetwork, TestNode, address_of
from tests.framework.rawpeer import PeerRefused, RawPeer
from tests.framework.util import wait_until

pytestmark = pytest.mark.slow  # real node processes

TRANSFERS = 60  # the count: 43 of 60 were lost before the journal


def submit_transfers(node: TestNode, count: int) -> list[str]:
    """``count`` transfers over the API, from every funded account in turn (chained nonces);
    the ids the API answered with."""
    ids = []
    for i in range(count):
        sender, nonce = i % FUNDED, i // FUNDED
        tx: Transaction = transfer(sender, nonce, address_of((sender + 1) % FUNDED), 1 + i)
        ids.append(node.send_tx(tx))
    return sorted(ids)


def crash_and_restart(node: TestNode) -> None:
    node.kill()
    node.start()


def test_accepted_transactions_survive_sigkill_and_confirm(network: TestNetwork) -> None:
    node = network.add_node()
    accepted = submit_transfers(node, TRANSFERS)
    assert node.mempool() == accepted
    crash_and_restart(node)
    assert node.mempool() == accepted
    loaded = node.wait_for_log(lambda e: e.get("event") == "mempool.journal_loaded"
                               and e.get("loaded") == TRANSFERS)
    assert loaded["dropped"] == 0
    network.generate(node, 1)
    assert node.mempool() == []
    for tx_id in accepted:
        assert node.api("GET", f"/api/v1/txs/{tx_id}", auth=False)["status"] == "confirmed"


def test_mined_transactions_do_not_come_back(network: TestNetwork) -> None:
    node = network.add_node()
    first = submit_transfers(node, FUNDED)  # nonce 0 of every account
    network.generate(node, 1)
    second = [node.send_tx(transfer(i, 1, address_of(0), 5)) for i in range(FUNDED)]
    crash_and_restart(node)
    assert node.mempool() == sorted(second)
    assert not set(first) & set(node.mempool())


def test_corrupt_journal_entry_is_dropped_with_a_log_line(network: TestNetwork) -> None:
    node = network.add_node()
    accepted = submit_transfers(node, 10)
    node.kill()
    bad_key = JOURNAL + bytes(range(32))
    with Database(node.datadir / "chain") as db:
        db.put(bad_key, b"\xc1 not msgpack")
        db.put(JOURNAL + bytes(32), msgpack.packb([0, b"not a transaction"]))
    node.start()
    dropped = node.wait_for_log(lambda e: e.get("event") == "mempool.journal_dropped"
                                and e.get("tx") == bad_key.hex())
    assert str(dropped["reason"]).startswith("corrupt: ")
    assert node.mempool() == accepted
    loads = [(e["loaded"], e["dropped"]) for e in node.log_events()
             if e.get("event") == "mempool.journal_loaded"]
    assert loads == [(0, 0), (10, 2)]  # the first start, then the restart


def test_below_fee_transaction_is_refused_with_the_minimum(network: TestNetwork) -> None:
    node = network.add_node(config={"min_relay_fee_per_kb": 1000})
    cheap = transfer(1, 0, address_of(2), 1, fee=10)
    with pytest.raises(ApiError) as info:
        node.send_tx(cheap)
    assert info.value.status == 400 and info.value.body["reason"] == "fee_too_low"
    assert f"minimum {len(cheap.encode())} " in info.value.body["error"]["message"]
    node.send_tx(transfer(1, 0, address_of(2), 1, fee=1000))


def test_a_ban_survives_sigkill(network: TestNetwork) -> None:
    node = network.add_node()
    tx = transfer(2, 0)
    forged = dataclasses.replace(tx, signature=bytes([tx.signature[0] ^ 1]) + tx.signature[1:])
    seed = os.urandom(32)

    async def misbehave() -> str:
        async with RawPeer(node.url, seed=seed) as peer:
            await peer.connect()
            await peer.send(MsgType.TX, {"tx": forged.encode()})
            return await peer.serve_until_closed()

    async def reconnect() -> None:
        async with RawPeer(node.url, seed=seed) as peer:
            await peer.connect()

    assert asyncio.run(misbehave()) == "tx.signature"
    crash_and_restart(node)
    with pytest.raises(PeerRefused, match="banned"):
        asyncio.run(reconnect())
    restored = node.wait_for_log(lambda e: e.get("event") == "peer.bans_restored")
    assert restored["count"] >= 2  # the identity and its address


def test_restored_transactions_are_relayed_to_peers(network: TestNetwork) -> None:
    node, peer = network.add_nodes(2)
    accepted = submit_transfers(node, 12)  # no peer yet: nobody else has them
    crash_and_restart(node)
    network.connect(node, peer)
    assert network.sync_mempools([node, peer]) == accepted


def test_an_accepted_job_survives_sigkill_and_settles(network: TestNetwork) -> None:
    node = network.add_node(dev_key=6)  # funded: it pays its receipt's fee
    rng = np.random.default_rng(12)
    a = rng.integers(VALUE_MIN, VALUE_MAX + 1, size=(33, 200), dtype=np.int8)
    b = rng.integers(VALUE_MIN, VALUE_MAX + 1, size=(200, 17), dtype=np.int8)
    expected = a.astype(np.int64) @ b.astype(np.int64)
    tx = sign_transaction(dev_seed(5), chain_id=DEV_CHAIN_ID, nonce=0, fee=100,
                          payload=job_request(prepare_operands(a, b),
                                              assignee=bytes.fromhex(node.node_id),
                                              escrow=50_000))
    job_id = node.api("POST", "/api/v1/jobs/matmul", auth=False,
                      a=base64.b64encode(npy_bytes(a)).decode(),
                      b=base64.b64encode(npy_bytes(b)).decode(), tx=tx.encode().hex())["id"]
    crash_and_restart(node)
    assert node.mempool() == [tx.id().hex()]

    def job_view() -> dict[str, Any]:
        view: dict[str, Any] = node.api("GET", f"/api/v1/jobs/{job_id}", auth=False)
        assert view["status"] != "failed", view
        return view

    view = wait_until(lambda: (v := job_view())["status"] == "done" and v, 120,
                      message="restored job computed")
    product = np.load(io.BytesIO(base64.b64decode(view["product_npy_b64"])), allow_pickle=False)
    assert np.array_equal(product, expected)
    network.generate(node, 1)  # the request lands; the node sends its receipt
    wait_until(lambda: job_view()["on_chain"]["receipt_tx"], 60, message="receipt sent")
    network.generate(node, 1)
    wait_until(lambda: job_view()["on_chain"]["status"] == "done", 60,
               message="receipt on chain")
