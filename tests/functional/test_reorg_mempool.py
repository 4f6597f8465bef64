"""A reorg keeps every accepted transaction: real node processes, real LevelDB.

bench/chaos.py's partition cycles lost accepted transfers this way (every loss it traced):
a sender's nonces 0 and 1 are mined on one side of a split while its nonce 2 waits in that
side's pool; the other side's longer chain wins when the split heals, and 0 and 1 come
back. Re-admitted one at a time, 0 went back first, 2 then looked like a gap and was
dropped, by the only node that held it. Now the sender's chain goes back whole, and the
node gossips it again in nonce order, so the other side (which never saw any of it) can
confirm it too.
"""

from __future__ import annotations

import pytest

from tests.framework.chain import transfer
from tests.framework.nodes import TestNetwork, address_of

pytestmark = pytest.mark.slow  # real node processes


def test_pending_tail_survives_the_reorg_and_confirms_on_the_winning_side(
        network: TestNetwork) -> None:
    left, right = network.add_nodes(2)
    network.connect(left, right)
    network.generate(left, 1)
    network.sync_blocks(timeout=60)
    network.split_network([[left], [right]])

    sent = [transfer(1, n, address_of(5), 100 + n) for n in range(3)]
    for tx in sent[:2]:  # nonces 0 and 1 mined on the left
        left.send_tx(tx)
        network.generate(left, 1)
    left.send_tx(sent[2])  # nonce 2: accepted, pending on the left only
    assert left.mempool() == [sent[2].id().hex()]
    right_tip = network.generate(right, 3)[-1]  # more work, without any of them

    network.join_network()
    assert network.sync_blocks(timeout=60) == right_tip  # the left reorgs onto the right
    expected = sorted(tx.id().hex() for tx in sent)
    # every one is back on the left and gossiped to the right, which never saw them
    assert network.sync_mempools(timeout=60) == expected
    assert left.mempool() == expected

    network.generate(right, 1)
    network.sync_blocks(timeout=60)
    for node in (left, right):
        assert node.mempool() == []
        assert int(node.account(address_of(1))["nonce"]) == 3
        for tx in sent:
            found = node.api("GET", f"/api/v1/txs/{tx.id().hex()}", auth=False)
            assert found["status"] == "confirmed", found
