"""``GET /api/v1/accounts/{address}/txs`` (`pouwchain wallet history`) on a real node: sent
and received transactions, pending first then confirmed, newest first, bounded by limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from consensus.genesis import dev_seed
from consensus.tx import public_key, sign_transaction
from contracts import Stake, Transfer
from testnet.client import ApiError, request
from tests.framework.nodes import LiveNode


async def api_get(node: LiveNode, path: str) -> Any:
    """One GET in a thread: the node serves on this test's event loop."""
    return await asyncio.to_thread(request, node.url, "GET", path)


@pytest.mark.slow
async def test_account_history_lists_sent_and_received(node: LiveNode) -> None:
    alice, bob = dev_seed(1), dev_seed(2)
    a, b = public_key(alice), public_key(bob)
    to_bob = sign_transaction(alice, chain_id=1337, nonce=0, fee=10,
                              payload=Transfer(to=b, amount=700))
    stake = sign_transaction(alice, chain_id=1337, nonce=1, fee=10, payload=Stake(amount=5))
    to_alice = sign_transaction(bob, chain_id=1337, nonce=0, fee=10,
                                payload=Transfer(to=a, amount=3))
    await node.mine([to_bob])
    await node.mine([stake, to_alice])
    pending = sign_transaction(alice, chain_id=1337, nonce=2, fee=10,
                               payload=Transfer(to=b, amount=1))
    await asyncio.to_thread(request, node.url, "POST", "/api/v1/txs",
                            body={"tx": pending.encode().hex()})

    view = await api_get(node, f"/api/v1/accounts/{a.hex()}/txs")
    assert view["address"] == a.hex() and view["height"] == node.chain.height
    listed = [(t["id"], t["status"], t["direction"]) for t in view["txs"]]
    assert listed == [(pending.id().hex(), "pending", "out"),
                      (to_alice.id().hex(), "confirmed", "in"),
                      (stake.id().hex(), "confirmed", "out"),
                      (to_bob.id().hex(), "confirmed", "out")]
    confirmed = view["txs"][1]
    assert (confirmed["height"], confirmed["block"]) == (2, node.chain.tip_id.hex())
    assert confirmed["tx"]["payload"]["amount"] == 3

    bob_view = await api_get(node, f"/api/v1/accounts/{b.hex()}/txs?limit=2")
    assert [t["id"] for t in bob_view["txs"]] == [pending.id().hex(), to_alice.id().hex()]
    assert [t["direction"] for t in bob_view["txs"]] == ["in", "out"]
    nobody = public_key(dev_seed(99)).hex()
    assert (await api_get(node, f"/api/v1/accounts/{nobody}/txs"))["txs"] == []
    for query, code in (("?limit=0", "bad_limit"), ("?limit=1001", "bad_limit")):
        with pytest.raises(ApiError) as info:
            await api_get(node, f"/api/v1/accounts/{a.hex()}/txs{query}")
        assert info.value.status == 400 and info.value.body["error"]["code"] == code
    with pytest.raises(ApiError) as info:
        await api_get(node, "/api/v1/accounts/xyz/txs")
    assert info.value.status == 400 and info.value.body["error"]["code"] == "bad_address"
