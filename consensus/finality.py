"""Finality for the node: what to vote, whether a gossiped vote counts, how to aggregate.

Pure functions over the state of the chain head (no I/O, no clock). The rules that change
state live in `contracts.finality` (registration, aggregates, slashing; the begin-block
hook), as every payload's rules live in its contract; this module is the interface the node
builds its validator duty, vote pool, block templates and API on (docs/finality.md §9).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from contracts.base import require
from contracts.finality import (
    GENESIS_CHECKPOINT,
    FinalityStatus,
    FinalityVotes,
    RegisterValidator,
    ReportVoteViolation,
    ValidatorRecord,
    ValidatorSet,
    bitfield_indices,
    bitfield_of,
    check_vote_data,
    checkpoint,
    epoch_of,
    finality_status,
    is_slashable,
    target_votes,
    validator_record,
    validator_set,
)
from core.bls import BACKEND
from core.errors import ConsensusError
from core.params import ChainParams
from core.state import State
from core.votes import Checkpoint, SignedVote, VoteData, vote_signing_root

__all__ = [
    "GENESIS_CHECKPOINT",
    "ValidatorRecord",
    "aggregate_votes",
    "check_vote",
    "checkpoint",
    "describe",
    "finality_status",
    "finalized_block",
    "is_stalled",
    "registration_payload",
    "sign_vote",
    "slashing_evidence",
    "validator_record",
    "validator_set",
    "vote_duty",
]


def registration_payload(secret: int) -> RegisterValidator:
    """The `RegisterValidator` payload of a BLS secret key (pubkey + proof of possession)."""
    return RegisterValidator(pubkey=BACKEND.secret_to_pubkey(secret),
                             proof=BACKEND.pop_prove(secret))


def sign_vote(secret: int, data: VoteData, *, validator: bytes, chain_id: int) -> SignedVote:
    """``validator``'s vote for ``data``, signed with its BLS secret key."""
    signature = BACKEND.sign(secret, vote_signing_root(data, chain_id=chain_id))
    return SignedVote(validator=validator, data=data, signature=signature)


def vote_duty(state: State, *, height: int, params: ChainParams) -> VoteData | None:
    """What a validator votes for at a chain head of ``height`` (``state`` after that
    block): source = the last justified checkpoint, target = this epoch's checkpoint.
    None while finality is inactive or the epoch's checkpoint is not recorded yet (the head
    is the epoch's first block: its id is recorded by the next block)."""
    status = finality_status(state)
    target = checkpoint(state, epoch_of(height, params))
    if status is None or target is None:
        return None
    source = status.last_justified
    if source.epoch >= target.epoch:
        return None
    return VoteData(source=source, target=target)


def check_vote(state: State, vote: SignedVote, *, height: int, params: ChainParams,
               verify_signature: bool = True) -> int:
    """Whether a gossiped vote could count in a block at ``height`` on this chain: the data
    rules of an aggregate (`contracts.finality.check_vote_data`), set membership and the
    signature (``verify_signature=False``: the caller verified it already, e.g. a pool that
    admits only checked votes). Returns the validator's index in the target epoch's set;
    raises `core.errors.TransactionError` naming the rule (``votes.*``)."""
    _, members = check_vote_data(state, vote.data, height=height, params=params)
    index = members.index_of(vote.validator)
    # the voter must be in the target epoch's validator set
    require(index is not None, "votes.not_in_set")
    assert index is not None
    # the signature must verify under the voter's registered key
    require(not verify_signature or BACKEND.verify(members.entries[index].pubkey,
                           vote_signing_root(vote.data, chain_id=params.chain_id),
                           vote.signature), "votes.signature")
    return index


def aggregate_votes(state: State, votes: Sequence[SignedVote], *, height: int,
                    params: ChainParams, verify_signatures: bool = True
                    ) -> FinalityVotes | None:
    """One `FinalityVotes` for a block at ``height``: of the ``votes`` that pass
    `check_vote`, those for the data that adds the most stake not yet counted for its link.
    None when no vote adds anything. Invalid votes are skipped (the pool should not hold
    them; the caller may drop what this leaves out). ``verify_signatures=False`` trusts the
    votes' signatures (checked at admission): a forged one then makes the aggregate fail
    `votes.signature` in the template, which skips the transaction."""
    by_data: dict[VoteData, dict[int, SignedVote]] = {}
    members_of: dict[VoteData, ValidatorSet] = {}
    for vote in votes:
        try:
            index = check_vote(state, vote, height=height, params=params,
                               verify_signature=verify_signatures)
        except ConsensusError:  # the vote does not count in this block
            continue
        by_data.setdefault(vote.data, {})[index] = vote
        if vote.data not in members_of:
            members = validator_set(state, vote.data.target.epoch)
            assert members is not None
            members_of[vote.data] = members
    best: tuple[int, VoteData, list[int]] | None = None
    for data, chosen in sorted(by_data.items(), key=lambda item: item[0].encode()):
        link = next((lk for lk in target_votes(state, data.target.epoch).links
                     if lk.source == data.source), None)
        counted = set(bitfield_indices(link.bits)) if link is not None else set()
        new = sorted(i for i in chosen if i not in counted)
        gain = sum(members_of[data].entries[i].stake for i in new)
        if new and (best is None or gain > best[0]):
            best = (gain, data, new)
    if best is None:
        return None
    _, data, new = best
    size = len(members_of[data].entries)
    signature = BACKEND.aggregate([by_data[data][i].signature for i in new])
    return FinalityVotes(data=data, bits=bitfield_of(new, size), signature=signature)


def slashing_evidence(first: SignedVote, second: SignedVote) -> ReportVoteViolation | None:
    """The evidence payload when two votes of one validator are slashable, else None
    (signatures are checked by the contract)."""
    if first.validator != second.validator or not is_slashable(first.data, second.data):
        return None
    return ReportVoteViolation(first=first, second=second)


def is_stalled(status: FinalityStatus | None, *, height: int, params: ChainParams) -> bool:
    """Finality is stalled when the chain's epoch is more than ``finality_stall_epochs``
    past the finalized checkpoint's (reporting only: blocks never wait for finality).
    Before the anchor nothing can stall."""
    if status is None:
        return False
    return epoch_of(height, params) - status.finalized.epoch > params.finality_stall_epochs


def finalized_block(status: FinalityStatus | None) -> bytes | None:
    """The block id of the finalized checkpoint; None while it is genesis (the fork choice's
    root already)."""
    if status is None or status.finalized == GENESIS_CHECKPOINT:
        return None
    return status.finalized.root


def describe(status: FinalityStatus | None, *, height: int,
             params: ChainParams) -> dict[str, object]:
    """A JSON-ready summary for the API and CLI (heights are checkpoint heights)."""
    blocks = params.finality_epoch_blocks
    if status is None:
        return {"active": False, "stalled": False, "epoch": epoch_of(height, params)}

    def cp(c: Checkpoint) -> dict[str, object]:
        return {"epoch": c.epoch, "height": c.epoch * blocks, "root": c.root.hex()}

    return {
        "active": True,
        "epoch": epoch_of(height, params),
        "anchor": cp(status.anchor),
        "justified": cp(status.last_justified),
        "finalized": cp(status.finalized),
        "finalized_height": status.finalized.epoch * blocks,
        "stalled": is_stalled(status, height=height, params=params),
        "participation": [dataclasses.asdict(p) for p in status.participation],
    }

