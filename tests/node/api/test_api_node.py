"""The real node's whole app (API + miner/job routes as ``pouwchain node`` wires them) against
the OpenAPI file, its metrics, the miner route's use of the API token, and the CLI clients
(subprocesses) finding the node through its data directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consensus.genesis import dev_seed
from consensus.tx import public_key, sign_transaction
from contracts import Transfer
from core.state import State
from node.api.auth import read_token
from node.api.chain import API_KEY
from tests.framework.apidocs import SPEC, app_routes, spec_routes
from tests.framework.chain import transfer
from tests.framework.nodes import LiveNode
from tests.framework.util import cli_process


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveNode]:
    node = await LiveNode.start(tmp_path / "a")
    yield node
    await node.stop()


async def call(live: LiveNode, method: str, path: str, *, status: int = 200, **kw: Any) -> Any:
    async with live.session() as http, http.request(method, path, **kw) as resp:
        body = await resp.json()
        assert resp.status == status, body
        return body


async def test_real_app_routes_equal_the_spec(live: LiveNode) -> None:
    assert app_routes(live.node.app) == spec_routes(SPEC.read_text())
    assert live.node.app[API_KEY].token == read_token(live.node.config.datadir)


async def test_metrics_of_the_real_node(live: LiveNode) -> None:
    await live.mine([transfer(1, 0, amount=42)])
    async with live.session() as http, http.get("/metrics") as resp:
        text = await resp.text()
    assert resp.status == 200
    assert "\npouwchain_height 1\n" in text and "\npouwchain_mempool_transactions 0\n" in text
    assert "\npouwchain_blocks_received_total 1\n" in text
    assert "\npouwchain_peers 0\n" in text and "\npouwchain_mining 0\n" in text


async def test_miner_route_uses_the_api_token(live: LiveNode) -> None:
    body = await call(live, "POST", "/api/v1/miner/generate", status=401, json={"count": 1})
    assert body["reason"] == "token_required"
    await call(live, "POST", "/api/v1/miner/generate", status=403, json={"count": 1},
               headers={"Authorization": "Bearer " + "1" * 64})


async def test_unreachable_peer_is_a_502(live: LiveNode) -> None:
    token = {"Authorization": f"Bearer {read_token(live.config.datadir)}"}
    dead = await call(live, "POST", "/api/v1/peers", status=502,
                      json={"address": "127.0.0.1:9"}, headers=token)  # nobody listens on 9
    assert dead["reason"] == "unreachable"


@pytest.mark.slow
async def test_wallet_and_status_cli_against_the_real_node(live: LiveNode,
                                                           tmp_path: Path) -> None:
    wfile = str(tmp_path / "wallet.json")
    code, out, err = await cli_process("wallet", "new", "--wallet", wfile, "--kdf", "fast")
    assert code == 0, err
    address = bytes.fromhex(out.split("address: ")[1].strip())
    await live.mine([sign_transaction(dev_seed(2), chain_id=1337, nonce=0, fee=10,
                                      payload=Transfer(to=address, amount=10_000))])
    dest = public_key(dev_seed(61))
    code, out, err = await cli_process("wallet", "send", dest.hex(), "1234", "--fee", "5",
                               "--wallet", wfile, "--node", live.url)
    assert code == 0, err
    tx_id = bytes.fromhex(out.strip())
    assert tx_id in live.node.mempool
    await live.mine(live.node.mempool.transactions())
    state = State(live.node.chain.state_view())
    assert state.account(dest).balance == 1234
    assert state.account(address).balance == 10_000 - 1234 - 5
    code, out, err = await cli_process("status", "--datadir", str(live.node.config.datadir))
    assert code == 0, err
    assert "height    2" in out and live.node.chain.tip_id.hex() in out
    code, out, err = await cli_process("wallet", "balance", "--wallet", wfile,
                               "--datadir", str(live.node.config.datadir))
    assert code == 0, err
    assert f"balance:   {10_000 - 1234 - 5}" in out
    code, _, err = await cli_process("status", "--datadir", str(tmp_path / "nothing"))
    assert code == 1 and "is a node running" in err
