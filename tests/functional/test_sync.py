"""A node started empty catches up hundreds of blocks; restarted nodes resume from disk."""

from __future__ import annotations

import pytest

from tests.framework.chain import transfer
from tests.framework.nodes import TestNetwork, address_of
from tests.framework.util import wait_until

pytestmark = pytest.mark.slow  # real node processes

CHAIN_LENGTH = 300


def test_empty_node_syncs_hundreds_of_blocks_and_resumes_after_restart(
    network: TestNetwork,
) -> None:
    source = network.add_node()
    # some transactions along the way, so syncing replays real state transitions
    source.send_tx(transfer(2, 0, address_of(6), 1_000))
    network.generate(source, CHAIN_LENGTH // 2)
    source.send_tx(transfer(2, 1, address_of(6), 2_000))
    network.generate(source, CHAIN_LENGTH - CHAIN_LENGTH // 2)
    tip = source.tip()
    assert source.height() == CHAIN_LENGTH

    # an empty node given only a seed address reaches the tip on its own
    fresh = network.add_node(peers=[source])
    assert fresh.height() < CHAIN_LENGTH
    assert network.sync_blocks(timeout=120) == tip
    assert fresh.height() == CHAIN_LENGTH
    assert fresh.balance(address_of(6)) == source.balance(address_of(6))
    assert fresh.account(address_of(2))["nonce"] == 2
    assert fresh.block(CHAIN_LENGTH // 2)["id"] == source.block(CHAIN_LENGTH // 2)["id"]

    # clean restart: the node comes back on its stored tip before talking to anyone
    assert fresh.stop() == 0
    network.generate(source, 20)
    fresh.start()
    assert fresh.tip() == tip and fresh.height() == CHAIN_LENGTH
    network.connect(fresh, source)
    network.sync_blocks(timeout=60)
    assert fresh.height() == CHAIN_LENGTH + 20

    # crash while catching up (SIGKILL as soon as it has blocks, usually mid-sync): it
    # reopens on what its store committed, never less than it had reported, and resumes
    third = network.add_node(peers=[source])
    reached = wait_until(lambda: third.height(), 120, interval=0.02,
                         message="third node started syncing")
    third.kill()
    third.start()
    assert third.height() >= reached
    network.connect(third, source)
    network.sync_blocks(timeout=120)
    assert third.height() == CHAIN_LENGTH + 20
