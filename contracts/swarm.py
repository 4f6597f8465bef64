"""Swarm round settlement on chain: validators recompute `swarm.settlement.settle` and apply it.

Any node may send ``SettleSwarmRound`` once the round's reveals are in. The payload carries
the client's signed request (its signature authorises the fee), who was selected, every
commitment and opening the settler saw, and the claimed `RoundOutcome`. Validators read
reputations and bonded stakes from state, recompute the outcome and reject the transaction
unless it is identical; then the client's fee is taken (from its escrow first,
contracts.escrow.pay_fee), payouts and the refund credited,
stakes slashed, reputations written and the round marked settled (a round settles once).

Ties are seeded by the round's beacon (docs/swarm.md §5.2a "Ties"): the request names a height
h, a settlement names the id of this chain's block h + ``params.swarm_beacon_delay`` and is
valid only once that block is mined below it (`beacon_fault`); the outcome is recomputed with
`swarm.settlement.beacon_seed` of that block, so neither the client nor the settler chooses
how ties fall.

Reputation decays lazily: state keeps each node's last settled height under
``swact/<addr>``; the reputation a round uses is `decayed_reputation` of the stored score
over the blocks since then, and a participant's new score is stored with the current height.

Selection is recomputed from the candidate table of an epoch (``params.swarm_epoch_blocks``
blocks): `record_epoch_snapshot` runs before the first transaction of each epoch (from
`consensus.state`'s transition, so the node's block builder and mempool run it too),
unregisters indexed nodes whose bonded stake fell below ``min_node_stake``
(`contracts.registry.evict_unstaked`), and records every eligible node (indexed, bonded
stake >= the minimum, calibrated) with its bonded stake, stored score, last settled height
and models. A round named by its
``reputation_height`` h reads the table of epoch ⌊h/N⌋ (`candidate_table`), with
reputations decayed to that epoch's first height, so a settlement stays valid whatever
happens between selection and settlement (other rounds settling, stakes moving, new
registrations). The settlement recomputes the outcome from that table, then applies its
reputation deltas to the nodes' current scores (two rounds of one epoch compose) and
collects its slashes from the stake the nodes hold now.

With an inclusion window (``ChainParams.swarm_inclusion_window`` > 0) a settlement is held:
its money is collected and its settler bonded, and it pays out only when the window closes
(`finalize_held_rounds`, a begin-block hook). In the window anyone may prove from one
leaf of the round's data root that it left out an opening or a commitment, or carries a bad
item (`ChallengeSwarmRound`); that voids it, and `swarm.inclusion.challenge_award` says who
gets the bond (a node proving its own left-out data gets nothing of it). Large rounds
settle by data root alone (`SettleSwarmRoot`); their data is posted on chain only when
asked (`PostRoundLeaves`), and the outcome is then recomputed (docs/swarm.md §7a).

State layout: ``swround/<round_id>`` -> `SettledRound`; ``swact/<addr>`` -> `SwarmActivity`;
``swheld/<round_id>`` -> `HeldRound`; ``swheldidx`` -> `HeldIndex`; ``swleaf/<round_id><u16
slot>`` -> `RoundLeaf` (posted data);
``swepochs`` -> `SwarmEpochs` (the retained snapshots); ``swsnap/<u64 epoch><u16 page>`` ->
`CandidatePage`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, ClassVar

from contracts.bank import credit, debit
from contracts.base import RECENT_BLOCK_COUNT, Payload, PayloadKind, TxContext, require
from contracts.escrow import pay_fee, refund_fee
from contracts.registry import (
    RegisterSwarmNode,
    evict_unstaked,
    is_capable,
    register_swarm_node,
    swarm_node_ids,
)
from contracts.staking import slash_stake
from core.encoding import (
    MAX_U64,
    U64,
    Canonical,
    FixedBytes,
    Hash32,
    ListOf,
    Nested,
    PublicKey,
    UInt,
)
from core.params import DEFAULT_SWARM_EPOCH_BLOCKS, ChainParams
from core.records import ModelIds
from core.state import State
from swarm.data_root import (
    MAX_PROOF,
    inclusion_proof,
    leaf_hash,
    leaf_items,
    leaves_root,
    round_leaves,
    round_slots,
)
from swarm.inclusion import (
    CHALLENGER_SHARE_BPS as CHALLENGER_SHARE_BPS,  # re-exported (tests/framework/chaos.py)
)
from swarm.inclusion import (
    CLAIM_BAD_ITEM,
    CLAIM_MISSING_EQUIVOCATION,
    CLAIM_MISSING_OPENING,
    CLAIM_NAMES,
    CLAIM_UNAVAILABLE,
    CLAIM_WRONG_OUTCOME,
    ChallengeAward,
    Claim,
    bad_item_fault,
    challenge_award,
    leaf_fault,
    missing_equivocation_fault,
    missing_opening_fault,
    proof_fault,
)
from swarm.messages import (
    MAX_COMMITMENTS,
    MAX_ROUND_NODES,
    SLASH_REASONS,
    AnswerOpening,
    Commitment,
    JudgmentOpening,
    RoundLeaf,
    RoundOutcome,
    SortedNodeIds,
    SwarmRequest,
)
from swarm.selection import ROLE_ANSWER, ROLE_JUDGE, Candidate, select_nodes
from swarm.settlement import (
    BPS,
    DEFAULT_PARAMS,
    SettlementParams,
    beacon_seed,
    decayed_reputation,
    settle,
)

ROUND_PREFIX = b"swround/"
ACTIVITY_PREFIX = b"swact/"
# network constants until they move into ChainParams
SETTLEMENT_PARAMS: SettlementParams = DEFAULT_PARAMS
REPUTATION_FLOOR = 100
REPUTATION_HALF_LIFE = 50_000  # blocks
# a settlement evaluates reputations at a height it names, at most this many blocks back, so
# the outcome it claims does not depend on which block includes it
MAX_SETTLEMENT_LAG = 100
if MAX_SETTLEMENT_LAG >= RECENT_BLOCK_COUNT:
    raise RuntimeError("a settlement must read its beacon block among the recent block ids")
EPOCHS_KEY = b"swepochs"
SNAPSHOT_PREFIX = b"swsnap/"
SNAPSHOT_PAGE = 128  # candidates per page (a page stays below the 1 MiB value bound)
# retained snapshots: every epoch overlapping the settlement window, the current one
# (at most MAX_SETTLEMENT_LAG / N + 2 for N >= 1)
MAX_RETAINED_SNAPSHOTS = MAX_SETTLEMENT_LAG + 2


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
    beacon_block: Hash32  # the round's beacon block (`beacon_fault`): its id seeds the ties
    answerers: SortedNodeIds
    judges: SortedNodeIds
    commitments: Annotated[tuple[Commitment, ...], ListOf(Nested(Commitment), MAX_COMMITMENTS,
                                                          strictly_increasing=True)]
    answer_openings: Annotated[tuple[AnswerOpening, ...], ListOf(
        Nested(AnswerOpening), 2 * MAX_ROUND_NODES, strictly_increasing=True)]
    judgment_openings: Annotated[tuple[JudgmentOpening, ...], ListOf(
        Nested(JudgmentOpening), 2 * MAX_ROUND_NODES, strictly_increasing=True)]
    outcome: Annotated[RoundOutcome, Nested(RoundOutcome)]


@dataclasses.dataclass(frozen=True, order=True)
class CandidateEntry(Canonical):
    """One eligible node of an epoch's candidate table, as state held it at the epoch start."""

    TAG: ClassVar[bytes] = b"pouw/swcandidate"
    MEMOISE: ClassVar[bool] = False
    node: Hash32
    stake: U64  # bonded stake (at least min_node_stake)
    score: U64  # stored reputation
    last_active: U64  # height of its last settled round (if ``active``): decay origin
    active: Annotated[int, UInt(1)]
    models: ModelIds


@dataclasses.dataclass(frozen=True)
class CandidatePage(Canonical):
    """Up to `SNAPSHOT_PAGE` consecutive entries of a candidate table (node id order)."""

    TAG: ClassVar[bytes] = b"pouw/swcandpage"
    MEMOISE: ClassVar[bool] = False
    entries: Annotated[tuple[CandidateEntry, ...], ListOf(Nested(CandidateEntry), SNAPSHOT_PAGE,
                                                          strictly_increasing=True)]


@dataclasses.dataclass(frozen=True, order=True)
class RetainedSnapshot(Canonical):
    """An epoch whose candidate table is stored, in ``pages`` pages."""

    TAG: ClassVar[bytes] = b"pouw/swretained"
    MEMOISE: ClassVar[bool] = False
    epoch: U64
    pages: Annotated[int, UInt(16)]


@dataclasses.dataclass(frozen=True)
class SwarmEpochs(Canonical):
    """The epochs whose candidate tables are stored, increasing."""

    TAG: ClassVar[bytes] = b"pouw/swepochs"
    MEMOISE: ClassVar[bool] = False
    snapshots: Annotated[tuple[RetainedSnapshot, ...], ListOf(
        Nested(RetainedSnapshot), MAX_RETAINED_SNAPSHOTS, strictly_increasing=True)] = ()


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


def epoch_of(height: int, epoch_blocks: int) -> int:
    return height // epoch_blocks


def _page_key(epoch: int, page: int) -> bytes:
    return SNAPSHOT_PREFIX + epoch.to_bytes(8, "big") + page.to_bytes(2, "big")


def retained_snapshots(state: State) -> tuple[RetainedSnapshot, ...]:
    record = state.record(EPOCHS_KEY, SwarmEpochs)
    return () if record is None else record.snapshots


def live_candidate_table(state: State, *, min_stake: int) -> tuple[CandidateEntry, ...]:
    """The candidate table as state holds it now: every indexed node with bonded stake at
    least ``min_stake`` (and positive) that passed calibration, in node id order."""
    entries = []
    for node in swarm_node_ids(state):
        bonded = state.stake(node).bonded
        record = state.swarm_node(node)
        if bonded < max(1, min_stake) or record is None or not is_capable(state, node):
            continue
        since = last_active(state, node)
        entries.append(CandidateEntry(
            node=node, stake=bonded, score=state.reputation(node),
            last_active=0 if since is None else since, active=int(since is not None),
            models=record.models))
    return tuple(entries)


def record_epoch_snapshot(state: State, *, height: int, params: ChainParams,
                          force: bool = False) -> None:
    """Begin-epoch rules, run before the first transaction of each epoch is applied
    (`consensus.state` calls it before every transaction; it acts once per epoch).

    ``force``: record even with an empty registry index (a registration that makes a node
    eligible at once calls it so, before it changes the table)."""
    n = params.swarm_epoch_blocks
    epoch = epoch_of(height, n)
    retained = retained_snapshots(state)
    # an epoch's table is recorded once, before the first transaction of the epoch
    if retained and retained[-1].epoch >= epoch:
        return
    index = swarm_node_ids(state)
    # with an empty index the table is empty and stays so until a registration (forced)
    if not index and not force:
        return
    # indexed nodes whose bonded stake fell below the minimum are unregistered, except nodes
    # a held settlement slashed: a challenge may still return their stake
    evict_unstaked(state, min_stake=params.min_node_stake, exempt=pending_slashed(state))
    # the table: every eligible node with its stake, score, last settled height and models
    table = live_candidate_table(state, min_stake=params.min_node_stake)
    pages = [table[i:i + SNAPSHOT_PAGE] for i in range(0, len(table), SNAPSHOT_PAGE)]
    for page, entries in enumerate(pages):
        state.set_record(_page_key(epoch, page), CandidatePage(entries))
    # tables no settlement can name any more (before the window of this epoch) are deleted
    oldest = epoch_of(max(0, epoch * n - MAX_SETTLEMENT_LAG), n)
    for old in retained:
        if old.epoch < oldest:
            for page in range(old.pages):
                state.set_record(_page_key(old.epoch, page), None)
    state.set_record(EPOCHS_KEY, SwarmEpochs((
        *(old for old in retained if old.epoch >= oldest),
        RetainedSnapshot(epoch=epoch, pages=len(pages)))))


def candidate_table(state: State, *, height: int, min_stake: int,
                    epoch_blocks: int = DEFAULT_SWARM_EPOCH_BLOCKS
                    ) -> tuple[CandidateEntry, ...]:
    """The candidate table of the epoch containing ``height``, as it was at the epoch start.

    The stored table of the first retained epoch >= that epoch (no transaction ran in the
    epochs in between, or one would have recorded their table, so the table did not change);
    none stored (no transaction since the epoch began): the table as state holds it now.
    """
    epoch = epoch_of(height, epoch_blocks)
    for snap in retained_snapshots(state):
        if snap.epoch >= epoch:
            return tuple(
                entry for page in range(snap.pages)
                for entry in _page(state, snap.epoch, page) if entry.stake >= min_stake)
    return live_candidate_table(state, min_stake=min_stake)


def _page(state: State, epoch: int, page: int) -> tuple[CandidateEntry, ...]:
    record = state.record(_page_key(epoch, page), CandidatePage)
    return () if record is None else record.entries


def table_reputation(entry: CandidateEntry, *, height: int, epoch_blocks: int) -> int:
    """The entry's reputation decayed to the first height of the epoch containing ``height``."""
    if not entry.active:
        return entry.score
    start = epoch_of(height, epoch_blocks) * epoch_blocks
    return decayed_reputation(entry.score, blocks_elapsed=max(0, start - entry.last_active),
                              floor=REPUTATION_FLOOR, half_life=REPUTATION_HALF_LIFE)


def selection_candidates(state: State, *, height: int, model: bytes, min_stake: int,
                         epoch_blocks: int = DEFAULT_SWARM_EPOCH_BLOCKS) -> list[Candidate]:
    """The eligible nodes of the epoch containing ``height`` (`candidate_table`), in node id
    order: bonded stake, reputation decayed to the epoch start, capable iff serving ``model``
    (or any). Ineligible nodes (weight 0: never drawn) are left out."""
    return [Candidate(node=entry.node, stake=entry.stake,
                      reputation=table_reputation(entry, height=height,
                                                  epoch_blocks=epoch_blocks),
                      capable=model == ANY_MODEL or model in entry.models)
            for entry in candidate_table(state, height=height, min_stake=min_stake,
                                         epoch_blocks=epoch_blocks)]


def selected_nodes(state: State, request: SwarmRequest, *, height: int, min_stake: int,
                   epoch_blocks: int = DEFAULT_SWARM_EPOCH_BLOCKS
                   ) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """(answerers, judges) of ``request``'s round in draw order, drawn from the candidate
    table of the epoch containing ``height``: what every node and validator computes."""
    pool = selection_candidates(state, height=height, model=request.model, min_stake=min_stake,
                                epoch_blocks=epoch_blocks)
    round_id = request.round_id()
    return (select_nodes(pool, round_id=round_id, role=ROLE_ANSWER, count=request.answers),
            select_nodes(pool, round_id=round_id, role=ROLE_JUDGE, count=request.judges))


def _round_inputs(table: Iterable[CandidateEntry], nodes: Iterable[bytes], *, height: int,
                  epoch_blocks: int) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """(reputations, stakes) of ``nodes`` from the table (0 for a node not in it)."""
    by_node = {entry.node: entry for entry in table}
    reputations: dict[bytes, int] = {}
    stakes: dict[bytes, int] = {}
    for node in nodes:
        entry = by_node.get(node)
        reputations[node] = 0 if entry is None else table_reputation(
            entry, height=height, epoch_blocks=epoch_blocks)
        stakes[node] = 0 if entry is None else entry.stake
    return reputations, stakes


def beacon_height(request: SwarmRequest, params: ChainParams) -> int:
    """The height of a round's beacon block: ``swarm_beacon_delay`` above the request's."""
    return request.beacon_height + params.swarm_beacon_delay


def beacon_fault(request: SwarmRequest, *, reputation_height: int, beacon_block: bytes,
                 ctx: TxContext) -> str | None:
    """The first tie-seed rule a settlement breaks, or None (docs/swarm.md §5.2a "Ties").

    The round's tie seed is `swarm.settlement.beacon_seed` (round id, ``beacon_block``); the
    block must be the settling chain's block at `beacon_height`, mined before this one."""
    delay = ctx.params.swarm_beacon_delay
    height = beacon_height(request, ctx.params)
    # the round is drawn at or after the height its request names
    if reputation_height < request.beacon_height:
        return "swarm.beacon_height"
    # ... and before its beacon block is mined (a stale request's beacon was known)
    if delay and reputation_height >= height:
        return "swarm.beacon_stale"
    # the beacon block is mined below this block: until then the settlement waits
    if height >= ctx.height:
        return "swarm.beacon_pending"
    # the settlement names this chain's block at that height (not another branch's)
    if ctx.block_id_at(height) != beacon_block:
        return "swarm.beacon_block"
    return None


#: A node runs a request naming a height at most this many blocks below its tip
#: (`request_beacon_fault`, docs/swarm.md §5.2a "Late commits"). With a beacon delay k
#: (``swarm_beacon_delay``) > this lag, a round drawn as late as a node allows still has
#: k - MAX_REQUEST_LAG blocks to commit before its beacon block is mined (a client cannot
#: sign at h and ask when the beacon is about to be known); with k <= the lag the stale rule
#: binds first (a round may then be drawn at h + k - 1, one block before its beacon); with
#: k = 0 it keeps the beacon block among the ids a settlement can read
#: (`contracts.base.RECENT_BLOCK_COUNT`).
MAX_REQUEST_LAG = 8


def request_beacon_fault(request: SwarmRequest, *, height: int,
                         params: ChainParams) -> str | None:
    """Why a node whose tip is at ``height`` must not run ``request``'s round (drawn at that
    height), or None: the settlement would break `beacon_fault`, or the round would be
    drawn too close to its beacon block for its commits to come before it."""
    # the request names a height this node has reached
    if request.beacon_height > height:
        return f"beacon_height {request.beacon_height} is above our tip ({height})"
    # its beacon block is not mined yet (swarm.beacon_stale: such a round never settles)
    if params.swarm_beacon_delay and height >= beacon_height(request, params):
        return (f"beacon_height {request.beacon_height} is stale: its beacon block "
                f"({beacon_height(request, params)}) is mined (tip {height}); sign the "
                "request with the current tip height")
    # it is recent: a late request would leave its commits too little time before the beacon
    if height - request.beacon_height > MAX_REQUEST_LAG:
        return (f"beacon_height {request.beacon_height} is more than {MAX_REQUEST_LAG} "
                f"blocks below our tip ({height}); sign the request with the current tip height")
    return None


def build_settlement(
    state: State,
    *,
    height: int,
    beacon_block: bytes,
    request: SwarmRequest,
    answerers: Iterable[bytes],
    judges: Iterable[bytes],
    commitments: Iterable[Commitment],
    answer_openings: Iterable[AnswerOpening],
    judgment_openings: Iterable[JudgmentOpening],
    min_stake: int = 0,
    epoch_blocks: int = DEFAULT_SWARM_EPOCH_BLOCKS,
) -> SettleSwarmRound:
    """The payload a node sends to settle a round: inputs sorted, outcome computed from the
    candidate table of the epoch containing ``height`` (the height the round was selected
    at), as validators will for any block up to `MAX_SETTLEMENT_LAG` later, with ties
    seeded by ``beacon_block`` (the chain's block at `beacon_height`, `beacon_fault`)."""
    answer_nodes = tuple(sorted(set(answerers)))
    judge_nodes = tuple(sorted(set(judges)))
    nodes = sorted(set(answer_nodes) | set(judge_nodes))
    commitment_list = tuple(sorted(set(commitments)))
    answer_list = tuple(sorted(set(answer_openings)))
    judgment_list = tuple(sorted(set(judgment_openings)))
    table = candidate_table(state, height=height, min_stake=min_stake, epoch_blocks=epoch_blocks)
    reputations, stakes = _round_inputs(table, nodes, height=height, epoch_blocks=epoch_blocks)
    outcome = settle(
        request=request, answerers=answer_nodes, judges=judge_nodes, commitments=commitment_list,
        answer_openings=answer_list, judgment_openings=judgment_list,
        reputations=reputations, stakes=stakes, params=SETTLEMENT_PARAMS,
        seed=beacon_seed(request.round_id(), beacon_block),
    ).outcome
    return SettleSwarmRound(request=request, reputation_height=height,
                            beacon_block=beacon_block, answerers=answer_nodes, judges=judge_nodes,
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
    fault = beacon_fault(request, reputation_height=payload.reputation_height,
                         beacon_block=payload.beacon_block, ctx=ctx)
    # the round's beacon block is this chain's, mined after the round was drawn (beacon_fault)
    require(fault is None, fault or "")
    tie_seed = beacon_seed(round_id, payload.beacon_block)
    # no more nodes than the client asked for
    require(len(payload.answerers) <= request.answers and len(payload.judges) <= request.judges,
            "swarm.too_many_nodes")
    height = payload.reputation_height
    epoch_blocks = ctx.params.swarm_epoch_blocks
    table = candidate_table(state, height=height, min_stake=ctx.params.min_node_stake,
                            epoch_blocks=epoch_blocks)
    pool = [Candidate(node=entry.node, stake=entry.stake,
                      reputation=table_reputation(entry, height=height,
                                                  epoch_blocks=epoch_blocks),
                      capable=request.model == ANY_MODEL or request.model in entry.models)
            for entry in table]
    answerers = select_nodes(pool, round_id=round_id, role=ROLE_ANSWER, count=request.answers)
    judges = select_nodes(pool, round_id=round_id, role=ROLE_JUDGE, count=request.judges)
    # the answerers must be exactly the ones the epoch's table draws for this round
    require(payload.answerers == tuple(sorted(answerers)), "swarm.selection_mismatch",
            "answerers")
    # the judges must be exactly the ones the epoch's table draws for this round
    require(payload.judges == tuple(sorted(judges)), "swarm.selection_mismatch", "judges")
    nodes = sorted(set(payload.answerers) | set(payload.judges))
    reputations, stakes = _round_inputs(table, nodes, height=height, epoch_blocks=epoch_blocks)
    recomputed = settle(
        request=request, answerers=payload.answerers, judges=payload.judges,
        commitments=payload.commitments, answer_openings=payload.answer_openings,
        judgment_openings=payload.judgment_openings, reputations=reputations, stakes=stakes,
        params=SETTLEMENT_PARAMS, seed=tie_seed,
    ).outcome
    # the claimed outcome must be exactly what the rules give on the epoch's table
    require(recomputed == payload.outcome, "swarm.settlement_mismatch")
    if ctx.params.swarm_inclusion_window == 0:
        _collect(state, request, recomputed)
        _apply_outcome(state, recomputed, reputations, request.client, ctx)
        _mark_settled(state, round_id, recomputed, ctx)
        return
    leaves = round_leaves(round_id=round_id, answerers=payload.answerers, judges=payload.judges,
                          commitments=payload.commitments,
                          answer_openings=payload.answer_openings,
                          judgment_openings=payload.judgment_openings)
    _hold(state, request=request, reputation_height=height, answerers=payload.answerers,
          judges=payload.judges, root=leaves_root(leaves), full=True, outcome=recomputed,
          reputations=reputations, stakes=stakes, tie_seed=tie_seed, ctx=ctx)


def _collect(state: State, request: SwarmRequest, outcome: RoundOutcome) -> int:
    """Take the round's money in: the client's fee and every slash. Returns how much of the
    fee came from the client's escrow."""
    # the client's escrow (locked, then releasing) and then its balance must cover the fee
    from_escrow = pay_fee(state, request.client, request.fee,
                          rule="swarm.insufficient_client_balance")
    for slash in outcome.slashes:
        # a slash (a share of the stake at the epoch start) comes from bonded stake, then
        # from unbonding entries (latest first); the node must still hold all of it
        require(slash_stake(state, slash.node, slash.amount) == slash.amount,
                "swarm.slash_uncollectable")
    return from_escrow


def _apply_outcome(state: State, outcome: RoundOutcome, reputations: Mapping[bytes, int],
                   client: bytes, ctx: TxContext) -> None:
    """Pay the round out (the money was collected by `_collect`) and move reputations."""
    for payout in outcome.payouts:
        # payouts must fit the recipients' balances
        credit(state, payout.node, payout.amount, rule="swarm.payout_overflow")
    if outcome.refund:
        credit(state, client, outcome.refund, rule="swarm.payout_overflow")
    for update in outcome.reputations:
        # the round's change (new score - table score) applies to the node's current score,
        # decayed to this block, so rounds settling in one epoch compose
        delta = update.score - reputations.get(update.node, 0)
        current = effective_reputation(state, update.node, height=ctx.height)
        state.set_reputation(update.node, min(MAX_U64, max(0, current + delta)))
        _write(state, ACTIVITY_PREFIX + update.node, SwarmActivity(ctx.height).encode())


def _mark_settled(state: State, round_id: bytes, outcome: RoundOutcome, ctx: TxContext) -> None:
    _write(state, ROUND_PREFIX + round_id,
           SettledRound(height=ctx.height, outcome_id=outcome.id()).encode())


SETTLE_SWARM_ROUND = PayloadKind(SettleSwarmRound, apply_settle_swarm_round)


def record_forced_epoch_snapshot(state: State, ctx: TxContext) -> None:
    """Record the epoch's table even from an empty index (a registration that makes a node
    eligible at once changes the table: the table as it was is recorded first)."""
    record_epoch_snapshot(state, height=ctx.height, params=ctx.params, force=True)


def apply_register_swarm_node(state: State, payload: RegisterSwarmNode, ctx: TxContext) -> None:
    """`contracts.registry.register_swarm_node`, recording the epoch's table before a
    registration changes it."""
    register_swarm_node(state, payload, ctx, before_table_change=record_forced_epoch_snapshot)


REGISTER_SWARM_NODE = PayloadKind(RegisterSwarmNode, apply_register_swarm_node)


# --- the inclusion window (docs/swarm.md §7a) ------------------------------------------------

HELD_PREFIX = b"swheld/"
HELD_INDEX_KEY = b"swheldidx"
LEAF_PREFIX = b"swleaf/"
MAX_HELD = 4096  # rounds held at once
NO_CHALLENGER = bytes(32)


@dataclasses.dataclass(frozen=True, order=True)
class NodeValue(Canonical):
    """A node and a number (a table reputation or a stake a held round was settled with)."""

    TAG: ClassVar[bytes] = b"pouw/swnodeval"
    node: PublicKey
    value: U64


NodeValues = Annotated[tuple[NodeValue, ...], ListOf(Nested(NodeValue), 2 * MAX_ROUND_NODES,
                                                     strictly_increasing=True)]


@dataclasses.dataclass(frozen=True)
class HeldRound(Canonical):
    """A settled round whose money is held until its inclusion window closes.

    The fee and the slashes are collected, the settler's bond taken; payouts, the refund and
    reputations apply when the window closes (`finalize_held_rounds`), unless a proven
    challenge voids the settlement first (`_void`). ``full``: the settlement carried its
    data (only omissions can be proven); else only its data root (bad items, omissions and
    a wrong outcome can be). ``challenger``: who asked for the data (all zero: nobody);
    ``posted``: leaves of the data posted on chain since."""

    TAG: ClassVar[bytes] = b"pouw/swheld"
    MEMOISE: ClassVar[bool] = False
    settler: PublicKey
    deadline: U64  # the last height at which a challenge is accepted
    request: Annotated[SwarmRequest, Nested(SwarmRequest)]
    reputation_height: U64
    answerers: SortedNodeIds
    judges: SortedNodeIds
    data_root: Hash32
    full: Annotated[int, UInt(1)]
    bond: U64
    outcome: Annotated[RoundOutcome, Nested(RoundOutcome)]
    reputations: NodeValues  # table reputations the outcome was computed from
    stakes: NodeValues  # table stakes the slashes were sized from
    tie_seed: Hash32  # the round's beacon seed (`beacon_fault`): a recompute uses it
    challenger: PublicKey = NO_CHALLENGER
    posted: Annotated[int, UInt(16)] = 0
    from_escrow: U64 = 0  # of the fee, taken from the client's escrow (a void puts it back)


@dataclasses.dataclass(frozen=True, order=True)
class HeldEntry(Canonical):
    TAG: ClassVar[bytes] = b"pouw/swheldent"
    deadline: U64
    round_id: Hash32


@dataclasses.dataclass(frozen=True)
class HeldIndex(Canonical):
    """Every held round by deadline, so the begin-block hook finds the due ones."""

    TAG: ClassVar[bytes] = b"pouw/swheldidx"
    MEMOISE: ClassVar[bool] = False
    entries: Annotated[tuple[HeldEntry, ...], ListOf(Nested(HeldEntry), MAX_HELD,
                                                     strictly_increasing=True)] = ()


@dataclasses.dataclass(frozen=True)
class SettleSwarmRoot(Payload):
    """Settle a round by its data root: the signed messages stay off chain (nodes hold and
    serve them), the transaction carries their Merkle root (`swarm.data_root`) and the claimed
    outcome. Held for the inclusion window, in which a bad or missing item, or (once the data
    is posted) a wrong outcome, voids it. Who was selected is recomputed, not carried."""

    KIND_ID: ClassVar[int] = 16
    request: Annotated[SwarmRequest, Nested(SwarmRequest)]
    reputation_height: U64
    beacon_block: Hash32  # the round's beacon block (`beacon_fault`)
    data_root: Hash32
    outcome: Annotated[RoundOutcome, Nested(RoundOutcome)]


@dataclasses.dataclass(frozen=True)
class ChallengeSwarmRound(Payload):
    """Prove, in a held round's window, that its settlement left out or misstated signed data
    (`swarm.inclusion`): a leaf of its data root with the Merkle proof, and the items the
    settlement left out. ``CLAIM_UNAVAILABLE`` carries nothing: it asks for the data of a
    data-root settlement, which must then be posted (`PostRoundLeaves`) before the window,
    extended by one window, closes."""

    KIND_ID: ClassVar[int] = 15
    round_id: Hash32
    claim: Annotated[int, UInt(8)]
    slot: Annotated[int, UInt(16)] = 0
    leaf: Annotated[tuple[RoundLeaf, ...], ListOf(Nested(RoundLeaf), 1)] = ()
    proof: Annotated[tuple[bytes, ...], ListOf(FixedBytes(32), MAX_PROOF)] = ()
    commitments: Annotated[tuple[Commitment, ...], ListOf(Nested(Commitment), 1)] = ()
    answer_openings: Annotated[tuple[AnswerOpening, ...], ListOf(Nested(AnswerOpening), 1)] = ()
    judgment_openings: Annotated[tuple[JudgmentOpening, ...],
                                 ListOf(Nested(JudgmentOpening), 1)] = ()


@dataclasses.dataclass(frozen=True)
class PostedLeaf(Canonical):
    TAG: ClassVar[bytes] = b"pouw/swpostleaf"
    slot: Annotated[int, UInt(16)]
    leaf: Annotated[RoundLeaf, Nested(RoundLeaf)]
    proof: Annotated[tuple[bytes, ...], ListOf(FixedBytes(32), MAX_PROOF)]


@dataclasses.dataclass(frozen=True)
class PostRoundLeaves(Payload):
    """Post leaves of a data-root settlement on chain (each with its proof). When the last
    one lands, the outcome is recomputed from them: a bad leaf or another outcome voids it."""

    KIND_ID: ClassVar[int] = 17
    round_id: Hash32
    leaves: Annotated[tuple[PostedLeaf, ...], ListOf(Nested(PostedLeaf), 2 * MAX_ROUND_NODES)]


def held_round(state: State, round_id: bytes) -> HeldRound | None:
    return state.record(HELD_PREFIX + round_id, HeldRound)


def held_entries(state: State) -> tuple[HeldEntry, ...]:
    record = state.record(HELD_INDEX_KEY, HeldIndex)
    return () if record is None else record.entries


def _set_held_entries(state: State, entries: Iterable[HeldEntry]) -> None:
    ordered = tuple(sorted(entries))
    state.set_record(HELD_INDEX_KEY, HeldIndex(ordered) if ordered else None)


def _leaf_key(round_id: bytes, slot: int) -> bytes:
    return LEAF_PREFIX + round_id + slot.to_bytes(2, "big")


def _node_values(values: Mapping[bytes, int]) -> tuple[NodeValue, ...]:
    return tuple(NodeValue(node=node, value=v) for node, v in sorted(values.items()))


def pending_slashed(state: State) -> frozenset[bytes]:
    """Nodes slashed by a settlement still in its inclusion window (not evicted until it
    closes: a void returns the stake)."""
    return frozenset(slash.node for entry in held_entries(state)
                     for held in (held_round(state, entry.round_id),) if held is not None
                     for slash in held.outcome.slashes)


def settler_bond(request: SwarmRequest, outcome: RoundOutcome) -> int:
    """What a settler locks for the window: the most the round could pay anyone (the fee and
    the slashed stake), so leaving data out never pays."""
    return request.fee + sum(s.amount for s in outcome.slashes)


def _hold(state: State, *, request: SwarmRequest, reputation_height: int,
          answerers: Iterable[bytes], judges: Iterable[bytes], root: bytes, full: bool,
          outcome: RoundOutcome, reputations: Mapping[bytes, int], stakes: Mapping[bytes, int],
          tie_seed: bytes, ctx: TxContext) -> None:
    """Collect the round's money and hold its payouts for the inclusion window."""
    round_id = request.round_id()
    from_escrow = _collect(state, request, outcome)
    bond = settler_bond(request, outcome)
    # the settler locks its bond (returned when the window closes, forfeited to a challenge)
    debit(state, ctx.sender, bond, rule="swarm.settler_bond")
    entries = held_entries(state)
    # at most MAX_HELD rounds are held at once
    require(len(entries) < MAX_HELD, "swarm.too_many_held")
    deadline = ctx.height + ctx.params.swarm_inclusion_window
    state.set_record(HELD_PREFIX + round_id, HeldRound(
        settler=ctx.sender, deadline=deadline, request=request,
        reputation_height=reputation_height, answerers=tuple(sorted(set(answerers))),
        judges=tuple(sorted(set(judges))), data_root=root, full=int(full), bond=bond,
        outcome=outcome, reputations=_node_values(reputations), stakes=_node_values(stakes),
        tie_seed=tie_seed, from_escrow=from_escrow))
    _set_held_entries(state, (*entries, HeldEntry(deadline=deadline, round_id=round_id)))
    _mark_settled(state, round_id, outcome, ctx)


def _release(state: State, round_id: bytes, held: HeldRound) -> None:
    """Forget a held round: its record, its index entry, its posted leaves."""
    state.set_record(HELD_PREFIX + round_id, None)
    _set_held_entries(state, (e for e in held_entries(state) if e.round_id != round_id))
    for slot in range(len(held.answerers) + len(held.judges)):
        if state.kv.get(_leaf_key(round_id, slot)) is not None:
            state.set_record(_leaf_key(round_id, slot), None)


def _void(state: State, round_id: bytes, held: HeldRound, *, beneficiary: bytes,
          award: ChallengeAward, late_node: bytes | None = None) -> None:
    """A proven challenge: undo the collection, share out the bond (``award``,
    `swarm.inclusion.challenge_award`), let the round settle again."""
    # the client gets its fee back where a new settlement takes it from: the escrowed part
    # to its locked escrow, the rest to its balance
    refund_fee(state, held.request.client, held.request.fee, from_escrow=held.from_escrow,
               rule="swarm.payout_overflow")
    for slash in held.outcome.slashes:
        # every slash is returned to the node's bonded stake: nobody is slashed on data
        # the settlement misstated
        record = state.stake(slash.node)
        state.set_stake(slash.node, dataclasses.replace(record,
                                                        bonded=record.bonded + slash.amount))
    # the challenger earns its share of the settler's bond, the settler gets its part back,
    # the rest is burned
    credit(state, beneficiary, award.challenger, rule="swarm.payout_overflow")
    credit(state, held.settler, award.settler, rule="swarm.payout_overflow")
    if late_node is not None and award.late_penalty:
        # the node whose data arrived only by another's challenge pays the late-reveal
        # penalty from its stake (burned; as much as it still holds)
        slash_stake(state, late_node, award.late_penalty)
    _release(state, round_id, held)
    # the round may be settled again, with the data the challenge proved
    state._write(ROUND_PREFIX + round_id, None)


def _held_outcome_fault(outcome: RoundOutcome, *, round_id: bytes, fee: int,
                        answerers: Iterable[bytes], judges: Iterable[bytes],
                        reputations: Mapping[bytes, int], stakes: Mapping[bytes, int]
                        ) -> str | None:
    """Bounds a data-root settlement's claimed outcome must keep (validators cannot recompute
    it; a wrong one within them is voided once the data is posted): money is conserved,
    only participants are paid, slashed and rated, by at most the rules' amounts."""
    participants = set(answerers) | set(judges)
    step, penalty = SETTLEMENT_PARAMS.reputation_step, SETTLEMENT_PARAMS.reputation_penalty
    # the outcome is this round's
    if outcome.round_id != round_id:
        return "swarm.outcome_round"
    # it ranks drawn answerers, each once, with one score each
    if (not set(outcome.ranking) <= set(answerers) or len(set(outcome.ranking))
            != len(outcome.ranking) or len(outcome.scores) != len(outcome.ranking)):
        return "swarm.outcome_ranking"
    # it pays, slashes and rates only the round's participants
    named = ({p.node for p in outcome.payouts} | {x.node for x in outcome.slashes}
             | {u.node for u in outcome.reputations})
    if not named <= participants:
        return "swarm.outcome_nodes"
    # a slash is a known offence of at most the equivocation share of the table stake
    if any(x.reason not in SLASH_REASONS or x.amount > stakes.get(x.node, 0)
           * SETTLEMENT_PARAMS.equivocation_slash_bps // BPS for x in outcome.slashes):
        return "swarm.outcome_slash"
    # it pays out exactly the fee and the slashed stake
    if (sum(p.amount for p in outcome.payouts) + outcome.refund
            != fee + sum(x.amount for x in outcome.slashes)):
        return "swarm.outcome_money"
    # a reputation moves at most as far as a round can move it
    if any(not reputations.get(u.node, 0) - 2 * step - penalty <= u.score
           <= reputations.get(u.node, 0) + 2 * step for u in outcome.reputations):
        return "swarm.outcome_reputation"
    return None


def apply_settle_swarm_root(state: State, payload: SettleSwarmRoot, ctx: TxContext) -> None:
    """Data-root settlement rules, in order."""
    request = payload.request
    round_id = request.round_id()
    height = payload.reputation_height
    # a data-root settlement is held, so the network must have an inclusion window
    require(ctx.params.swarm_inclusion_window > 0, "swarm.no_inclusion_window")
    # the request must be for this chain
    require(request.chain_id == ctx.params.chain_id, "swarm.chain_id")
    # the client must have signed the request (it authorises the fee)
    require(request.verify_signature(), "swarm.request_signature")
    # a round settles once
    require(settled_round(state, round_id) is None, "swarm.already_settled")
    # reputations are evaluated at a recent height, not in the future
    require(ctx.height - MAX_SETTLEMENT_LAG <= height <= ctx.height, "swarm.reputation_height")
    fault = beacon_fault(request, reputation_height=height, beacon_block=payload.beacon_block,
                         ctx=ctx)
    # the round's beacon block is this chain's, mined after the round was drawn (beacon_fault)
    require(fault is None, fault or "")
    epoch_blocks = ctx.params.swarm_epoch_blocks
    answerers, judges = selected_nodes(state, request, height=height,
                                       min_stake=ctx.params.min_node_stake,
                                       epoch_blocks=epoch_blocks)
    table = candidate_table(state, height=height, min_stake=ctx.params.min_node_stake,
                            epoch_blocks=epoch_blocks)
    reputations, stakes = _round_inputs(table, sorted(set(answerers) | set(judges)),
                                        height=height, epoch_blocks=epoch_blocks)
    fault = _held_outcome_fault(payload.outcome, round_id=round_id, fee=request.fee,
                                answerers=answerers, judges=judges, reputations=reputations,
                                stakes=stakes)
    # the claimed outcome keeps the rules' bounds (it is recomputed once the data is posted)
    require(fault is None, fault or "")
    _hold(state, request=request, reputation_height=height, answerers=answerers, judges=judges,
          root=payload.data_root, full=False, outcome=payload.outcome, reputations=reputations,
          stakes=stakes, tie_seed=beacon_seed(round_id, payload.beacon_block), ctx=ctx)


def challenge_fault(payload: ChallengeSwarmRound, held: HeldRound) -> str | None:
    """The first rule a leaf challenge breaks against ``held``, or None: it is proven."""
    round_id = held.request.round_id()
    # the challenge carries one leaf
    if len(payload.leaf) != 1:
        return "inclusion.leaf_count"
    leaf = payload.leaf[0]
    fault = proof_fault(leaf, root=held.data_root, slot=payload.slot,
                        slots=round_slots(held.answerers, held.judges), proof=payload.proof)
    if fault is not None:
        return fault
    if payload.claim == CLAIM_BAD_ITEM:
        return bad_item_fault(leaf, round_id=round_id)
    if payload.claim == CLAIM_MISSING_OPENING:
        return missing_opening_fault(leaf, round_id=round_id, commitments=payload.commitments,
                                     answer_openings=payload.answer_openings,
                                     judgment_openings=payload.judgment_openings)
    if payload.claim == CLAIM_MISSING_EQUIVOCATION:
        return missing_equivocation_fault(leaf, round_id=round_id,
                                          commitments=payload.commitments)
    return "inclusion.claim"


def apply_challenge_swarm_round(state: State, payload: ChallengeSwarmRound,
                                ctx: TxContext) -> None:
    """Challenge rules, in order."""
    held = held_round(state, payload.round_id)
    # the round's settlement is held
    require(held is not None, "swarm.not_held")
    assert held is not None
    # the inclusion window is open
    require(ctx.height <= held.deadline, "swarm.window_closed")
    # the claim is a known one
    require(payload.claim in CLAIM_NAMES, "inclusion.claim")
    if payload.claim == CLAIM_UNAVAILABLE:
        # only a data-root settlement's data can be missing
        require(not held.full, "swarm.data_on_chain")
        # one availability challenge per round
        require(held.challenger == NO_CHALLENGER, "swarm.already_challenged")
        deadline = max(held.deadline, ctx.height + ctx.params.swarm_inclusion_window)
        _set_held_entries(state, (
            *(e for e in held_entries(state) if e.round_id != payload.round_id),
            HeldEntry(deadline=deadline, round_id=payload.round_id)))
        state.set_record(HELD_PREFIX + payload.round_id, dataclasses.replace(
            held, deadline=deadline, challenger=ctx.sender))
        return
    fault = challenge_fault(payload, held)
    # the leaf is the settlement's and proves the claim (swarm.inclusion)
    require(fault is None, fault or "")
    node = payload.leaf[0].node  # whose data the challenge adds (or whose leaf is bad)
    stakes = {v.node: v.value for v in held.stakes}
    award = challenge_award(claim=payload.claim, bond=held.bond, self_proof=ctx.sender == node,
                            node_stake=stakes.get(node, 0))
    _void(state, payload.round_id, held, beneficiary=ctx.sender, award=award, late_node=node)


def apply_post_round_leaves(state: State, payload: PostRoundLeaves, ctx: TxContext) -> None:
    """Posting rules, in order; the last leaf recomputes the outcome."""
    round_id = payload.round_id
    held = held_round(state, round_id)
    # the round's settlement is held
    require(held is not None, "swarm.not_held")
    assert held is not None
    # the inclusion window is open
    require(ctx.height <= held.deadline, "swarm.window_closed")
    # a full settlement's data is on chain already
    require(not held.full, "swarm.data_on_chain")
    slots = round_slots(held.answerers, held.judges)
    # once every leaf is posted (and the outcome checked) there is nothing left to post
    require(held.posted < len(slots), "swarm.data_complete")
    posted = held.posted
    for item in payload.leaves:
        fault = proof_fault(item.leaf, root=held.data_root, slot=item.slot, slots=slots,
                            proof=item.proof)
        # every leaf is the settlement's, proven under its data root
        require(fault is None, fault or "")
        if state.kv.get(_leaf_key(round_id, item.slot)) is None:
            state.set_record(_leaf_key(round_id, item.slot), item.leaf)
            posted += 1
    if posted < len(slots):
        state.set_record(HELD_PREFIX + round_id, dataclasses.replace(held, posted=posted))
        return
    leaves = [state.record(_leaf_key(round_id, slot), RoundLeaf) for slot in range(len(slots))]
    complete = [leaf for leaf in leaves if leaf is not None]
    # all the data is on chain: a bad leaf, or an outcome the rules do not give, voids it
    if any(leaf_fault(leaf, round_id=round_id) is not None for leaf in complete) or \
            recompute_outcome(held, complete) != held.outcome:
        _void(state, round_id, held, beneficiary=ctx.sender, award=challenge_award(
            claim=CLAIM_WRONG_OUTCOME, bond=held.bond, self_proof=False, node_stake=0))
        return
    state.set_record(HELD_PREFIX + round_id, dataclasses.replace(held, posted=posted))


def recompute_outcome(held: HeldRound, leaves: Iterable[RoundLeaf]) -> RoundOutcome:
    """The outcome the rules give on a held round's leaves (with its table inputs)."""
    commitments, answer_openings, judgment_openings = leaf_items(leaves)
    return settle(request=held.request, answerers=held.answerers, judges=held.judges,
                  commitments=commitments, answer_openings=answer_openings,
                  judgment_openings=judgment_openings,
                  reputations={v.node: v.value for v in held.reputations},
                  stakes={v.node: v.value for v in held.stakes},
                  params=SETTLEMENT_PARAMS, seed=held.tie_seed).outcome


def finalize_held_rounds(state: State, ctx: TxContext) -> None:
    """Begin-block hook: every held round whose window closed before this height pays
    out; one whose data was asked for and never fully posted is voided instead (the
    availability challenger takes the bond's share)."""
    due = [e for e in held_entries(state) if e.deadline < ctx.height]
    for entry in due:
        held = held_round(state, entry.round_id)
        assert held is not None
        slots = len(held.answerers) + len(held.judges)
        if held.challenger != NO_CHALLENGER and held.posted < slots:
            _void(state, entry.round_id, held, beneficiary=held.challenger,
                  award=challenge_award(claim=CLAIM_UNAVAILABLE, bond=held.bond,
                                        self_proof=False, node_stake=0))
            continue
        _apply_outcome(state, held.outcome, {v.node: v.value for v in held.reputations},
                       held.request.client, ctx)
        # the settler's bond comes back
        credit(state, held.settler, held.bond, rule="swarm.payout_overflow")
        _release(state, entry.round_id, held)


SETTLE_SWARM_ROOT = PayloadKind(SettleSwarmRoot, apply_settle_swarm_root)
CHALLENGE_SWARM_ROUND = PayloadKind(ChallengeSwarmRound, apply_challenge_swarm_round)
POST_ROUND_LEAVES = PayloadKind(PostRoundLeaves, apply_post_round_leaves)


def settlement_leaves(payload: SettleSwarmRound) -> tuple[RoundLeaf, ...]:
    """The data-root leaves of a full settlement (what validators hold it to)."""
    return round_leaves(round_id=payload.request.round_id(), answerers=payload.answerers,
                        judges=payload.judges, commitments=payload.commitments,
                        answer_openings=payload.answer_openings,
                        judgment_openings=payload.judgment_openings)


def posted_leaves(state: State, round_id: bytes, held: HeldRound
                  ) -> tuple[RoundLeaf, ...] | None:
    """A data-root settlement's leaves, once all of them are posted on chain."""
    slots = len(held.answerers) + len(held.judges)
    leaves = [state.record(_leaf_key(round_id, slot), RoundLeaf) for slot in range(slots)]
    complete = tuple(leaf for leaf in leaves if leaf is not None)
    return complete if len(complete) == slots else None


def challenge_payload(round_id: bytes, leaves: Sequence[RoundLeaf],
                      claim: Claim) -> ChallengeSwarmRound:
    """The transaction payload proving ``claim`` against a settlement with ``leaves``."""
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return ChallengeSwarmRound(
        round_id=round_id, claim=claim.claim, slot=claim.slot, leaf=(leaves[claim.slot],),
        proof=inclusion_proof(hashes, claim.slot), commitments=claim.commitments,
        answer_openings=claim.answer_openings, judgment_openings=claim.judgment_openings)


def post_payloads(round_id: bytes, leaves: Sequence[RoundLeaf], *, per_tx: int = 8
                  ) -> list[PostRoundLeaves]:
    """``leaves`` (all of a round's, slot order) in `PostRoundLeaves` payloads of ``per_tx``
    (8 judgment leaves of a 32-answer round fit a transaction)."""
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return [PostRoundLeaves(round_id=round_id, leaves=tuple(
        PostedLeaf(slot=i, leaf=leaves[i], proof=inclusion_proof(hashes, i))
        for i in range(start, min(len(leaves), start + per_tx))))
        for start in range(0, len(leaves), per_tx)]


def build_root_settlement(
    state: State, *, height: int, beacon_block: bytes, request: SwarmRequest,
    answerers: Iterable[bytes],
    judges: Iterable[bytes], commitments: Iterable[Commitment],
    answer_openings: Iterable[AnswerOpening], judgment_openings: Iterable[JudgmentOpening],
    min_stake: int = 0, epoch_blocks: int = DEFAULT_SWARM_EPOCH_BLOCKS,
) -> tuple[SettleSwarmRoot, tuple[RoundLeaf, ...]]:
    """A data-root settlement of a round too large for `SettleSwarmRound`, with the leaves
    its settler must keep (and post if asked) for the window."""
    full = build_settlement(state, height=height, beacon_block=beacon_block, request=request,
                            answerers=answerers,
                            judges=judges, commitments=commitments,
                            answer_openings=answer_openings,
                            judgment_openings=judgment_openings, min_stake=min_stake,
                            epoch_blocks=epoch_blocks)
    leaves = settlement_leaves(full)
    return (SettleSwarmRoot(request=request, reputation_height=height,
                            beacon_block=beacon_block, data_root=leaves_root(leaves),
                            outcome=full.outcome), leaves)
