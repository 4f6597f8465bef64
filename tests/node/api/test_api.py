"""The HTTP API of a real node (``node.node.Node`` wired like ``pouwchain node``, LevelDB in
tmp_path, 127.0.0.1): every route's success and error paths."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp

from consensus.genesis import DEV_BALANCE, DEV_STAKE, dev_seed
from consensus.tx import public_key, sign_transaction
from contracts import Stake
from node.api.auth import read_token
from tests.framework.chain import transfer
from tests.framework.nodes import LiveNode, MinerStats
from tests.framework.util import wait_for

Client = aiohttp.ClientSession


async def get_json(client: Client, path: str, *, status: int = 200, **kw: Any) -> Any:
    resp = await client.get(path, **kw)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def assert_error(resp: Any, status: int, reason: str) -> dict[str, Any]:
    """A JSON error body with the given status and reason (never a 500)."""
    body = await resp.json()
    assert resp.status == status, body
    assert body["reason"] == reason == body["error"]["code"], body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body)


def auth(node: LiveNode, token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or read_token(node.config.datadir)}"}


# -- status -------------------------------------------------------------------------------------

async def test_status_reports_chain_peers_sync_and_mining(node: LiveNode,
                                                          client: Client) -> None:
    body = await get_json(client, "/api/v1/status")
    assert body["network"] == "dev" and body["chain_id"] == 1337
    assert body["height"] == 0 and body["tip"] == node.chain.genesis_id.hex()
    assert body["genesis"] == node.chain.genesis_id.hex()
    assert body["peers"] == 0 and body["syncing"] is False and body["sync_progress"] == 1.0
    assert body["mining"] == {"enabled": False}
    # the node's own facts (node.status()) come along
    assert body["best_peer_height"] == 0 and body["listen"] == node.node.listen_address
    assert body["node_id"] == node.node.node_id.hex()
    block = await node.mine([transfer(1, 0)])
    node.miner = MinerStats(blocks_mined=3, tickets_per_s=1234.5, useful_macs=10,
                            nonuseful_macs=30, jobs_done=1)
    body = await get_json(client, "/api/v1/status")
    assert body["height"] == 1 and body["tip"] == block.header.block_id().hex()
    assert body["mining"]["enabled"] is True and body["mining"]["blocks_mined"] == 3
    assert body["mining"]["tickets_per_s"] == 1234.5


# -- blocks -------------------------------------------------------------------------------------

async def test_block_by_height_and_hash(node: LiveNode, client: Client) -> None:
    txs = [transfer(1, 0), transfer(2, 0)]
    block = await node.mine(txs)
    await node.mine()
    by_height = await get_json(client, "/api/v1/blocks/1")
    block_id = block.header.block_id().hex()
    assert by_height["id"] == block_id and by_height["height"] == 1
    assert by_height["canonical"] is True and by_height["confirmations"] == 2
    assert by_height["txs"] == [tx.id().hex() for tx in txs] and by_height["tx_count"] == 2
    header = by_height["header"]
    assert header["parent_hash"] == node.chain.genesis_id.hex()
    assert header["miner"] == block.header.miner.hex()
    assert header["target"] == f"0x{block.header.target:064x}"
    assert header["state_root"] == block.header.state_root.hex()
    assert bytes.fromhex(header["certificate"]) == block.header.certificate
    assert by_height["size"] == len(block.encode())
    by_hash = await get_json(client, f"/api/v1/blocks/{block_id}")
    assert by_hash == by_height
    assert await get_json(client, f"/api/v1/blocks/0x{block_id}") == by_height
    full = await get_json(client, "/api/v1/blocks/1", params={"txs": "1"})
    assert [t["id"] for t in full["txs"]] == by_height["txs"]
    assert full["txs"][0]["kind"] == "transfer"
    assert full["txs"][0]["payload"]["amount"] == 1
    genesis = await get_json(client, "/api/v1/blocks/0")
    assert genesis["id"] == node.chain.genesis_id.hex() and genesis["tx_count"] == 0


async def test_block_errors(client: Client) -> None:
    await assert_error(await client.get("/api/v1/blocks/5"), 404, "block_not_found")
    await assert_error(await client.get("/api/v1/blocks/" + "ab" * 32), 404, "block_not_found")
    await assert_error(await client.get("/api/v1/blocks/" + "9" * 30), 400, "bad_block_ref")
    await assert_error(await client.get("/api/v1/blocks/" + "9" * 20), 404, "block_not_found")
    await assert_error(await client.get("/api/v1/blocks/-1"), 400, "bad_block_ref")
    await assert_error(await client.get("/api/v1/blocks/xyz"), 400, "bad_block_ref")
    await assert_error(await client.get("/api/v1/blocks/" + "zz" * 32), 400, "bad_block_id")


# -- transactions -------------------------------------------------------------------------------

async def test_post_tx_hex_base64_and_raw(node: LiveNode, client: Client) -> None:
    a, b, c = transfer(1, 0), transfer(1, 1), transfer(1, 2)
    resp = await client.post("/api/v1/txs", json={"tx": a.encode().hex()})
    assert resp.status == 200, await resp.text()
    assert (await resp.json()) == {"id": a.id().hex(), "status": "pending"}
    resp = await client.post("/api/v1/txs",
                             json={"tx": base64.b64encode(b.encode()).decode()})
    assert (await resp.json())["id"] == b.id().hex()
    resp = await client.post("/api/v1/txs", data=c.encode(),
                             headers={"Content-Type": "application/octet-stream"})
    assert (await resp.json())["id"] == c.id().hex()
    d = transfer(1, 3)
    # what `curl -d '{"tx": ...}'` sends without a Content-Type of its own
    resp = await client.post("/api/v1/txs", data=json.dumps({"tx": d.encode().hex()}),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (await resp.json())["id"] == d.id().hex()
    assert [t.id() for t in node.mempool.pending_of(a.sender)] == [a.id(), b.id(), c.id(),
                                                                  d.id()]


async def test_post_tx_rejections_are_clear_400s(node: LiveNode, client: Client) -> None:
    tx = transfer(1, 0)
    post = client.post
    await assert_error(await post("/api/v1/txs", json={"tx": "abc"}), 400, "bad_encoding")
    await assert_error(await post("/api/v1/txs", json={"tx": "!!!"}), 400, "bad_encoding")
    await assert_error(await post("/api/v1/txs", json={"tx": "abc", "encoding": "hex"}), 400,
                       "bad_hex")
    await assert_error(await post("/api/v1/txs", json={"tx": "00ff"}), 400, "encoding")
    await assert_error(await post("/api/v1/txs", json={"tx": 5}), 400, "missing_tx")
    await assert_error(await post("/api/v1/txs", json=[1]), 400, "bad_json")
    await assert_error(await post("/api/v1/txs", data=b"{nope",
                                  headers={"Content-Type": "application/json"}), 400, "bad_json")
    await assert_error(await post("/api/v1/txs", data=b"x",
                                  headers={"Content-Type": "image/png"}), 415,
                       "unsupported_media_type")
    await assert_error(await post("/api/v1/txs", data=b"0" * 100_000,
                                  headers={"Content-Type": "application/octet-stream"}), 413,
                       "body_too_large")
    # consensus rejections carry the rule
    wrong_chain = sign_transaction(dev_seed(1), chain_id=7, nonce=0, fee=10,
                                   payload=Stake(amount=1))
    await assert_error(await post("/api/v1/txs", json={"tx": wrong_chain.encode().hex()}), 400,
                       "invalid:tx.chain_id")
    forged = dataclasses.replace(tx, signature=bytes(64))
    await assert_error(await post("/api/v1/txs", json={"tx": forged.encode().hex()}), 400,
                       "invalid:tx.signature")
    broke = sign_transaction(dev_seed(50), chain_id=1337, nonce=0, fee=10,
                             payload=Stake(amount=1))
    body = await assert_error(await post("/api/v1/txs", json={"tx": broke.encode().hex()}),
                              400, "invalid:tx.insufficient_fee_balance")
    assert "balance" in body["error"]["message"]
    await assert_error(await post("/api/v1/txs", json={"tx": transfer(1, 3).encode().hex()}),
                       400, "nonce_gap")
    assert (await post("/api/v1/txs", json={"tx": tx.encode().hex()})).status == 200
    await assert_error(await post("/api/v1/txs", json={"tx": tx.encode().hex()}), 400, "known")
    assert len(node.mempool) == 1


async def test_get_tx_pending_then_confirmed(node: LiveNode, client: Client) -> None:
    tx = transfer(2, 0, amount=77)
    unknown = "cd" * 32
    await assert_error(await client.get(f"/api/v1/txs/{tx.id().hex()}"), 404, "tx_not_found")
    await assert_error(await client.get("/api/v1/txs/1234"), 400, "bad_tx_id")
    await assert_error(await client.get(f"/api/v1/txs/{unknown}"), 404, "tx_not_found")
    await client.post("/api/v1/txs", json={"tx": tx.encode().hex()})
    pending = await get_json(client, f"/api/v1/txs/{tx.id().hex()}")
    assert pending["status"] == "pending"
    assert pending["tx"]["sender"] == public_key(dev_seed(2)).hex()
    assert pending["tx"]["payload"] == {"to": public_key(dev_seed(100)).hex(), "amount": 77}
    assert bytes.fromhex(pending["tx"]["raw"]) == tx.encode()
    await node.mine()
    block = await node.mine(node.mempool.transactions())
    await node.mine()
    assert len(node.mempool) == 0
    confirmed = await get_json(client, f"/api/v1/txs/{tx.id().hex()}")
    assert confirmed["status"] == "confirmed"
    assert confirmed["block"] == block.header.block_id().hex()
    assert confirmed["height"] == 2 and confirmed["index"] == 0
    assert confirmed["confirmations"] == 2
    assert confirmed["tx"] == pending["tx"]


# -- accounts -----------------------------------------------------------------------------------

async def test_account_balance_nonce_stake(node: LiveNode, client: Client) -> None:
    dev0 = public_key(dev_seed(0)).hex()
    body = await get_json(client, f"/api/v1/accounts/{dev0}")
    assert body["balance"] == DEV_BALANCE and body["nonce"] == 0 and body["next_nonce"] == 0
    assert body["stake"] == {"bonded": DEV_STAKE, "unbonding": [], "unbonding_total": 0}
    assert body["reputation"] == 0 and body["swarm_node"] is None
    stake = sign_transaction(dev_seed(0), chain_id=1337, nonce=0, fee=10,
                             payload=Stake(amount=500))
    await node.mine([stake])
    await client.post("/api/v1/txs", json={"tx": transfer(0, 1, amount=5).encode().hex()})
    body = await get_json(client, f"/api/v1/accounts/0x{dev0}")
    assert body["balance"] == DEV_BALANCE - 510 and body["nonce"] == 1
    assert body["next_nonce"] == 2 and body["pending_txs"] == 1
    assert body["stake"]["bonded"] == DEV_STAKE + 500 and body["height"] == 1
    nobody = await get_json(client, "/api/v1/accounts/" + "11" * 32)
    assert nobody["balance"] == 0 and nobody["stake"]["bonded"] == 0
    await assert_error(await client.get("/api/v1/accounts/xyz"), 400, "bad_address")
    await assert_error(await client.get("/api/v1/accounts/" + "11" * 31), 400, "bad_address")


# -- peers and the token ------------------------------------------------------------------------

async def test_token_file_is_private_and_fresh(node: LiveNode, tmp_path: Path) -> None:
    path = node.config.datadir / "api.token"
    token = read_token(node.config.datadir)
    assert len(token) == 64 and bytes.fromhex(token)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert node.api.token == token
    other = await LiveNode.start(tmp_path / "second")
    try:
        assert read_token(other.config.datadir) != token
    finally:
        await other.stop()


async def test_peers_require_token(node: LiveNode, client: Client, tmp_path: Path) -> None:
    assert await get_json(client, "/api/v1/peers") == {"count": 0, "peers": []}
    other = await LiveNode.start(tmp_path / "b")
    try:
        await peers_round_trip(node, client, other)
    finally:
        await other.stop()


async def peers_round_trip(node: LiveNode, client: Client, other: LiveNode) -> None:
    body = {"address": other.node.listen_address}
    await assert_error(await client.post("/api/v1/peers", json=body), 401, "token_required")
    await assert_error(await client.post("/api/v1/peers", json=body,
                                         headers={"Authorization": "Basic xyz"}), 401,
                       "token_required")
    await assert_error(await client.post("/api/v1/peers", json=body,
                                         headers=auth(node, "00" * 32)), 403, "bad_token")
    assert node.node.peers.info() == []
    resp = await client.post("/api/v1/peers", json=body, headers=auth(node))
    added = await resp.json()
    assert resp.status == 200 and added["connected"] is True
    node_id = added["node_id"]
    assert node_id == other.node.node_id.hex()
    listed = await get_json(client, "/api/v1/peers")
    assert listed["count"] == 1 and listed["peers"][0]["node_id"] == node_id
    assert (await get_json(client, "/api/v1/status"))["peers"] == 1
    refused = await client.post("/api/v1/peers", json={"address": "nope"}, headers=auth(node))
    assert refused.status == 400 and (await refused.json())["reason"]
    await assert_error(await client.post("/api/v1/peers", json={"addr": 1},
                                         headers=auth(node)), 400, "bad_address")
    await assert_error(await client.delete(f"/api/v1/peers/{node_id}"), 401, "token_required")
    await assert_error(await client.delete(f"/api/v1/peers/{node_id}",
                                           headers=auth(node, "ab" * 32)), 403, "bad_token")
    await assert_error(await client.delete("/api/v1/peers/12", headers=auth(node)), 400,
                       "bad_node_id")
    resp = await client.delete(f"/api/v1/peers/{node_id}", headers=auth(node))
    assert resp.status == 200 and (await resp.json())["disconnected"] is True
    await wait_for(lambda: node.node.peers.info() == [], message="disconnect")
    await assert_error(await client.delete(f"/api/v1/peers/{node_id}", headers=auth(node)),
                       404, "peer_not_found")


# -- mempool, unknown routes --------------------------------------------------------------------

async def test_mempool_listing(node: LiveNode, client: Client) -> None:
    assert await get_json(client, "/api/v1/mempool") == {"count": 0, "bytes": 0, "txs": []}
    txs = [transfer(1, 0, fee=10), transfer(1, 1, fee=20), transfer(3, 0, fee=30)]
    for tx in txs:
        assert (await client.post("/api/v1/txs", json={"tx": tx.encode().hex()})).status == 200
    body = await get_json(client, "/api/v1/mempool")
    assert body["count"] == 3 and body["bytes"] == sum(len(t.encode()) for t in txs)
    assert {t["id"] for t in body["txs"]} == {t.id().hex() for t in txs}
    assert {t["fee"] for t in body["txs"]} == {10, 20, 30}
    limited = await get_json(client, "/api/v1/mempool", params={"limit": "1"})
    assert limited["count"] == 3 and len(limited["txs"]) == 1
    await assert_error(await client.get("/api/v1/mempool", params={"limit": "-1"}), 400,
                       "bad_limit")
    await assert_error(await client.get("/api/v1/mempool", params={"limit": "99999"}), 400,
                       "bad_limit")


async def test_unknown_route_and_method_are_json(client: Client) -> None:
    await assert_error(await client.get("/api/v1/nothing"), 404, "not_found")
    resp = await client.put("/api/v1/status")
    await assert_error(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]


async def test_body_over_limits_is_413(node: LiveNode, client: Client) -> None:
    big = b"x" * (5 << 20)  # above the app's client_max_size and every route's own limit
    for path, headers in (("/api/v1/peers", auth(node)), ("/api/v1/txs", {})):
        resp = await client.post(path, data=big,
                                 headers={"Content-Type": "application/json", **headers})
        await assert_error(resp, 413, "body_too_large")


async def test_a_failing_part_is_a_json_500(node: LiveNode, client: Client) -> None:
    class BrokenMiner:
        def stats(self) -> dict[str, int]:
            raise RuntimeError("miner bug")

    node.miner = BrokenMiner()
    await assert_error(await client.get("/api/v1/status"), 500, "internal")


NASTY = ["", "0", "-1", "1e3", "0x", "0x" + "g" * 64, "ab" * 33, "%00", "%ff" * 40, "..",
         "a" * 5000, "18446744073709551616", "99999999999999999999", " " + "ab" * 32,
         "\u00e9" * 32, "null", "[]", "\u00b2", "\u0663", "1\u00b2"]


async def test_garbage_never_causes_a_500(node: LiveNode, client: Client) -> None:
    await node.mine([transfer(1, 0)])
    for text in NASTY:
        for route in ("blocks", "txs", "accounts"):
            resp = await client.get(f"/api/v1/{route}/{text}")
            body = await resp.json()
            if (route, text) == ("blocks", "0"):  # genesis: the one valid reference here
                assert resp.status == 200 and body["height"] == 0
                continue
            assert resp.status in (400, 404), (route, text, resp.status)
            assert body["reason"] and body["error"]
        resp = await client.delete(f"/api/v1/peers/{text}", headers=auth(node))
        assert resp.status in (400, 404, 405), (text, resp.status)
        for body in ({"tx": text}, {"tx": text, "encoding": text}, {"tx": [text]}):
            resp = await client.post("/api/v1/txs", json=body)
            assert 400 <= resp.status < 500, (body, resp.status)
        resp = await client.post("/api/v1/txs", data=text.encode(),
                                 headers={"Content-Type": "application/octet-stream"})
        assert resp.status == 400, (text, resp.status)
        resp = await client.post("/api/v1/peers", data=text.encode(),
                                 headers={"Content-Type": "application/json", **auth(node)})
        assert 400 <= resp.status < 500, (text, resp.status)
        resp = await client.get("/api/v1/mempool", params={"limit": text})
        assert resp.status in (200, 400), (text, resp.status)
        resp = await client.get("/api/v1/blocks/1", params={"txs": text})
        assert resp.status == 200
