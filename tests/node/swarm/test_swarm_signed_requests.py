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
from contracts.swarm import settled_round
from node.client.wallet import FAST, Wallet, create_wallet
from node.node import Node
from swarm.messages import sign_request
from tests.framework.chain import tx as make_tx
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
        state = nodes[0].swarm.rounds[round_id]  # type: ignore[attr-defined]
        assert state.announcement.request.client == wallet.address
        await wait_for(lambda: state.settlement_status.startswith("submitted"),
                         message="settlement sent")
    finally:
        await stop_all(nodes)
