"""Finality with real node processes: four validators (equal stake, BLS keys in the genesis)
finalize checkpoints; with one of four stopped they still do; with two stopped blocks keep
coming but finality stalls, and resumes when they return; a restart keeps the finalized
checkpoint; an isolated miner's longer private chain without it is refused by every peer
(no ban, no disconnect), which keeps its chain and balances; and the minority side of a
partition (one validator of four, most mining) rejoins the majority's finalized chain once
healed (docs/finality.md §8).

Lean on purpose (CI budget): epochs of 4 blocks, blocks made on demand (``generate`` on one
node), and every wait is on API state (votes in the miner's pool, finalized heights).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from consensus.genesis import dev_seed
from consensus.tx import public_key
from node.finality.keys import write_raw_key
from testnet.genesis import write_genesis
from tests.framework.chain import transfer
from tests.framework.nodes import FUNDED, TestNetwork, TestNode, address_of, on_best_chain
from tests.framework.util import wait_until

pytestmark = pytest.mark.slow  # real node processes

E = 4  # blocks per finality epoch
VALIDATORS = 4
STAKE = 10**6
CONFLICT = "forkchoice.conflicts_with_finalized"


def finality(node: TestNode) -> dict[str, Any]:
    result: dict[str, Any] = node.api("GET", "/api/v1/finality", auth=False)
    return result


def finalized_height(node: TestNode) -> int:
    return int(node.status()["finalized_height"])


def votes_for(node: TestNode, epoch: int) -> int:
    """Votes ``node``'s pool holds for target ``epoch`` (all links)."""
    return sum(int(link["votes"]) for link in finality(node)["pool"]
               if link["target_epoch"] == epoch)


def start_validators(net: TestNetwork) -> list[TestNode]:
    """Four connected validator nodes with equal bonded stake; each registers its BLS key
    itself (a fresh ``validator.key``), and epoch 1's checkpoint anchors finality."""
    seeds = [dev_seed(i) for i in range(FUNDED)]
    write_genesis(net.genesis, seeds, finality_epoch_blocks=E, finality_stall_epochs=2,
                  stakes={public_key(seed).hex(): STAKE for seed in seeds[:VALIDATORS]})
    nodes = [net.add_node(start=False, dev_key=i) for i in range(VALIDATORS)]
    for node in nodes:
        write_raw_key(node.datadir, os.urandom(32))
    net.start_all(nodes)
    net.connect_all(nodes)
    miner = nodes[0]
    wait_until(lambda: len(miner.mempool()) >= VALIDATORS, 60,
               message="every validator's registration reached the miner")
    net.generate(miner, E + 1)  # registered in block 1, in epoch 1's set, anchored at E + 1
    net.sync_blocks(nodes)
    wait_until(lambda: all(finality(n)["active"] for n in nodes), 30, message="anchored")
    return nodes


def next_epoch(net: TestNetwork, miner: TestNode, live: list[TestNode]) -> int:
    """Mine to the next checkpoint and one block more (which records it), wait until the
    miner holds a vote from every live validator for it, then mine the block that carries
    their aggregate; the epoch."""
    height = miner.height()
    epoch = height // E + 1
    net.generate(miner, epoch * E + 1 - height)
    net.sync_blocks(live)
    wait_until(lambda: votes_for(miner, epoch) >= len(live), 60,
               message=f"{len(live)} votes for epoch {epoch} at {miner}")
    net.generate(miner, 1)
    net.sync_blocks(live)
    return epoch


def test_four_validators_finalize_tolerate_one_down_stall_at_two_and_resume(
        network: TestNetwork) -> None:
    nodes = start_validators(network)
    miner = nodes[0]
    # epoch 1's checkpoint anchors finality; the 1 -> 2 link finalizes it
    next_epoch(network, miner, nodes)
    wait_until(lambda: all(finalized_height(n) >= E for n in nodes), 30,
               message="every node finalized epoch 1")
    report = finality(miner)
    assert report["active"] and not report["stalled"]
    assert report["participation"][-1]["voted"] == report["participation"][-1]["total"]

    # one of four down: 3/4 >= 2/3 still finalizes
    nodes[3].stop()
    live = nodes[:3]
    before = finalized_height(miner)
    next_epoch(network, miner, live)
    wait_until(lambda: all(finalized_height(n) > before for n in live), 30,
               message="3 of 4 validators finalize")

    # two of four down: blocks keep coming, finality stalls
    nodes[2].stop()
    live = nodes[:2]
    stuck = finalized_height(miner)
    justified = finality(miner)["justified"]
    height = miner.height()
    for _ in range(4):
        epoch = next_epoch(network, miner, live)  # two votes each: no quorum
        if finality(miner)["stalled"]:
            break
    else:
        pytest.fail(f"finality never reported stalled (epoch {epoch})")
    assert miner.height() > height
    assert finalized_height(miner) == stuck
    assert finality(miner)["justified"] == justified

    # they return: finality resumes (a new justified link, then a finalized checkpoint)
    for node in nodes[2:]:
        node.start(peers=[miner])
    network.sync_blocks(nodes)
    next_epoch(network, miner, nodes)
    next_epoch(network, miner, nodes)
    wait_until(lambda: all(finalized_height(n) > stuck for n in nodes), 30,
               message="finality resumed")
    assert not finality(miner)["stalled"]

    # a restart keeps finality
    kept = finality(nodes[1])["node_finalized"]
    nodes[1].restart()
    assert finality(nodes[1])["node_finalized"] == kept
    assert finalized_height(nodes[1]) == kept["height"]


def test_a_longer_private_chain_without_the_finalized_checkpoint_is_refused(
        network: TestNetwork) -> None:
    nodes = start_validators(network)
    miner = nodes[0]
    # the isolated miner: same genesis, never connected, funded account 6 spends privately
    loner = network.add_node(dev_key=6)
    next_epoch(network, miner, nodes)
    wait_until(lambda: all(finalized_height(n) >= E for n in nodes), 30,
               message="every node finalized epoch 1")
    public_tip = network.sync_blocks(nodes)
    public = {n.index: (n.tip(), finalized_height(n)) for n in nodes}
    spender, payee = address_of(6), address_of(7)
    public_balances = (miner.balance(spender), miner.balance(payee))

    loner.send_tx(transfer(6, 0, payee, 12_345))
    network.generate(loner, miner.height() + 2 * E)  # longer: more work than the public chain
    assert loner.height() > miner.height()
    assert loner.balance(payee) == public_balances[1] + 12_345

    for node in nodes[:2]:
        loner.api("POST", "/api/v1/peers", address=node.address)
    for node in nodes[:2]:
        node.wait_for_log(lambda e: e.get("event") == "sync.refused"
                          and e.get("reason") == CONFLICT, 60,
                          message=f"{node} refuses the private chain")
    # refused, not banned: the loner stays connected (a node on the minority side of a
    # partition fetches our chain that way, see the next test; this loner never ran finality,
    # so like a fresh node it keeps its heavier chain, docs/finality.md §12)
    assert {nodes[0].node_id, nodes[1].node_id} <= loner.peer_ids()
    assert not any(e.get("event") == "peer.banned" for n in nodes for e in n.log_events())
    for node in nodes:
        assert (node.tip(), finalized_height(node)) == public[node.index]
        assert (node.balance(spender), node.balance(payee)) == public_balances
    assert network.sync_blocks(nodes) == public_tip


def test_the_minority_side_of_a_partition_rejoins_the_finalized_chain(
        network: TestNetwork) -> None:
    """One validator of four is cut off and out-mines the other three; they finalize, it
    cannot. Healed, it adopts their lighter chain: it justified more (Gasper's fork choice)."""
    nodes = start_validators(network)
    miner, minority = nodes[0], nodes[3]
    next_epoch(network, miner, nodes)
    wait_until(lambda: all(finalized_height(n) >= E for n in nodes), 30,
               message="every node finalized epoch 1")
    network.split_network([nodes[:3], [minority]])
    majority = nodes[:3]
    before = finalized_height(miner)
    next_epoch(network, miner, majority)
    next_epoch(network, miner, majority)  # 3 of 4 stakes: justifies and finalizes
    wait_until(lambda: finalized_height(miner) > before, 30, message="the majority finalizes")
    network.generate(minority, miner.height() + 2 * E - minority.height())  # more work
    assert minority.height() > miner.height()
    assert finalized_height(minority) == before  # alone it finalizes nothing
    final = finalized_height(miner)
    final_id = str(miner.block(final)["id"])

    network.join_network()
    network.sync_blocks([miner, minority], block=final_id)  # the minority's tip descends from it
    # `final` is finalized by votes that blocks above it carry, and the minority may hold
    # `final` before those: wait for them (it failed 1 run in 5 asserting at once: 8 == 12)
    wait_until(lambda: finalized_height(minority) >= final, 60,
               message="the minority finalizes the majority's checkpoint")
    assert finalized_height(minority) == final
    assert finalized_height(miner) == final and on_best_chain(miner, final_id)
