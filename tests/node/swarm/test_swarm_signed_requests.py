"""A client-signed swarm request (`POST /api/v1/swarm/requests`, `pouwchain ask --wallet`):
the fee comes from the client's escrow, which must cover it; bad requests get a clear error.
In-process nodes with the real models, real sockets and LevelDB."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consensus.genesis import dev_seed
from consensus.tx import public_key
from contracts import DepositEscrow
from contracts.escrow import escrow_of
from contracts.swarm import MAX_REQUEST_LAG, selected_nodes, settled_round
from core.params import DEFAULT_SWARM_BEACON_DELAY
from node.client.wallet import FAST, Wallet, create_wallet
from node.node import Node
from swarm.messages import sign_request
from tests.framework.chain import tx as make_tx
from tests.framework.nodes import swarm_service as svc
from tests.framework.swarm import mine_block, registered_swarm, settlement_sent, stop_all, tip_state
from tests.framework.util import wait_for

CLIENT = 3  # funded in the dev genesis; not one of the nodes
CHAIN_ID = 1337
PASSWORD = "escrow pass"


async def _post(node: Node, body: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{node.port}/api/v1/swarm/requests", json=body) as resp:
        return resp.status, await resp.json()


def tip(node: Node) -> int:
    return node.chain.height


def _request(fee: int, *, height: int, prompt: str = "What is 12+30?",
             seed: bytes | None = None) -> str:
    """A signed request naming ``height`` (the node's tip) as its beacon height."""
    return sign_request(seed or dev_seed(CLIENT), chain_id=CHAIN_ID, prompt=prompt.encode(),
                        fee=fee, answers=3, judges=3, nonce=os.urandom(32),
                        beacon_height=height).encode().hex()


async def test_signed_request_is_paid_from_the_clients_escrow(tmp_path: Path) -> None:
    chain, nodes = await registered_swarm(tmp_path)
    client = public_key(dev_seed(CLIENT))
    try:
        await mine_block(chain, nodes, [make_tx(CLIENT, 0, DepositEscrow(amount=1_000))])
        balance = tip_state(nodes[0]).account(client).balance

        # more than the escrow: refused before any work, with the way out in the message
        status, body = await _post(nodes[0], {"request": _request(1_001, height=tip(nodes[0]))})
        assert status == 402 and body["reason"] == "fee_not_covered", body
        assert "escrow-deposit" in body["error"]["message"]

        status, view = await _post(nodes[0], {"request": _request(600, height=tip(nodes[0]))})
        assert status == 200, view
        assert view["answer"] is not None and view["fee"] == 600
        # the escrow covers 1 000, and 600 are now unsettled: a second 600 is refused
        status, body = await _post(nodes[0], {"request": _request(600, height=tip(nodes[0]))})
        assert status == 402 and "600 of its unsettled rounds" in body["error"]["message"], body

        round_id = bytes.fromhex(view["round_id"])
        tx = await settlement_sent(nodes[0], round_id)
        await mine_block(chain, nodes, [tx])
        state = tip_state(nodes[0])
        assert settled_round(state, round_id) is not None
        assert escrow_of(state, client).locked == 400  # the fee left the escrow
        assert state.account(client).balance == balance  # not the balance
    finally:
        await stop_all(nodes)


async def test_bad_signed_requests_get_clear_errors(tmp_path: Path) -> None:
    _chain, nodes = await registered_swarm(tmp_path, count=2, registered=2)
    try:
        good = bytes.fromhex(_request(0, height=tip(nodes[0])))
        forged = good[:-1] + bytes([good[-1] ^ 1])  # a flipped bit in the prompt
        cases = [
            ({"request": "zz"}, "bad_request"),
            ({"nothing": 1}, "bad_request"),
            ([1, 2], "bad_request"),
            ({"request": (b"\x93" + b"\x00" * 10).hex()}, "bad_request"),
            ({"request": forged.hex()}, "bad_request"),
            ({"request": good[:-3].hex()}, "bad_request"),  # truncated
        ]
        for body, reason in cases:
            status, answer = await _post(nodes[0], body)
            assert (status, answer.get("reason")) == (400, reason), (body, answer)
        other_chain = sign_request(dev_seed(CLIENT), chain_id=CHAIN_ID + 1, prompt=b"1+1",
                                   fee=0, answers=1, judges=1, nonce=bytes(32))
        status, answer = await _post(nodes[0], {"request": other_chain.encode().hex()})
        assert status == 400 and "chain" in answer["error"]["message"]
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{nodes[0].port}/api/v1/swarm/requests",
                data=b"x" * (2 << 20)) as resp:
            assert resp.status == 413, await resp.text()
        # the node still serves a good request
        status, view = await _post(nodes[0], {"request": _request(0, height=tip(nodes[0]))})
        assert status == 200 and view["answer"] is not None
    finally:
        await stop_all(nodes)


async def test_a_late_request_is_refused_on_a_chain_with_the_beacon_delay(
        tmp_path: Path) -> None:
    """With the default beacon delay k, a request naming a height more than MAX_REQUEST_LAG
    blocks below the tip is refused before any work (a 400 with the way out in the message):
    a client cannot sign at h and ask when the beacon is near (docs/swarm.md §5.2a "Late
    commits"). A node also drops a gossiped round drawn that late."""
    _chain, nodes = await registered_swarm(
        tmp_path, count=2, registered=2,
        genesis={"swarm_beacon_delay": DEFAULT_SWARM_BEACON_DELAY})
    try:
        height = tip(nodes[0])
        assert nodes[0].chain.params.swarm_beacon_delay > MAX_REQUEST_LAG
        late = height - MAX_REQUEST_LAG - 1
        assert late >= 0
        status, body = await _post(nodes[0], {"request": _request(0, height=late)})
        assert (status, body["reason"], body["error"]["code"]) == \
            (400, "bad_request", "bad_request"), body
        assert body["error"]["message"] == (
            f"beacon_height {late} is more than {MAX_REQUEST_LAG} blocks below our tip "
            f"({height}); sign the request with the current tip height")
        assert not svc(nodes[0]).rounds  # refused before any work
        # the oldest height a node takes: the round runs (its beacon block is k blocks away)
        status, view = await _post(nodes[0], {"request": _request(
            0, height=height - MAX_REQUEST_LAG)})
        assert status == 200 and view["answer"] is not None, view

        # a round drawn that late by another origin: the chain's draw, and still dropped
        peer = svc(nodes[1])
        late_request = sign_request(dev_seed(CLIENT), chain_id=CHAIN_ID, prompt=b"What is 5+5?",
                                    fee=0, answers=2, judges=2, nonce=os.urandom(32),
                                    beacon_height=late)
        candidates, drawn_at = peer.candidates()
        assert drawn_at == height
        params = nodes[1].chain.params
        answerers, judges = selected_nodes(tip_state(nodes[1]), late_request.request,
                                           height=height, min_stake=params.min_node_stake,
                                           epoch_blocks=params.swarm_epoch_blocks)
        assert not peer._on_request(late_request, candidates, nodes[0].node_id, height,
                                    selection=(tuple(answerers), tuple(judges)))
        assert late_request.request.round_id() not in peer.rounds
    finally:
        await stop_all(nodes)


@pytest.mark.slow
async def test_ask_with_a_wallet_signs_and_pays_from_escrow(tmp_path: Path) -> None:
    chain, nodes = await registered_swarm(tmp_path, api=True)
    wallet_path = tmp_path / "wallet.json"
    wallet: Wallet = create_wallet(wallet_path, PASSWORD, seed=dev_seed(CLIENT), limits=FAST)
    try:
        await mine_block(chain, nodes, [make_tx(CLIENT, 0, DepositEscrow(amount=500))])
        env = {k: v for k, v in os.environ.items() if not k.startswith("POUWCHAIN_")}
        env["POUWCHAIN_PASSWORD"] = PASSWORD
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "node.cli", "ask", "What is 40+2?", "--node",
            f"http://127.0.0.1:{nodes[0].port}", "--wallet", str(wallet_path), "--fee", "200",
            "--answers", "3", "--judges", "3", env=env, stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, (out.decode(), err.decode())
        lines = out.decode().splitlines()
        assert lines[0].strip() and lines[2].startswith("round")
        round_id = bytes.fromhex(lines[2].split()[1])
        state = svc(nodes[0]).rounds[round_id]
        assert state.announcement.request.client == wallet.address
        await wait_for(lambda: state.settlement_status.startswith("submitted"),
                         message="settlement sent")
    finally:
        await stop_all(nodes)
