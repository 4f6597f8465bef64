"""The API on the real ``node.node.Node``, wired exactly as ``pouwchain node`` wires it
(``attach_services``: API routes, job service and miner routes), served on 127.0.0.1.

Blocks come from the test miner on an in-memory twin of the chain and enter through
``Node.submit_block``; peers are a second real node; the CLI clients run as subprocesses.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consensus.block import Block
from consensus.genesis import dev_seed
from consensus.state import State
from consensus.tx import Transaction, public_key, sign_transaction
from contracts import Transfer
from node.api import API_KEY
from node.auth import read_token
from node.cli_node import attach_services
from node.config import NodeConfig
from node.node import Node
from tests.consensus.helpers import Chain, new_chain
from tests.node.chainutil import extend, transfer
from tests.node.test_api_openapi import SPEC, app_routes, spec_routes

PASSWORD = "pw for tests"


class Live:
    """A started real node, an HTTP session to it, and the chain twin that mines for it."""

    def __init__(self, node: Node, session: aiohttp.ClientSession) -> None:
        self.node = node
        self.http = session
        self.sim: Chain = new_chain(node.genesis)
        self.url = f"http://127.0.0.1:{node.port}"

    async def mine(self, txs: Sequence[Transaction] = (), *, seed: int = 0) -> Block:
        block = extend(self.sim, txs, seed=seed)
        await self.node.submit_block(block)
        assert self.node.chain.tip_id == block.header.block_id()
        return block

    async def call(self, method: str, path: str, *, status: int = 200, **kw: Any) -> Any:
        async with self.http.request(method, self.url + path, **kw) as resp:
            body = await resp.json()
            assert resp.status == status, body
            return body

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {read_token(self.node.config.datadir)}"}


async def start_live(tmp_path: Path, name: str) -> Node:
    node = Node(NodeConfig(datadir=tmp_path / name, port=0, discover=False, log_json=False,
                           dial_interval=0.2))
    attach_services(node)
    await node.start()
    return node


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    node = await start_live(tmp_path, "a")
    async with aiohttp.ClientSession() as session:
        yield Live(node, session)
    await node.stop()


async def test_real_app_routes_equal_the_spec(live: Live) -> None:
    assert app_routes(live.node.app) == spec_routes(SPEC.read_text())
    assert live.node.app[API_KEY].token == read_token(live.node.config.datadir)


async def test_chain_tx_account_mempool_metrics(live: Live) -> None:
    status = await live.call("GET", "/api/v1/status")
    assert status["height"] == 0 and status["node_id"] == live.node.node_id.hex()
    assert status["syncing"] is False and status["mining"]["enabled"] is False
    tx = transfer(1, 0, amount=42)
    posted = await live.call("POST", "/api/v1/txs", json={"tx": tx.encode().hex()})
    assert posted["id"] == tx.id().hex() and tx.id() in live.node.mempool
    assert (await live.call("GET", f"/api/v1/txs/{tx.id().hex()}"))["status"] == "pending"
    again = await live.call("POST", "/api/v1/txs", status=400, json={"tx": tx.encode().hex()})
    assert again["reason"] == "known"
    forged = sign_transaction(dev_seed(1), chain_id=9, nonce=1, fee=1,
                              payload=Transfer(to=bytes(32), amount=1))
    bad = await live.call("POST", "/api/v1/txs", status=400,
                          json={"tx": forged.encode().hex()})
    assert bad["reason"] == "invalid:tx.chain_id"
    mempool = await live.call("GET", "/api/v1/mempool")
    assert mempool["count"] == 1 and mempool["txs"][0]["id"] == tx.id().hex()

    block = await live.mine(live.node.mempool.transactions())
    assert len(live.node.mempool) == 0
    found = await live.call("GET", f"/api/v1/txs/{tx.id().hex()}")
    assert found["status"] == "confirmed" and found["block"] == block.header.block_id().hex()
    by_height = await live.call("GET", "/api/v1/blocks/1")
    assert by_height["txs"] == [tx.id().hex()] and by_height["canonical"] is True
    account = await live.call("GET", f"/api/v1/accounts/{tx.sender.hex()}")
    assert account["nonce"] == 1 and account["next_nonce"] == 1
    receiver = await live.call("GET", f"/api/v1/accounts/{public_key(dev_seed(100)).hex()}")
    assert receiver["balance"] == 42
    async with live.http.get(live.url + "/metrics") as resp:
        text = await resp.text()
    assert "\npouwchain_height 1\n" in text and "\npouwchain_mempool_transactions 0\n" in text
    assert "\npouwchain_blocks_received_total 1\n" in text
    await live.call("GET", "/api/v1/blocks/" + "00" * 32, status=404)


async def test_peers_add_list_remove_with_a_second_node(live: Live, tmp_path: Path) -> None:
    other = await start_live(tmp_path, "b")
    try:
        body = {"address": other.listen_address}
        assert (await live.call("POST", "/api/v1/peers", status=401, json=body))["reason"] \
            == "token_required"
        await live.call("POST", "/api/v1/peers", status=403, json=body,
                        headers={"Authorization": "Bearer " + "0" * 64})
        added = await live.call("POST", "/api/v1/peers", json=body, headers=live.auth())
        assert added["node_id"] == other.node_id.hex()
        peers = await live.call("GET", "/api/v1/peers")
        assert [p["node_id"] for p in peers["peers"]] == [other.node_id.hex()]
        assert (await live.call("GET", "/api/v1/status"))["peers"] == 1
        dup = await live.call("POST", "/api/v1/peers", status=400, json=body,
                              headers=live.auth())
        assert dup["reason"]
        await live.call("DELETE", f"/api/v1/peers/{other.node_id.hex()}", status=401)
        removed = await live.call("DELETE", f"/api/v1/peers/{other.node_id.hex()}",
                                  headers=live.auth())
        assert removed["disconnected"] is True
        for _ in range(200):
            if not live.node.peers.info():
                break
            await asyncio.sleep(0.02)
        assert live.node.peers.info() == []
        missing = await live.call("DELETE", f"/api/v1/peers/{other.node_id.hex()}",
                                  status=404, headers=live.auth())
        assert missing["reason"] == "peer_not_found"
        # nobody listens on port 9
        dead = await live.call("POST", "/api/v1/peers", status=502,
                               json={"address": "127.0.0.1:9"}, headers=live.auth())
        assert dead["error"]
    finally:
        await other.stop()


async def test_miner_route_uses_the_api_token(live: Live) -> None:
    body = await live.call("POST", "/api/v1/miner/generate", status=401, json={"count": 1})
    assert body["reason"] == "token_required"
    await live.call("POST", "/api/v1/miner/generate", status=403, json={"count": 1},
                    headers={"Authorization": "Bearer " + "1" * 64})


async def cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUWCHAIN_")}
    env["POUWCHAIN_PASSWORD"] = PASSWORD
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node.cli", *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_wallet_and_status_cli_against_the_real_node(live: Live, tmp_path: Path) -> None:
    wfile = str(tmp_path / "wallet.json")
    code, out, err = await cli("wallet", "new", "--wallet", wfile, "--kdf", "fast")
    assert code == 0, err
    address = bytes.fromhex(out.split("address: ")[1].strip())
    await live.mine([sign_transaction(dev_seed(2), chain_id=1337, nonce=0, fee=10,
                                      payload=Transfer(to=address, amount=10_000))])
    dest = public_key(dev_seed(61))
    code, out, err = await cli("wallet", "send", dest.hex(), "1234", "--fee", "5",
                               "--wallet", wfile, "--node", live.url)
    assert code == 0, err
    tx_id = bytes.fromhex(out.strip())
    assert tx_id in live.node.mempool
    await live.mine(live.node.mempool.transactions())
    state = State(live.node.chain.state_view())
    assert state.account(dest).balance == 1234
    assert state.account(address).balance == 10_000 - 1234 - 5
    code, out, err = await cli("status", "--datadir", str(live.node.config.datadir))
    assert code == 0, err
    assert "height    2" in out and live.node.chain.tip_id.hex() in out
    code, out, err = await cli("wallet", "balance", "--wallet", wfile,
                               "--datadir", str(live.node.config.datadir))
    assert code == 0, err
    assert f"balance:   {10_000 - 1234 - 5}" in out
    code, _, err = await cli("status", "--datadir", str(tmp_path / "nothing"))
    assert code == 1 and "is a node running" in err
