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

Selection is recomputed: validators redraw the answerers and judges with
`swarm.selection.select_nodes` over every registered node in the registry index
(`contracts.registry.swarm_node_ids`, one fixed order), each a `Candidate` with its bonded
stake (0 below the minimum node stake), its reputation decayed to the payload's
``reputation_height``, and ``capable`` only if it passed calibration and serves the
requested model; a settlement naming other nodes fails with ``swarm.selection_mismatch``.
(Stakes and capability are read from the current state: a change between the selection and
the settlement makes the draw differ, and the node rebuilds at a newer height.)

Known gap (see docs/swarm.md): the settler chooses which openings to include (an omitted
opening makes its author a no-show).

State layout: ``swround/<round_id>`` -> `SettledRound`; ``swact/<addr>`` -> `SwarmActivity`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, ClassVar

from consensus.encoding import U64, Canonical, Hash32, ListOf, Nested
from contracts.bank import credit, debit
from contracts.base import Payload, PayloadKind, TxContext, require
from contracts.registry import is_capable, swarm_node_ids
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
from swarm.selection import ROLE_ANSWER, ROLE_JUDGE, Candidate, select_nodes
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


ANY_MODEL = bytes(32)


def selection_candidates(state: State, *, height: int, model: bytes,
                         min_stake: int) -> list[Candidate]:
    """Every registered node as selection sees it at ``height``, in registry index order:
    stake 0 below ``min_stake``; capable iff calibrated and serving ``model`` (or any)."""
    candidates = []
    for node in swarm_node_ids(state):
        record = state.swarm_node(node)
        bonded = state.stake(node).bonded
        serves = record is not None and (model == ANY_MODEL or model in record.models)
        candidates.append(Candidate(
            node=node, stake=bonded if bonded >= min_stake else 0,
            reputation=effective_reputation(state, node, height=height),
            capable=serves and is_capable(state, node)))
    return candidates


def selected_nodes(state: State, request: SwarmRequest, *, height: int,
                   min_stake: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(answerers, judges) of ``request``'s round in draw order, drawn from ``state`` with
    reputations at ``height``: what every node and validator computes."""
    pool = selection_candidates(state, height=height, model=request.model, min_stake=min_stake)
    round_id = request.round_id()
    return (select_nodes(pool, round_id=round_id, role=ROLE_ANSWER, count=request.answers),
            select_nodes(pool, round_id=round_id, role=ROLE_JUDGE, count=request.judges))


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
    answerers, judges = selected_nodes(state, request, height=payload.reputation_height,
                                       min_stake=ctx.params.min_node_stake)
    # the answerers must be exactly the ones the chain draws for this round
    require(payload.answerers == tuple(sorted(answerers)), "swarm.selection_mismatch",
            "answerers")
    # the judges must be exactly the ones the chain draws for this round
    require(payload.judges == tuple(sorted(judges)), "swarm.selection_mismatch", "judges")
    nodes = sorted(set(payload.answerers) | set(payload.judges))
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
