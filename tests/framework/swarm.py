"""Swarm nodes in process: dev identities staked, registered and calibrated on a test chain,
started with the built-in model variants and short round timeouts, and the waits the swarm
node tests share (a settlement in the mempool, a block every node took)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consensus.genesis import dev_seed
from consensus.tx import Transaction, public_key
from contracts.registry import (
    CALIBRATION_QUESTIONS,
    RegisterSwarmNode,
    SubmitCalibration,
    calibration_seed,
)
from contracts.staking import Stake
from contracts.swarm import SettleSwarmRound
from core.state import State
from node.builder import build_node
from node.node import Node
from swarm.calibration import calibration_questions
from swarm.runtime.factory import make_backend
from tests.framework.chain import Chain, extend, new_chain
from tests.framework.chain import tx as make_tx
from tests.framework.nodes import connect_all, node_config, preload
from tests.framework.util import wait_for

VARIANTS = ("arith-xs", "arith-s", "arith-m", "arith-l")  # the built-in models, by node index
FAST = {"answer_timeout": 20.0, "judge_timeout": 20.0, "reveal_timeout": 3.0}
STAKE = 9_000  # each registered node's stake
# Rounds run at epoch starts: if the chain reads an epoch's candidate table as it was when the
# epoch began (a per-epoch snapshot), new registrations and reputations show in the next
# epoch. The dev chain's epoch length; with no snapshot, starting at a multiple is harmless.
EPOCH_BLOCKS = 10


def registry_blocks(chain: Chain, registered: int) -> list[Any]:
    """Dev accounts 0..registered-1 stake, register their variant's model and calibrate;
    then empty blocks up to the next epoch."""
    setup = []
    for i in range(registered):
        model = make_backend(f"builtin:{VARIANTS[i % 4]}").model_id
        setup += [make_tx(i, 0, Stake(amount=STAKE)), make_tx(i, 1, RegisterSwarmNode(
            models=(model,)))]
    blocks = [extend(chain, setup)]
    parent = blocks[-1].header.block_id()
    calibrations = []
    for i in range(registered):
        questions = calibration_questions(calibration_seed(parent, public_key(dev_seed(i))),
                                          count=CALIBRATION_QUESTIONS)
        calibrations.append(make_tx(i, 2, SubmitCalibration(
            seed_block=parent, answers=tuple(str(q.expected).encode() for q in questions))))
    blocks.append(extend(chain, calibrations))
    while chain.tip.height % EPOCH_BLOCKS:
        blocks.append(extend(chain))
    return blocks


async def registered_swarm(tmp_path: Path, *, registered: int = 3, count: int = 3,
                            api: bool = False, **options: Any) -> tuple[Chain, list[Node]]:
    """``count`` connected nodes with dev identities 0..count-1; the first ``registered``
    are staked, registered and calibrated swarm nodes (with ``api``, serving the whole node
    API). Returns the test chain (to mine on)."""
    chain = new_chain()
    blocks = registry_blocks(chain, registered)
    nodes: list[Node] = []
    for i in range(count):
        config = node_config(tmp_path, f"s{i}", dev_key=i,
                             swarm_backend=f"builtin:{VARIANTS[i % 4]}")
        # the whole API, as `pouwchain node` serves it
        node = build_node(config, swarm_options={**FAST, **options})
        preload(node, blocks)
        await node.start()
        nodes.append(node)
    await connect_all(nodes)
    await wait_for(lambda: all(len(n.peers) >= count - 1 for n in nodes), message="connected")
    return chain, nodes


async def stop_all(nodes: Sequence[Node]) -> None:
    for node in nodes:
        await node.stop()


def settlements(node: Node, round_id: bytes) -> list[Transaction]:
    """The settlement transactions of a round in ``node``'s mempool."""
    return [tx for tx in node.mempool.transactions() if isinstance(tx.payload, SettleSwarmRound)
            and tx.payload.request.round_id() == round_id]


async def settlement_sent(node: Node, round_id: bytes) -> Transaction:
    await wait_for(lambda: bool(settlements(node, round_id)), message="settlement in mempool")
    return settlements(node, round_id)[0]


async def mine_block(chain: Chain, nodes: Sequence[Node], txs: Sequence[Transaction]) -> int:
    """One block with ``txs`` on the test chain, handed to ``nodes[0]``; every node takes it."""
    block = extend(chain, txs)
    await nodes[0].submit_block(block)
    height = block.header.height
    await wait_for(lambda: all(n.chain.height == height for n in nodes), message="block")
    return height


def tip_state(node: Node) -> State:
    return State(node.chain.state_view())
