"""Swarm nodes in process: dev identities staked, registered and calibrated on a test chain,
started with the built-in model variants and short round timeouts, and the waits the swarm
node tests share (a settlement in the mempool, a block every node took)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import aiohttp

from consensus.genesis import GenesisConfig, dev_seed
from consensus.tx import Transaction, public_key, sign_transaction
from contracts.registry import (
    CALIBRATION_QUESTIONS,
    RegisterSwarmNode,
    SubmitCalibration,
    calibration_seed,
)
from contracts.staking import Stake
from contracts.swarm import SettleSwarmRound, beacon_height, build_settlement
from core.params import ChainParams
from core.state import State
from node.builder import SwarmOptions, build_node
from node.node import Node
from node.swarm.settlement_duty import round_data
from swarm.calibration import calibration_questions
from swarm.runtime.factory import make_backend
from testnet.client import request
from tests.framework.chain import Chain, extend, new_chain, undelayed_config
from tests.framework.chain import tx as make_tx
from tests.framework.nodes import connect_all, node_config, preload
from tests.framework.nodes import swarm_service as svc
from tests.framework.util import wait_for, wait_until

VARIANTS = ("arith-xs", "arith-s", "arith-m", "arith-l")  # the built-in models, by node index
FAST: SwarmOptions = {"answer_timeout": 20.0, "judge_timeout": 20.0, "reveal_timeout": 3.0}
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


def write_genesis_config(path: Path, config: GenesisConfig) -> Path:
    """``config`` as a genesis JSON file a node loads (``genesis_path``)."""
    raw = {**dataclasses.asdict(config.params), "timestamp": config.timestamp,
           "balances": {a.hex(): v for a, v in config.balances.items()},
           "stakes": {a.hex(): v for a, v in config.stakes.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw))
    return path


async def registered_swarm(tmp_path: Path, *, registered: int = 3, count: int = 3,
                            api: bool = False, genesis: dict[str, Any] | None = None,
                            **options: Any) -> tuple[Chain, list[Node]]:
    """``count`` connected nodes with dev identities 0..count-1; the first ``registered``
    are staked, registered and calibrated swarm nodes (with ``api``, serving the whole node
    API). ``genesis``: overrides of the dev genesis without the swarm's delays
    (`undelayed_config`: a test's settlement is sent once its round is final and pays at once;
    a beacon test sets ``swarm_beacon_delay``, a window test ``swarm_inclusion_window``).
    Returns the test chain (to mine on)."""
    config_of_chain = undelayed_config(**(genesis or {}))
    chain = new_chain(config_of_chain)
    genesis_path = write_genesis_config(tmp_path / "genesis.json", config_of_chain)
    blocks = registry_blocks(chain, registered)
    nodes: list[Node] = []
    for i in range(count):
        config = node_config(tmp_path, f"s{i}", dev_key=i,
                             swarm_backend=f"builtin:{VARIANTS[i % 4]}",
                             genesis_path=genesis_path)
        # the whole API, as `pouwchain node` serves it
        node = build_node(config, swarm_options=cast(SwarmOptions, {**FAST, **options}))
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


async def round_view(node: Node, round_id: bytes) -> dict[str, Any]:
    """``GET /api/v1/rounds/{id}`` of ``node`` (it must know the round)."""
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{node.port}/api/v1/rounds/{round_id.hex()}") as resp:
        assert resp.status == 200
        view: dict[str, Any] = await resp.json()
        return view


def tip_state(node: Node) -> State:
    return State(node.chain.state_view())


def omitting_settlement(node: Node, round_id: bytes, *, omit: bytes, settler: int
                        ) -> Transaction:
    """The test-only settler path: a settlement of ``node``'s round data with ``omit``'s
    answer opening left out (it becomes a no-show), signed by dev account ``settler``."""
    state = svc(node).rounds[round_id]
    commitments, answer_openings, judgment_openings = round_data(state)
    chain_state = tip_state(node)
    params = node.chain.params
    request = state.announcement.request
    beacon = node.chain.block_id_at(beacon_height(request, params))
    assert beacon is not None, "the round's beacon block is not mined yet"
    payload = build_settlement(
        chain_state, height=state.height, beacon_block=beacon, request=request,
        answerers=state.answerers, judges=state.judges, commitments=commitments,
        answer_openings=[o for o in answer_openings if o.node != omit],
        judgment_openings=judgment_openings, min_stake=params.min_node_stake,
        epoch_blocks=params.swarm_epoch_blocks)
    key = dev_seed(settler)
    return sign_transaction(key, chain_id=params.chain_id,
                            nonce=chain_state.account(public_key(key)).nonce, fee=10,
                            payload=payload)


def beacon_wait(params: ChainParams, *, block_interval: float = 3.0) -> float:
    """A bound on the seconds a settlement waits for its round's beacon block (k =
    ``swarm_beacon_delay`` blocks, docs/swarm.md §5.2a) on a paced dev chain mined at
    ``block_interval`` (``mining_block_interval``): a paced block comes 0.5-1.5x the interval
    after its parent, never under a second (`node.mining.miner`); twice that for a loaded
    machine. Add it to a wait for a settlement on chain."""
    return 2 * params.swarm_beacon_delay * max(1.0, 1.5 * block_interval)


def wait_past_inclusion_windows(urls: Sequence[str], *, settled_heights: Iterable[int],
                                window: int, timeout: float = 180.0) -> None:
    """On a network with an inclusion window (the testnet's), a held settlement pays out in
    the first block past its window (`contracts.swarm.finalize_held_rounds` is a begin-block
    hook): wait until every node's chain is past the last window. Real node processes, over
    HTTP."""
    last = max(settled_heights) + window  # a block above this height is past every window
    wait_until(lambda: all(int(request(u, "GET", "/api/v1/status")["height"]) > last
                           for u in urls), timeout, interval=0.5,
               message="every node past the inclusion windows")
