"""Finality on chain: validator registration, vote aggregates, slashing evidence (Casper FFG).

docs/finality.md is the design. In short: a bonded account registers a BLS key with a proof
of possession (`RegisterValidator`); at the first block of each epoch of
``params.finality_epoch_blocks`` blocks a begin-block hook records the epoch's validator set
(`begin_finality_block`), and at the next block the epoch's checkpoint (the first block's
id). Aggregated votes travel as `FinalityVotes` transactions; the contract checks each one
rule per line, counts the new participants' stake on the (source, target) link, justifies
the target at a 2/3 quorum of the epoch's stake, and finalizes the source when the target is
its direct child. `ReportVoteViolation` slashes a double or surround vote once per validator.

Nothing is written before the first validator registers, so a chain without validators
keeps today's state roots. The state-changing rules live here, in the contracts layer, as
every payload's rules do (the transition dispatches to contracts); `consensus.finality` is
the read-side and duty interface the node calls, built on these functions.

State layout (``fin/`` keys): ``fin/val/<addr>`` `ValidatorRecord`; ``fin/pk/<H(pubkey)>``
`PubkeyOwner`; ``fin/index`` `ValidatorIndex`; ``fin/set/<u64 epoch>`` `ValidatorSet`;
``fin/cp/<u64 epoch>`` `Checkpoint`; ``fin/votes/<u64 target epoch>`` `TargetVotes`;
``fin/status`` `FinalityStatus`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, ClassVar

from contracts.bank import credit
from contracts.base import Payload, PayloadKind, TxContext, require
from contracts.staking import slash_stake
from core.bls import BACKEND
from core.encoding import U64, Canonical, FixedBytes, ListOf, Nested, PublicKey, UInt, VarBytes
from core.encoding import tagged_hash as _tagged_hash
from core.params import BPS, ChainParams
from core.state import State
from core.votes import (
    BlsPublicKey,
    BlsSignature,
    Checkpoint,
    SignedVote,
    VoteData,
    vote_signing_root,
)

VALIDATOR_PREFIX = b"fin/val/"
PUBKEY_PREFIX = b"fin/pk/"
INDEX_KEY = b"fin/index"
SET_PREFIX = b"fin/set/"
CHECKPOINT_PREFIX = b"fin/cp/"
VOTES_PREFIX = b"fin/votes/"
STATUS_KEY = b"fin/status"

MAX_VALIDATORS = 4096  # registered validators (a set record stays below the 1 MiB bound)
MAX_BITFIELD_BYTES = MAX_VALIDATORS // 8
MAX_LINKS = 8  # distinct justified sources counted for one target epoch
MAX_JUSTIFIED = 64  # justified checkpoints kept as possible sources (newest)
MAX_PARTICIPATION = 16  # epochs of participation kept for the API
#: the finalized checkpoint before any real finalization: genesis (its id is not in state)
GENESIS_CHECKPOINT = Checkpoint(epoch=0, root=bytes(32))

Bitfield = Annotated[bytes, VarBytes(MAX_BITFIELD_BYTES)]


# -- records ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ValidatorRecord(Canonical):
    """A registered validator: its BLS key, when it first registered, and whether it was
    slashed. Kept for good (old votes stay slashable, an account's key never changes)."""

    TAG: ClassVar[bytes] = b"pouw/validator"
    MEMOISE: ClassVar[bool] = False
    pubkey: BlsPublicKey
    registered_height: U64
    slashed: Annotated[int, UInt(1)] = 0


@dataclasses.dataclass(frozen=True)
class PubkeyOwner(Canonical):
    """Which account registered a BLS key (one account per key)."""

    TAG: ClassVar[bytes] = b"pouw/pkowner"
    MEMOISE: ClassVar[bool] = False
    address: PublicKey


@dataclasses.dataclass(frozen=True)
class ValidatorIndex(Canonical):
    """Every registered validator neither slashed nor evicted for a low bond, increasing."""

    TAG: ClassVar[bytes] = b"pouw/valindex"
    MEMOISE: ClassVar[bool] = False
    addresses: Annotated[tuple[bytes, ...], ListOf(FixedBytes(32), MAX_VALIDATORS,
                                                   strictly_increasing=True)] = ()


@dataclasses.dataclass(frozen=True, order=True)
class ValidatorEntry(Canonical):
    """One member of an epoch's set: address, BLS key, bonded stake at the epoch's start."""

    TAG: ClassVar[bytes] = b"pouw/valentry"
    MEMOISE: ClassVar[bool] = False
    address: PublicKey
    pubkey: BlsPublicKey
    stake: U64


@dataclasses.dataclass(frozen=True)
class ValidatorSet(Canonical):
    """An epoch's validators by increasing address; a bitfield's bit i is entry i."""

    TAG: ClassVar[bytes] = b"pouw/valset"
    MEMOISE: ClassVar[bool] = False
    entries: Annotated[tuple[ValidatorEntry, ...], ListOf(Nested(ValidatorEntry), MAX_VALIDATORS)]

    @property
    def total_stake(self) -> int:
        return sum(entry.stake for entry in self.entries)

    def index_of(self, address: bytes) -> int | None:
        for i, entry in enumerate(self.entries):
            if entry.address == address:
                return i
        return None


@dataclasses.dataclass(frozen=True)
class LinkTally(Canonical):
    """Who has been counted for the link ``source`` -> (the record's target), and their stake."""

    TAG: ClassVar[bytes] = b"pouw/linktally"
    MEMOISE: ClassVar[bool] = False
    source: Annotated[Checkpoint, Nested(Checkpoint)]
    bits: Bitfield
    stake: U64


@dataclasses.dataclass(frozen=True)
class TargetVotes(Canonical):
    """Every counted link to one target epoch (at most `MAX_LINKS` sources)."""

    TAG: ClassVar[bytes] = b"pouw/targetvotes"
    MEMOISE: ClassVar[bool] = False
    links: Annotated[tuple[LinkTally, ...], ListOf(Nested(LinkTally), MAX_LINKS)] = ()


@dataclasses.dataclass(frozen=True)
class Participation(Canonical):
    """The most stake counted on one link to ``epoch``'s target, of the set's total."""

    TAG: ClassVar[bytes] = b"pouw/participation"
    MEMOISE: ClassVar[bool] = False
    epoch: U64
    voted: U64
    total: U64


@dataclasses.dataclass(frozen=True)
class FinalityStatus(Canonical):
    """Where finality stands on this chain.

    ``anchor``: the first checkpoint with a validator set, justified by definition;
    ``finalized``: the last finalized checkpoint (`GENESIS_CHECKPOINT` until the first);
    ``justified``: justified checkpoints not older than ``finalized``, increasing (the
    possible vote sources; the last is the last justified); ``participation``: the last
    `MAX_PARTICIPATION` target epochs that received votes."""

    TAG: ClassVar[bytes] = b"pouw/finstatus"
    MEMOISE: ClassVar[bool] = False
    anchor: Annotated[Checkpoint, Nested(Checkpoint)]
    finalized: Annotated[Checkpoint, Nested(Checkpoint)]
    justified: Annotated[tuple[Checkpoint, ...], ListOf(Nested(Checkpoint), MAX_JUSTIFIED,
                                                        strictly_increasing=True)]
    participation: Annotated[tuple[Participation, ...],
                             ListOf(Nested(Participation), MAX_PARTICIPATION)] = ()

    @property
    def last_justified(self) -> Checkpoint:
        return self.justified[-1]


# -- payloads -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RegisterValidator(Payload):
    """Register the sender (a bonded account) as a validator with BLS key ``pubkey``;
    ``proof`` is the key's proof of possession (`core.bls.BlsBackend.pop_prove`)."""

    KIND_ID: ClassVar[int] = 18
    pubkey: BlsPublicKey
    proof: BlsSignature


@dataclasses.dataclass(frozen=True)
class FinalityVotes(Payload):
    """An aggregate of votes for ``data``: participation bits over the target epoch's set
    and the aggregate BLS signature of the participants."""

    KIND_ID: ClassVar[int] = 19
    data: Annotated[VoteData, Nested(VoteData)]
    bits: Bitfield
    signature: BlsSignature


@dataclasses.dataclass(frozen=True)
class ReportVoteViolation(Payload):
    """Evidence that one validator signed two slashable votes (double or surround)."""

    KIND_ID: ClassVar[int] = 20
    first: Annotated[SignedVote, Nested(SignedVote)]
    second: Annotated[SignedVote, Nested(SignedVote)]


# -- pure predicates (Casper FFG; consensus-specs phase0) ---------------------------------------

def is_double_vote(a: VoteData, b: VoteData) -> bool:
    """Two different votes for one target epoch."""
    return a != b and a.target.epoch == b.target.epoch


def is_surround_vote(a: VoteData, b: VoteData) -> bool:
    """One vote's link strictly surrounds the other's (either way round)."""
    a_surrounds = a.source.epoch < b.source.epoch and b.target.epoch < a.target.epoch
    b_surrounds = b.source.epoch < a.source.epoch and a.target.epoch < b.target.epoch
    return a_surrounds or b_surrounds


def is_slashable(a: VoteData, b: VoteData) -> bool:
    """`is_slashable_attestation_data`: a double vote or a surround vote."""
    return is_double_vote(a, b) or is_surround_vote(a, b)


def has_quorum(voted: int, total: int, params: ChainParams) -> bool:
    """Whether ``voted`` is at least the quorum fraction of a positive ``total`` stake."""
    return total > 0 and (params.finality_quorum_denominator * voted
                          >= params.finality_quorum_numerator * total)


def finalizes(source: Checkpoint, target: Checkpoint) -> bool:
    """A justified link finalizes its source when the target is the source's direct child."""
    return target.epoch == source.epoch + 1


def epoch_of(height: int, params: ChainParams) -> int:
    return height // params.finality_epoch_blocks


def bitfield_indices(bits: bytes) -> tuple[int, ...]:
    """The set bits, increasing: bit i is bit ``i % 8`` of byte ``i // 8``."""
    return tuple(8 * byte_index + bit for byte_index, byte in enumerate(bits)
                 for bit in range(8) if byte >> bit & 1)


def bitfield_of(indices: Sequence[int], size: int) -> bytes:
    """The bitfield of ``size`` members with ``indices`` set."""
    out = bytearray((size + 7) // 8)
    for i in indices:
        if not 0 <= i < size:
            raise ValueError("index outside the set")
        out[i // 8] |= 1 << (i % 8)
    return bytes(out)


# -- state access -------------------------------------------------------------------------------

def _u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def validator_record(state: State, address: bytes) -> ValidatorRecord | None:
    return state.record(VALIDATOR_PREFIX + address, ValidatorRecord)


def validator_ids(state: State) -> tuple[bytes, ...]:
    """Every registered, unslashed validator address, increasing."""
    index = state.record(INDEX_KEY, ValidatorIndex)
    return () if index is None else index.addresses


def validator_set(state: State, epoch: int) -> ValidatorSet | None:
    """The set recorded at the start of ``epoch`` (None: not recorded or pruned)."""
    return state.record(SET_PREFIX + _u64(epoch), ValidatorSet)


def checkpoint(state: State, epoch: int) -> Checkpoint | None:
    """This chain's checkpoint of ``epoch`` (recorded one block after it; recent ones only)."""
    return state.record(CHECKPOINT_PREFIX + _u64(epoch), Checkpoint)


def target_votes(state: State, epoch: int) -> TargetVotes:
    record = state.record(VOTES_PREFIX + _u64(epoch), TargetVotes)
    return TargetVotes() if record is None else record


def finality_status(state: State) -> FinalityStatus | None:
    """Where finality stands; None before the anchor (finality inactive)."""
    return state.record(STATUS_KEY, FinalityStatus)


def _pubkey_key(pubkey: bytes) -> bytes:
    return PUBKEY_PREFIX + _tagged_hash(b"pouw/blspk", pubkey)


# -- the begin-block hook -------------------------------------------------------------------------

def begin_finality_block(state: State, ctx: TxContext) -> None:
    """Before a block's transactions: record the checkpoint of the epoch the parent opened
    (at height ``e·E + 1``) and the validator set of the epoch this block opens (at ``e·E``)."""
    params = ctx.params
    blocks = params.finality_epoch_blocks
    if ctx.height >= 1 and (ctx.height - 1) % blocks == 0 and len(ctx.parent_id) == 32:
        _record_checkpoint(state, Checkpoint(epoch=(ctx.height - 1) // blocks,
                                             root=ctx.parent_id))
    if ctx.height % blocks == 0:
        _record_validator_set(state, ctx.height // blocks, params)


def _record_checkpoint(state: State, cp: Checkpoint) -> None:
    status = finality_status(state)
    members = validator_set(state, cp.epoch)
    # finality begins (the anchor) at the first checkpoint whose epoch has validators
    if status is None and (members is None or not members.entries):
        return
    state.set_record(CHECKPOINT_PREFIX + _u64(cp.epoch), cp)
    if cp.epoch >= 2:  # only the current and the previous epoch can be vote targets
        state.set_record(CHECKPOINT_PREFIX + _u64(cp.epoch - 2), None)
    if status is None:
        state.set_record(STATUS_KEY, FinalityStatus(
            anchor=cp, finalized=GENESIS_CHECKPOINT, justified=(cp,)))


def _record_validator_set(state: State, epoch: int, params: ChainParams) -> None:
    addresses = validator_ids(state)
    if not addresses and finality_status(state) is None:
        return  # no validator is registered and finality never began: nothing to record
    entries = []
    for address in addresses:
        record = validator_record(state, address)
        bonded = state.stake(address).bonded
        if record is not None and bonded >= params.min_validator_stake:
            entries.append(ValidatorEntry(address=address, pubkey=record.pubkey, stake=bonded))
    # validators whose bond fell below the minimum leave the index (they may register again
    # with the same key): the bounded index holds only bonded validators
    if len(entries) < len(addresses):
        state.set_record(INDEX_KEY, ValidatorIndex(tuple(e.address for e in entries)))
    state.set_record(SET_PREFIX + _u64(epoch), ValidatorSet(tuple(entries)))
    if epoch >= 2:  # a set is read while its epoch or the next is in the vote window
        state.set_record(SET_PREFIX + _u64(epoch - 2), None)
        state.set_record(VOTES_PREFIX + _u64(epoch - 2), None)


# -- registration ---------------------------------------------------------------------------

def apply_register_validator(state: State, payload: RegisterValidator, ctx: TxContext) -> None:
    """Registration rules, in order. A validator evicted for a low bond registers again
    the same way, with the same key."""
    key = _pubkey_key(payload.pubkey)
    addresses = validator_ids(state)
    record = validator_record(state, ctx.sender)
    owner = state.record(key, PubkeyOwner)
    # the account must not be a registered validator already
    require(ctx.sender not in addresses, "validator.already_registered")
    # a slashed validator never returns
    require(record is None or not record.slashed, "validator.slashed")
    # an account's BLS key is fixed for good (its old votes stay attributable and slashable)
    require(record is None or record.pubkey == payload.pubkey, "validator.key_changed")
    # the account must hold the validator stake bonded
    require(state.stake(ctx.sender).bonded >= ctx.params.min_validator_stake,
            "validator.insufficient_stake")
    # the registry is bounded
    require(len(addresses) < MAX_VALIDATORS, "validator.registry_full")
    # the key must decode, lie in G1 and not be the point at infinity (cached from here on)
    require(BACKEND.key_validate(payload.pubkey), "validator.pubkey_invalid")
    # one account per key: a copied key would ride on another's signatures
    require(owner is None or owner.address == ctx.sender, "validator.pubkey_taken")
    # the proof of possession must verify (no rogue keys in point-domain aggregates)
    require(BACKEND.pop_verify(payload.pubkey, payload.proof), "validator.proof_of_possession")
    if record is None:
        state.set_record(VALIDATOR_PREFIX + ctx.sender,
                         ValidatorRecord(pubkey=payload.pubkey, registered_height=ctx.height))
    state.set_record(key, PubkeyOwner(ctx.sender))
    state.set_record(INDEX_KEY, ValidatorIndex(tuple(sorted((*addresses, ctx.sender)))))


# -- votes --------------------------------------------------------------------------------

def check_vote_data(state: State, data: VoteData, *, height: int,
                    params: ChainParams) -> tuple[FinalityStatus, ValidatorSet]:
    """The rules a vote's data must meet in a block at ``height``; returns the status and the
    target epoch's set. Raises `core.errors.TransactionError` naming the rule."""
    status = finality_status(state)
    source, target = data.source, data.target
    members = validator_set(state, target.epoch)
    # finality must have begun on this chain
    require(status is not None, "votes.inactive")
    assert status is not None
    # the source must come before the target
    require(source.epoch < target.epoch, "votes.source_after_target")
    # the block must be in the target's epoch after its checkpoint, or in the next epoch
    require(target.epoch * params.finality_epoch_blocks < height
            and epoch_of(height, params) <= target.epoch + 1, "votes.target_window",
            f"target epoch {target.epoch} at height {height}")
    # the target must be this chain's checkpoint of its epoch
    require(checkpoint(state, target.epoch) == target, "votes.target_root")
    # the source must be a justified checkpoint of this chain
    require(source in status.justified, "votes.source_not_justified")
    # the target epoch must have a non-empty validator set
    require(members is not None and bool(members.entries), "votes.no_validator_set")
    assert members is not None
    return status, members


def apply_finality_votes(state: State, payload: FinalityVotes, ctx: TxContext) -> None:
    """Aggregate rules, in order; then count, justify and finalize."""
    params = ctx.params
    data = payload.data
    status, members = check_vote_data(state, data, height=ctx.height, params=params)
    size = len(members.entries)
    participants = bitfield_indices(payload.bits)
    votes = target_votes(state, data.target.epoch)
    link = next((lk for lk in votes.links if lk.source == data.source), None)
    counted = set(bitfield_indices(link.bits)) if link is not None else set()
    new = [i for i in participants if i not in counted]
    # the bitfield must have one bit per member of the target epoch's set
    require(len(payload.bits) == (size + 7) // 8, "votes.bitfield_length")
    # bits past the set's size must be zero
    require(all(i < size for i in participants), "votes.bitfield_padding")
    # the aggregate must name at least one participant
    require(bool(participants), "votes.empty")
    # at least one participant must not be counted yet for this link
    require(bool(new), "votes.nothing_new")
    # a target counts at most MAX_LINKS distinct sources
    require(link is not None or len(votes.links) < MAX_LINKS, "votes.too_many_sources")
    # the aggregate signature must verify for exactly the participants' keys
    require(BACKEND.fast_aggregate_verify(
        [members.entries[i].pubkey for i in participants],
        vote_signing_root(data, chain_id=params.chain_id), payload.signature),
        "votes.signature")
    stake = (0 if link is None else link.stake) + sum(members.entries[i].stake for i in new)
    tally = LinkTally(source=data.source, bits=bitfield_of(sorted(counted | set(new)), size),
                      stake=stake)
    others = tuple(lk for lk in votes.links if lk.source != data.source)
    state.set_record(VOTES_PREFIX + _u64(data.target.epoch),
                     TargetVotes(tuple(sorted((*others, tally), key=lambda lk: lk.source))))
    state.set_record(STATUS_KEY, _count(status, data, stake, members.total_stake, params))


def _count(status: FinalityStatus, data: VoteData, voted: int, total: int,
           params: ChainParams) -> FinalityStatus:
    """The status after a link's tally reached ``voted`` of ``total``: justification,
    finalization, participation."""
    justified = status.justified
    finalized = status.finalized
    if has_quorum(voted, total, params):
        if data.target not in justified:
            justified = tuple(sorted((*justified, data.target)))[-MAX_JUSTIFIED:]
        if finalizes(data.source, data.target) and data.source.epoch > finalized.epoch:
            finalized = data.source
            justified = tuple(cp for cp in justified if cp.epoch >= finalized.epoch)
    previous = next((p.voted for p in status.participation if p.epoch == data.target.epoch), 0)
    row = Participation(epoch=data.target.epoch, voted=max(previous, voted), total=total)
    rows = sorted((*(p for p in status.participation if p.epoch != row.epoch), row),
                  key=lambda p: p.epoch)[-MAX_PARTICIPATION:]
    return dataclasses.replace(status, finalized=finalized, justified=justified,
                               participation=tuple(rows))


# -- slashing -------------------------------------------------------------------------------

def apply_report_vote_violation(state: State, payload: ReportVoteViolation,
                                ctx: TxContext) -> None:
    """Slashing-evidence rules, in order; then slash, reward the reporter, burn the rest."""
    first, second = payload.first, payload.second
    offender = first.validator
    record = validator_record(state, offender)
    chain_id = ctx.params.chain_id
    # both votes must be signed by the same validator
    require(first.validator == second.validator, "slash.same_validator")
    # the two votes must be a double vote or a surround vote
    require(is_slashable(first.data, second.data), "slash.not_slashable")
    # the validator must be registered
    require(record is not None, "slash.unknown_validator")
    assert record is not None
    # a validator is slashed once: repeated evidence is refused
    require(not record.slashed, "slash.already_slashed")
    # the reporter must not be the offender
    require(ctx.sender != offender, "slash.self_report")
    # both signatures must verify under the registered key
    require(BACKEND.verify(record.pubkey, vote_signing_root(first.data, chain_id=chain_id),
                           first.signature)
            and BACKEND.verify(record.pubkey, vote_signing_root(second.data, chain_id=chain_id),
                               second.signature), "slash.signature")
    stake = state.stake(offender)
    bond = stake.bonded + sum(entry.amount for entry in stake.unbonding)
    taken = slash_stake(state, offender, bond * ctx.params.slash_share_bps // BPS)
    # the reporter's reward must fit its balance
    credit(state, ctx.sender, taken * ctx.params.reporter_reward_bps // BPS,
           rule="slash.reward_overflow")
    state.set_record(VALIDATOR_PREFIX + offender, dataclasses.replace(record, slashed=1))
    state.set_record(INDEX_KEY, ValidatorIndex(
        tuple(a for a in validator_ids(state) if a != offender)))


REGISTER_VALIDATOR = PayloadKind(RegisterValidator, apply_register_validator)
FINALITY_VOTES = PayloadKind(FinalityVotes, apply_finality_votes)
REPORT_VOTE_VIOLATION = PayloadKind(ReportVoteViolation, apply_report_vote_violation)
