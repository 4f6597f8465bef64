"""Blocks and transactions reach every node, hopping across a line of peers."""

from __future__ import annotations

import pytest

from tests.framework.chain import transfer
from tests.framework.nodes import TestNetwork, address_of

pytestmark = pytest.mark.slow  # real node processes


def test_blocks_and_transactions_reach_every_node(network: TestNetwork) -> None:
    nodes = network.add_nodes(4)
    network.connect_chain()  # 0-1-2-3: node3 only hears node0's blocks through relays
    genesis = nodes[0].tip()
    assert {n.tip() for n in nodes} == {genesis}

    hashes = network.generate(nodes[0], 3)
    network.sync_blocks(timeout=30, block=hashes[-1])
    for n in nodes:
        # the block is canonical in the store just before the node publishes its tip
        network.wait_until(lambda n=n: n.height() == 3, message=f"node{n.index} at height 3")
        assert n.block(2)["id"] == hashes[1]

    # a transaction submitted at the far end travels to the miner and comes back in a block
    recipient = address_of(7)
    before = nodes[0].balance(recipient)
    tx = transfer(1, 0, recipient, 12_345)
    assert nodes[3].send_tx(tx) == tx.id().hex()
    assert network.sync_mempools(timeout=30) == [tx.id().hex()]
    [block_hash] = network.generate(nodes[0], 1)
    network.sync_blocks(timeout=30, block=block_hash)
    assert tx.id().hex() in nodes[3].block(block_hash)["txs"]
    for n in nodes:
        assert n.balance(recipient) == before + 12_345
        assert n.account(address_of(1))["nonce"] == 1
        assert n.mempool() == []
