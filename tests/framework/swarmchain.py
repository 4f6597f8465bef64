"""Swarm rounds on a test chain (the contract tests): a registered pool written straight
into state or joined through real transactions, rounds drawn by the chain, their settlement
payloads, and calibration answers."""

from __future__ import annotations

from collections.abc import Sequence

from consensus.block import Block
from consensus.genesis import dev_seed
from consensus.tx import Transaction, public_key, sign_transaction
from contracts import Payload
from contracts.bank import Transfer
from contracts.base import RECENT_BLOCK_COUNT, TxContext
from contracts.registry import (
    CALIBRATION_QUESTIONS,
    CAPABILITY_PREFIX,
    RegisterSwarmNode,
    SubmitCalibration,
    SwarmCapability,
    calibration_seed,
)
from contracts.staking import Stake
from contracts.swarm import (
    SettleSwarmRound,
    SwarmActivity,
    apply_register_swarm_node,
    apply_settle_swarm_round,
    beacon_height,
    build_settlement,
    selected_nodes,
)
from core.encoding import tagged_hash
from core.records import StakeRecord
from swarm.calibration import calibration_questions
from tests.framework.chain import Chain, make_block, new_chain, undelayed_config
from tests.framework.roundkit import STAKE, Round, build_round, honest, make_request, seed

CLIENT_SEED = dev_seed(1)
CLIENT = public_key(CLIENT_SEED)
FEE = 1_000_000
HEIGHT = 10
MODEL = bytes(32)
FUNDS = 10**9
POOL = [seed(f"pool{i}") for i in range(24)]  # registered, staked, calibrated nodes
SEED_OF = {public_key(s): s for s in POOL}
EPOCH_POOL = [seed(f"epoch-pool{i}") for i in range(12)]


def register_pool(chain: Chain, *, reputation: int = 1000, active_since: int | None = None,
                  pool: list[bytes] = POOL) -> None:
    """Register ``pool`` through the registry contract, staked, calibrated, with reputation."""
    for s in pool:
        node = public_key(s)
        chain.state.set_stake(node, StakeRecord(bonded=STAKE))
        apply_register_swarm_node(chain.state, RegisterSwarmNode(models=(bytes(32),)),
                                  TxContext(sender=node, height=1, params=chain.params))
        chain.state.set_record(CAPABILITY_PREFIX + node,
                               SwarmCapability(capable=1, height=1, correct=16))
        chain.state.set_reputation(node, reputation)
        if active_since is not None:
            chain.state.set_record(b"swact/" + node, SwarmActivity(active_since))


def setup_round(chain: Chain, *, n: int = 5, judges: int = 4, no_show: bool = False,
                height: int = HEIGHT, reputation: int = 1000,
                active_since: int | None = None) -> Round:
    """A round whose answerers and judges are the ones the chain draws at ``height`` (the
    first request nonce whose two draws are disjoint, so the roles stay separate)."""
    register_pool(chain, reputation=reputation, active_since=active_since)
    for nonce in range(100):
        request = make_request(CLIENT_SEED, fee=FEE, answers=n, judges=judges, nonce=nonce,
                               beacon_height=max(0, height - 1))
        drawn, judged = selected_nodes(chain.state, request, height=height,
                                       min_stake=chain.params.min_node_stake)
        if not set(drawn) & set(judged):
            break
    assert len(drawn) == n and len(judged) == judges and not set(drawn) & set(judged)
    answers = [(SEED_OF[node], f"answer q={(i * 3) % n}".encode())
               for i, node in enumerate(drawn)]
    return build_round(
        request=request, answers=answers, judges=[(SEED_OF[node], honest) for node in judged],
        answer_no_shows=(answers[0][0],) if no_show else ())


def block_id_at(chain: Chain, height: int) -> bytes:
    """The id of the block at ``height``: the test chain's, or above its tip a stand-in (the
    contract tests settle rounds at heights the test chain never mined;
    `settlement_context` gives the transition these ids)."""
    if height <= chain.tip.height:
        return chain.headers[height].block_id()
    return tagged_hash(b"pouw/testblock", height.to_bytes(8, "big"))


def settlement_context(sender: bytes, height: int, chain: Chain) -> TxContext:
    """The context of a transaction in a block at ``height`` whose ancestors are the
    `block_id_at` blocks (what a round's beacon rule reads)."""
    recent = tuple(block_id_at(chain, h) for h in range(
        height - 1, max(-1, height - 1 - RECENT_BLOCK_COUNT), -1))
    return TxContext(sender=sender, height=height, params=chain.params,
                     parent_id=recent[0] if recent else b"", recent_block_ids=recent)


def round_beacon(chain: Chain, r: Round) -> bytes:
    """The id of ``r``'s beacon block (`block_id_at`)."""
    return block_id_at(chain, beacon_height(r.request, chain.params))


def payload_for(chain: Chain, r: Round, *, height: int = HEIGHT) -> SettleSwarmRound:
    return build_settlement(
        chain.state, height=height, beacon_block=round_beacon(chain, r), request=r.request,
        answerers=r.answerers, judges=r.judges, commitments=r.commitments,
        answer_openings=r.answer_openings, judgment_openings=r.judgment_openings)


def apply_settlement(chain: Chain, payload: SettleSwarmRound, *, height: int = HEIGHT) -> None:
    apply_settle_swarm_round(chain.state, payload,
                             settlement_context(public_key(dev_seed(2)), height, chain))


def answers_for(parent: bytes, node: bytes, *, right: int) -> tuple[bytes, ...]:
    """Answers to the node's calibration questions on ``parent``: the first ``right`` exact,
    the rest off by one."""
    qs = calibration_questions(calibration_seed(parent, node), count=CALIBRATION_QUESTIONS)
    return tuple(str(q.expected + (0 if i < right else 1)).encode() for i, q in enumerate(qs))


def send(chain: Chain, items: Sequence[tuple[bytes, Payload]]) -> Block:
    """Sign ``items`` (seed, payload) with consecutive nonces, mine and connect one block."""
    nonces: dict[bytes, int] = {}
    txs: list[Transaction] = []
    for s, payload in items:
        sender = public_key(s)
        nonce = nonces.get(sender, chain.state.account(sender).nonce)
        nonces[sender] = nonce + 1
        txs.append(sign_transaction(s, chain_id=chain.params.chain_id, nonce=nonce, fee=10,
                                    payload=payload))
    block = make_block(chain, txs)
    chain.connect(block)
    return block


def advance_to(chain: Chain, height: int) -> list[Block]:
    """Empty blocks until the tip is at ``height``."""
    return [send(chain, []) for _ in range(height - chain.tip.height)]


def join(chain: Chain, seeds: Sequence[bytes], *, stake: int = STAKE) -> list[Block]:
    """Fund, stake, register and calibrate ``seeds`` in three blocks."""
    blocks = [send(chain, [(CLIENT_SEED, Transfer(to=public_key(s), amount=FUNDS))
                           for s in seeds])]
    blocks.append(send(chain, [item for s in seeds for item in (
        (s, Stake(amount=stake)), (s, RegisterSwarmNode(models=(MODEL,))))]))
    tip = chain.tip.block_id()
    blocks.append(send(chain, [(s, SubmitCalibration(
        seed_block=tip, answers=answers_for(tip, public_key(s), right=16))) for s in seeds]))
    return blocks


def pool_chain(**overrides: object) -> tuple[Chain, list[Block]]:
    """A chain (`undelayed_config`: its rounds settle right after their draw) on which
    `EPOCH_POOL` has joined the swarm."""
    chain = new_chain(undelayed_config(**overrides))
    return chain, join(chain, EPOCH_POOL)
