"""Two halves mine apart with conflicting spends, join, and converge on the most work."""

from __future__ import annotations

import pytest

from tests.framework.chain import transfer
from tests.framework.nodes import TestNetwork, TestNode, address_of

pytestmark = pytest.mark.slow  # real node processes

ACCOUNTS = [address_of(i) for i in range(8)]


def balances(node: TestNode) -> dict[str, tuple[int, int]]:
    """(balance, nonce) of every funded account, as ``node`` sees them."""
    return {a: (int(acc["balance"]), int(acc["nonce"]))
            for a in ACCOUNTS for acc in [node.account(a)]}


def test_split_halves_converge_on_most_work_chain(network: TestNetwork) -> None:
    nodes = network.add_nodes(4)
    network.connect_chain()
    network.generate(nodes[0], 2)
    base = network.sync_blocks(timeout=30)

    network.split_network([nodes[:2], nodes[2:]])
    left, right = nodes[:2], nodes[2:]

    # left: account 1 pays account 6; account 3 pays account 7 (only here)
    left[1].send_tx(transfer(1, 0, ACCOUNTS[6], 1_000))
    left_only = transfer(3, 0, ACCOUNTS[7], 333)
    left[1].send_tx(left_only)
    network.sync_mempools(left, timeout=30)
    network.generate(left[0], 2)
    left_tip = network.sync_blocks(left, timeout=30)

    # right: the same sender and nonce spends differently (a double spend across forks)
    right[0].send_tx(transfer(1, 0, ACCOUNTS[5], 5_000))
    right[0].send_tx(transfer(2, 0, ACCOUNTS[6], 77))
    network.sync_mempools(right, timeout=30)
    network.generate(right[1], 1)
    network.sync_blocks(right, timeout=30)
    network.generate(right[0], 3)
    right_tip = network.sync_blocks(right, timeout=30)

    assert left_tip != right_tip and base not in (left_tip, right_tip)
    assert left[0].height() == 4 and right[0].height() == 6
    assert balances(left[0]) != balances(right[0])  # the forks really disagree
    assert left[0].balance(ACCOUNTS[6]) - right[0].balance(ACCOUNTS[6]) == 1_000 - 77
    right_view = balances(right[0])

    network.join_network()
    assert network.sync_blocks(timeout=60) == right_tip  # the longer (more work) chain wins
    views = [balances(n) for n in nodes]
    assert all(v == views[0] for v in views), views
    assert views[0] == right_view
    for n in nodes:
        assert n.height() == 6
        assert n.block(3)["id"] == right[0].block(3)["id"]

    # the left-only payment was not lost with its blocks: the left nodes put it back in their
    # pools (the conflicting spend is gone: its nonce is used), and it confirms on the winner
    for n in left:
        assert n.mempool() == [left_only.id().hex()], n
    network.generate(nodes[0], 1)
    network.sync_blocks(timeout=30)
    final = [balances(n) for n in nodes]
    assert all(v == final[0] for v in final)
    assert final[0][ACCOUNTS[7]][0] == right_view[ACCOUNTS[7]][0] + 333
    assert final[0][ACCOUNTS[5]][0] == right_view[ACCOUNTS[5]][0]  # the right's spend stands
