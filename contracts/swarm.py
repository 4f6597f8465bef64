"""Swarm round settlement on chain: validators recompute `swarm.settlement.settle` and apply it.

Any node may send ``SettleSwarmRound`` once the round's reveals are in. The payload carries
the client's signed request (its signature authorises the fee), who was selected, every
commitment and opening the settler saw, and the claimed `RoundOutcome`. Validators read
reputations and bonded stakes from state, recompute the outcome and reject the transaction
unless it is identical; then the client's fee is debited, payouts and the refund credited,
stakes slashed, reputations written and the round marked settled (a round settles once).

Reputation decays lazily: state keeps each node's last settled height under
``swact/<addr>``; the reputation a round uses is `decayed_reputation` of the stored score
over the blocks since then, and a participant's new score is stored with the current height.

Known gaps (see docs/swarm.md): selection is not recomputed here (state has no index of
eligible nodes to draw from, and no calibration record yet), so the payload's answerers and
judges are only checked to be registered, staked nodes; and the settler chooses which
openings to include (an omitted opening makes its author a no-show).

State layout: ``swround/<round_id>`` -> `SettledRound`; ``swact/<addr>`` -> `SwarmActivity`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, ClassVar

from consensus.encoding import U64, Canonical, Hash32, ListOf, Nested
from contracts.bank import credit, debit
from contracts.base import Payload, PayloadKind, TxContext, require
from swarm.messages import (
    MAX_COMMITMENTS,
    MAX_ROUND_NODES,
    AnswerOpening,
    Commitment,
    JudgmentOpening,
    RoundOutcome,
    SortedNodeIds,
    SwarmRequest,
)
from swarm.settlement import DEFAULT_PARAMS, SettlementParams, decayed_reputation, settle

if TYPE_CHECKING:
    from consensus.state import State

ROUND_PREFIX = b"swround/"
ACTIVITY_PREFIX = b"swact/"
# network constants until they move into ChainParams
SETTLEMENT_PARAMS: SettlementParams = DEFAULT_PARAMS
REPUTATION_FLOOR = 100
REPUTATION_HALF_LIFE = 50_000  # blocks
# a settlement evaluates reputations at a height it names, at most this many blocks back, so
# the outcome it claims does not depend on which block includes it
MAX_SETTLEMENT_LAG = 100


@dataclasses.dataclass(frozen=True)
class SettledRound(Canonical):
    """Marks a round settled: at which height, with which outcome (its id)."""

    TAG: ClassVar[bytes] = b"pouw/swsettled"
    height: U64
    outcome_id: Hash32


@dataclasses.dataclass(frozen=True)
class SwarmActivity(Canonical):
    """Height of a node's last settled round (reputation decays from there)."""

    TAG: ClassVar[bytes] = b"pouw/swactivity"
    last_height: U64


@dataclasses.dataclass(frozen=True)
class SettleSwarmRound(Payload):
    """Settle one swarm round (see module docstring); lists are sorted, one encoding."""

    KIND_ID: ClassVar[int] = 10
    request: Annotated[SwarmRequest, Nested(SwarmRequest)]
    reputation_height: U64  # reputations are decayed to this height
    answerers: SortedNodeIds
    judges: SortedNodeIds
    commitments: Annotated[tuple[Commitment, ...], ListOf(Nested(Commitment), MAX_COMMITMENTS,
                                                          strictly_increasing=True)]
    answer_openings: Annotated[tuple[AnswerOpening, ...], ListOf(
        Nested(AnswerOpening), 2 * MAX_ROUND_NODES, strictly_increasing=True)]
    judgment_openings: Annotated[tuple[JudgmentOpening, ...], ListOf(
        Nested(JudgmentOpening), 2 * MAX_ROUND_NODES, strictly_increasing=True)]
    outcome: Annotated[RoundOutcome, Nested(RoundOutcome)]


def settled_round(state: State, round_id: bytes) -> SettledRound | None:
    raw = state.kv.get(ROUND_PREFIX + round_id)
    return None if raw is None else SettledRound.decode(raw)


def last_active(state: State, address: bytes) -> int | None:
    raw = state.kv.get(ACTIVITY_PREFIX + address)
    return None if raw is None else SwarmActivity.decode(raw).last_height


def effective_reputation(state: State, address: bytes, *, height: int) -> int:
    """The reputation a round at ``height`` uses: the stored score, decayed since last use."""
    score = state.reputation(address)
    since = last_active(state, address)
    if since is None:
        return score
    return decayed_reputation(score, blocks_elapsed=max(0, height - since),
                              floor=REPUTATION_FLOOR, half_life=REPUTATION_HALF_LIFE)


def build_settlement(
    state: State,
    *,
    height: int,
    request: SwarmRequest,
    answerers: Iterable[bytes],
    judges: Iterable[bytes],
    commitments: Iterable[Commitment],
    answer_openings: Iterable[AnswerOpening],
    judgment_openings: Iterable[JudgmentOpening],
) -> SettleSwarmRound:
    """The payload a node sends to settle a round: inputs sorted, outcome computed on
    ``state`` with reputations decayed to ``height`` (the node's tip), as validators will
    for any block up to `MAX_SETTLEMENT_LAG` later, unless the state of a participant
    changes first (then the transaction fails with ``swarm.settlement_mismatch``: rebuild)."""
    answer_nodes = tuple(sorted(set(answerers)))
    judge_nodes = tuple(sorted(set(judges)))
    nodes = sorted(set(answer_nodes) | set(judge_nodes))
    commitment_list = tuple(sorted(set(commitments)))
    answer_list = tuple(sorted(set(answer_openings)))
    judgment_list = tuple(sorted(set(judgment_openings)))
    outcome = settle(
        request=request, answerers=answer_nodes, judges=judge_nodes, commitments=commitment_list,
        answer_openings=answer_list, judgment_openings=judgment_list,
        reputations={node: effective_reputation(state, node, height=height) for node in nodes},
        stakes={node: state.stake(node).bonded for node in nodes}, params=SETTLEMENT_PARAMS,
    ).outcome
    return SettleSwarmRound(request=request, reputation_height=height,
                            answerers=answer_nodes, judges=judge_nodes,
                            commitments=commitment_list, answer_openings=answer_list,
                            judgment_openings=judgment_list, outcome=outcome)


def _write(state: State, key: bytes, value: bytes) -> None:
    # State has typed setters only for its own records; _write keeps root and journal right.
    state._write(key, value)


def apply_settle_swarm_round(state: State, payload: SettleSwarmRound, ctx: TxContext) -> None:
    """Settlement rules, in order."""
    request = payload.request
    round_id = request.round_id()
    # the request must be for this chain
    require(request.chain_id == ctx.params.chain_id, "swarm.chain_id")
    # the client must have signed the request (it authorises the fee)
    require(request.verify_signature(), "swarm.request_signature")
    # a round settles once
    require(settled_round(state, round_id) is None, "swarm.already_settled")
    # reputations are evaluated at a recent height, not in the future
    require(ctx.height - MAX_SETTLEMENT_LAG <= payload.reputation_height <= ctx.height,
            "swarm.reputation_height")
    # no more nodes than the client asked for
    require(len(payload.answerers) <= request.answers and len(payload.judges) <= request.judges,
            "swarm.too_many_nodes")
    nodes = sorted(set(payload.answerers) | set(payload.judges))
    for node in nodes:
        # every selected node must be a registered swarm node
        require(state.swarm_node(node) is not None, "swarm.unregistered_node", node.hex())
        # ...with at least the minimum bonded stake
        require(state.stake(node).bonded >= ctx.params.min_node_stake, "swarm.insufficient_stake",
                node.hex())
    reputations = {node: effective_reputation(state, node, height=payload.reputation_height)
                   for node in nodes}
    stakes = {node: state.stake(node).bonded for node in nodes}
    recomputed = settle(
        request=request, answerers=payload.answerers, judges=payload.judges,
        commitments=payload.commitments, answer_openings=payload.answer_openings,
        judgment_openings=payload.judgment_openings, reputations=reputations, stakes=stakes,
        params=SETTLEMENT_PARAMS,
    ).outcome
    # the claimed outcome must be exactly what the rules give
    require(recomputed == payload.outcome, "swarm.settlement_mismatch")
    # the client must hold the fee
    debit(state, request.client, request.fee, rule="swarm.insufficient_client_balance")
    for slash in recomputed.slashes:
        record = state.stake(slash.node)
        state.set_stake(slash.node, dataclasses.replace(record,
                                                        bonded=record.bonded - slash.amount))
    for payout in recomputed.payouts:
        # payouts must fit the recipients' balances
        credit(state, payout.node, payout.amount, rule="swarm.payout_overflow")
    if recomputed.refund:
        credit(state, request.client, recomputed.refund, rule="swarm.payout_overflow")
    for update in recomputed.reputations:
        state.set_reputation(update.node, update.score)
        _write(state, ACTIVITY_PREFIX + update.node, SwarmActivity(ctx.height).encode())
    _write(state, ROUND_PREFIX + round_id,
           SettledRound(height=ctx.height, outcome_id=recomputed.id()).encode())


SETTLE_SWARM_ROUND = PayloadKind(SettleSwarmRound, apply_settle_swarm_round)
