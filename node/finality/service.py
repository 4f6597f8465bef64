"""The node's finality service: validator duty, vote gossip, the vote pool, aggregation.

* **Registration**: a validator key kept for the node identity's own account is registered
  by the node itself (a `RegisterValidator` transaction once the account has bonded stake).
* **Duty** (a node with a validator key): on every new head, `consensus.finality.vote_duty`
  says whether a vote is due (once per epoch, after the checkpoint is recorded). The vote
  is signed off the event loop, recorded in the node's LevelDB *before* it leaves the node
  (``fin-node/last-vote``: a restarted validator never signs a second, different vote for a
  target epoch it voted for, nor one surrounding it — the slashing conditions of §7), put
  in the pool and gossiped.
* **Gossip**: VOTE frames carry one `SignedVote`. A node-wide seen-cache drops repeats
  before any check; admission (`consensus.finality.check_vote` against our head, on the
  chain thread) decides: a bad BLS signature or undecodable bytes cost the sender its
  connection and a ban (REJECT ``votes.signature`` / ``encoding``); anything an honest but
  lagging or forked peer may send (unknown checkpoint, outside the window, not in the set
  yet) is dropped quietly (IGNORE) and forgotten by the seen-cache, so it can be taken
  later. An admitted vote is relayed once to every other peer.
* **Slashing evidence**: every vote whose signature verifies under a registered validator's
  key (admitted, or for another fork's checkpoint) is kept, a few per validator; when two of
  one validator's votes are a double or a surround vote, the node sends them once as a
  `ReportVoteViolation` transaction from its identity (the reporter is rewarded).
* **Aggregation**: the miner's template ends with this node's `FinalityVotes` transaction
  for the link with the most new stake (`template_transactions`), signed by the node
  identity with fee 0 and the identity's next nonce after the template's other
  transactions, so it never takes a pending transaction's nonce.

What the service reports (`report`) is what ``GET /api/v1/finality`` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import nacl.signing

from consensus.block import BlockHeader
from consensus.finality import (
    aggregate_votes,
    check_vote,
    describe,
    finality_status,
    is_stalled,
    registration_payload,
    sign_vote,
    slashing_evidence,
    validator_record,
    validator_set,
    vote_duty,
)
from consensus.tx import Transaction, sign_transaction
from contracts.finality import (
    RegisterValidator,
    ReportVoteViolation,
    bitfield_indices,
    target_votes,
)
from core.bls import BACKEND, derive_secret
from core.errors import ConsensusError, EncodingError
from core.state import State
from core.votes import SignedVote, VoteData, vote_signing_root
from node.chain.chainstore import ChainStore
from node.chain.db import Database
from node.chain.lru import LruSet
from node.chain.mempool import Mempool
from node.finality.keys import ValidatorSeed
from node.finality.pool import VotePool
from node.logging import get_logger, log_event
from node.p2p.manager import PeerManager
from node.p2p.peer import Peer
from node.p2p.policy import Judged, Verdict
from node.p2p.protocol import Message, MsgType

log = get_logger("finality")
T = TypeVar("T")
REGISTRATION_FEE = 1000  # what the node pays to register its own validator key
REPORT_FEE = 1000  # what the node pays to send slashing evidence
SIGNED_KEPT = 8  # verified votes kept per validator to catch a double or surround vote
MAX_SIGNED_VALIDATORS = 4096  # validators whose votes are kept (the registry's bound)
# Vote hashes remembered across peers (gossip dedup, `LruSet`). What for: a vote's echoes
# from other peers come while its epoch is current; a validator signs one vote per epoch, so
# 16,384 cover 4 epochs of the most validators a registry holds (`MAX_SIGNED_VALIDATORS`),
# and thousands of epochs of a small network's. ~192 B each (`node.chain.lru.ENTRY_BYTES`):
# ~3 MiB full (100,000 took ~18 MiB over a long run, issue 12). Forgetting costs one more
# admission check (its signature included) when a peer sends an old vote again; an honest
# repeat is never punished (`PUNISHED_VOTE_RULES`).
SEEN_VOTES = 4 * MAX_SIGNED_VALIDATORS
LAST_VOTE_KEY = b"fin-node/last-vote"  # the validator's newest signed vote (slashing guard)
# rules a vote can break that prove its sender relayed garbage (everything else may be an
# honest peer that is ahead, behind or on another fork)
PUNISHED_VOTE_RULES = frozenset({"votes.signature", "votes.source_after_target",
                                 "votes.bitfield_length", "votes.bitfield_padding"})


class FinalityHost(Protocol):
    """What the finality service needs of the node (`node.node.Node` has it)."""

    @property
    def chain(self) -> ChainStore: ...
    @property
    def mempool(self) -> Mempool: ...
    @property
    def identity(self) -> nacl.signing.SigningKey: ...

    async def call_chain(self, fn: Callable[[], T]) -> T: ...

    async def submit_transaction(self, tx: Transaction) -> bytes: ...

    def add_tip_listener(self, cb: Callable[[BlockHeader], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class FinalitySummary:
    """The head's finality numbers, refreshed on every new head (what /metrics shows)."""

    active: bool = False
    finalized_height: int = 0
    justified_height: int = 0
    stalled: bool = False
    participation_epoch: int = 0
    participation: float = 0.0  # voted / total stake of the newest epoch that got votes


def vote_id(raw: bytes) -> bytes:
    """The seen-cache key of a vote: a hash of its canonical bytes."""
    return hashlib.blake2b(raw, digest_size=32, person=b"pouw/voteseen").digest()


def may_sign(last: SignedVote | None, data: VoteData) -> bool:
    """Whether signing ``data`` after ``last`` keeps the validator unslashable: a newer
    target epoch, and a source no older than the last one's (never a surround)."""
    if last is None:
        return True
    return data.target.epoch > last.data.target.epoch and \
        data.source.epoch >= last.data.source.epoch


def uncounted(state: State, votes: Sequence[SignedVote]) -> list[SignedVote]:
    """The ``votes`` whose validator is in its target's set and not yet counted for its
    link on this chain: what an aggregate could still add (the others would only cost
    `aggregate_votes` a signature check each, seconds on py-ecc)."""
    out = []
    for vote in votes:
        members = validator_set(state, vote.data.target.epoch)
        index = None if members is None else members.index_of(vote.validator)
        if index is None:
            continue
        link = next((lk for lk in target_votes(state, vote.data.target.epoch).links
                     if lk.source == vote.data.source), None)
        if link is None or index not in bitfield_indices(link.bits):
            out.append(vote)
    return out


class FinalityService:
    """Duty, gossip, pool and aggregation of one node; see the module docstring."""

    def __init__(self, host: FinalityHost, peers: PeerManager, *, store: Database,
                 validator: ValidatorSeed | None = None) -> None:
        self.host = host
        self.peers = peers
        self.store = store
        self.pool = VotePool()
        self.seen = LruSet(SEEN_VOTES)
        self.validator = None if validator is None else validator.address
        self._secret = None if validator is None else derive_secret(validator.seed)
        raw_last = store.get(LAST_VOTE_KEY)
        self.last_vote = None if raw_last is None else SignedVote.decode(raw_last)
        self.votes_signed = 0
        self.votes_received = 0
        self.votes_rejected = 0
        self.aggregates_built = 0
        # verified votes per validator (slashing evidence) and the validators reported
        self.signed: dict[bytes, list[SignedVote]] = {}
        self.reported: set[bytes] = set()
        self.reports_sent = 0
        self.summary = FinalitySummary(finalized_height=host.chain.finalized.height)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._duty_loop())
        self._wake.set()  # a restarted validator may owe this epoch's vote

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def on_connect(self, peer: Peer) -> None:
        """A new peer: offer it our own pending registration and our last vote (a validator
        that starts before it has peers, or comes back, is heard at once)."""
        address = bytes(self.host.identity.verify_key)
        for tx in self.host.mempool.pending_of(address):
            if isinstance(tx.payload, RegisterValidator):
                self.peers.broadcast_tx(tx, raw=tx.encode(), tx_id=tx.id())
        if self.last_vote is not None:
            raw = self.last_vote.encode()
            peer.send(MsgType.VOTE, {"vote": raw})

    def on_tip(self, _header: BlockHeader) -> None:
        """A new head: a vote may be due, and old votes can go."""
        self._wake.set()

    # -- duty ------------------------------------------------------------------------------------

    async def _duty_loop(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("finality.duty_failed")

    async def tick(self) -> SignedVote | None:
        """Prune the pool and sign this epoch's vote if one is due; the vote signed."""
        chain = self.host.chain
        epoch = chain.height // chain.params.finality_epoch_blocks
        self.pool.prune(below_epoch=epoch - 1)
        self.summary = await self.host.call_chain(self._summarize)
        if self._secret is None or self.validator is None:
            return None
        await self._register_if_needed()
        data = await self.host.call_chain(self._due)
        if data is None or not may_sign(self.last_vote, data):
            return None
        secret, validator = self._secret, self.validator
        vote = await asyncio.to_thread(sign_vote, secret, data, validator=validator,
                                       chain_id=chain.params.chain_id)
        raw = vote.encode()
        # recorded (synced) before it can leave the node: the slashing guard survives a crash
        self.store.put(LAST_VOTE_KEY, raw)
        self.last_vote = vote
        self.votes_signed += 1
        self.seen.add(vote_id(raw))
        self.pool.add(vote)
        self.peers.broadcast_vote(raw)
        log_event(log, "finality.voted", source=data.source.epoch, target=data.target.epoch,
                  root=data.target.root)
        return vote

    async def _register_if_needed(self) -> None:
        """A validator whose account is the node identity registers its BLS key itself
        (once it has bonded stake and no registration is pending); a key kept for another
        account is registered by its wallet (``pouwchain validator register``)."""
        identity = self.host.identity
        address = bytes(identity.verify_key)
        if self.validator != address or self._secret is None:
            return
        params = self.host.chain.params

        def due() -> int | None:
            """Chain thread: the nonce to register with, or None (registered, pending,
            or not enough stake)."""
            state = State(self.host.chain.state_view())
            if validator_record(state, address) is not None:
                return None
            if state.stake(address).bonded < params.min_validator_stake:
                return None
            pending = self.host.mempool.pending_of(address)
            if any(isinstance(tx.payload, RegisterValidator) for tx in pending):
                return None
            return state.account(address).nonce + len(pending)

        nonce = await self.host.call_chain(due)
        if nonce is None:
            return
        payload = await asyncio.to_thread(registration_payload, self._secret)
        tx = sign_transaction(bytes(identity), chain_id=params.chain_id, nonce=nonce,
                              fee=REGISTRATION_FEE, payload=payload)
        try:
            await self.host.submit_transaction(tx)
        except (ValueError, ConsensusError) as exc:
            log_event(log, "finality.register_rejected", level=logging.WARNING,
                      reason=str(getattr(exc, "reason", "") or exc))
            return
        log_event(log, "finality.register_sent", validator=address, nonce=nonce)

    def _due(self) -> VoteData | None:
        """Chain thread: the vote our head asks of this validator, if any."""
        chain = self.host.chain
        state = State(chain.state_view())
        data = vote_duty(state, height=chain.height, params=chain.params)
        if data is None or self.validator is None:
            return None
        members = validator_set(state, data.target.epoch)
        if members is None or members.index_of(self.validator) is None:
            return None
        return data

    # -- gossip ----------------------------------------------------------------------------------

    async def on_frame(self, peer: Peer, msg: Message) -> None:
        """A VOTE frame: decode, dedup, admit against our head, pool and relay."""
        raw: bytes = msg["vote"]
        key = vote_id(raw)
        if not self.seen.add(key):
            return  # IGNORE: a repeat
        vote = SignedVote.decode(raw)  # EncodingError: the policy bans the sender
        self.votes_received += 1
        try:
            await self.host.call_chain(lambda: self._admit(vote))
        except ConsensusError as exc:
            self.votes_rejected += 1
            if isinstance(exc, EncodingError) or exc.rule in PUNISHED_VOTE_RULES:
                raise Judged(exc.rule, exc.message, verdict=Verdict.REJECT) from exc
            self.seen.discard(key)  # may be fine once our head catches up
            log_event(log, "finality.vote_ignored", level=logging.DEBUG, peer=peer.node_id,
                      rule=exc.rule)
            # a vote for another fork's checkpoint may still be half of a double vote
            signed = await self.host.call_chain(lambda: self._signed_by_validator(vote))
            if signed is False:  # a registered validator's key, a signature that is not its
                raise Judged("votes.signature", "not the validator's signature",
                             verdict=Verdict.REJECT) from exc
            if signed:
                await self._remember_signed(vote)
            return
        await self._remember_signed(vote)
        if self.pool.add(vote):
            self.peers.broadcast_vote(raw, exclude=peer)

    # -- slashing evidence ------------------------------------------------------------------------

    def _signed_by_validator(self, vote: SignedVote) -> bool | None:
        """Chain thread: whether ``vote`` carries a valid signature of a registered,
        unslashed validator (whatever its checkpoints: evidence spans forks); None when the
        validator is unknown here or slashed already."""
        chain = self.host.chain
        record = validator_record(State(chain.state_view()), vote.validator)
        if record is None or record.slashed:
            return None
        root = vote_signing_root(vote.data, chain_id=chain.params.chain_id)
        return BACKEND.verify(record.pubkey, root, vote.signature)

    async def _remember_signed(self, vote: SignedVote) -> None:
        """Keep a validator's verified votes (a few per validator) and report it once when
        two of them are a double or surround vote (docs/finality.md §7)."""
        if vote.validator in self.reported or vote.validator == self.validator:
            return
        kept = self.signed.setdefault(vote.validator, [])
        if vote in kept:
            return
        evidence = next((e for e in (slashing_evidence(old, vote) for old in kept)
                         if e is not None), None)
        kept.append(vote)
        del kept[:-SIGNED_KEPT]
        while len(self.signed) > MAX_SIGNED_VALIDATORS:
            del self.signed[next(iter(self.signed))]
        if evidence is not None:
            await self._report(evidence)

    async def _report(self, evidence: ReportVoteViolation) -> None:
        """Send the evidence as a transaction from the node identity (the reporter's
        reward pays its fee many times over)."""
        offender = evidence.first.validator
        identity = self.host.identity
        address = bytes(identity.verify_key)
        params = self.host.chain.params

        def nonce() -> int:
            state = State(self.host.chain.state_view())
            return state.account(address).nonce + len(self.host.mempool.pending_of(address))

        tx = sign_transaction(bytes(identity), chain_id=params.chain_id,
                              nonce=await self.host.call_chain(nonce), fee=REPORT_FEE,
                              payload=evidence)
        try:
            await self.host.submit_transaction(tx)
        except (ValueError, ConsensusError) as exc:
            log_event(log, "finality.report_rejected", level=logging.WARNING,
                      offender=offender, reason=str(getattr(exc, "reason", "") or exc))
            return
        self.reported.add(offender)
        self.reports_sent += 1
        log_event(log, "finality.slashing_reported", level=logging.WARNING, offender=offender,
                  first_target=evidence.first.data.target.epoch,
                  second_target=evidence.second.data.target.epoch)

    def _admit(self, vote: SignedVote) -> int:
        """Chain thread: gossip admission against our head (raises the rule broken)."""
        chain = self.host.chain
        return check_vote(State(chain.state_view()), vote, height=chain.height + 1,
                          params=chain.params)

    # -- aggregation (the miner's template) ------------------------------------------------------

    def template_transactions(self, state: State, height: int) -> Sequence[Transaction]:
        """Chain thread: this node's aggregate for a block at ``height`` built on ``state``
        (the template's state after its other transactions), or nothing."""
        params = self.host.chain.params
        epoch = height // params.finality_epoch_blocks
        votes = uncounted(state, self.pool.votes(min_target_epoch=max(0, epoch - 1)))
        if not votes:
            return ()
        # the pool admitted only votes whose signature verified (the block still verifies
        # the aggregate): no second BLS check per vote here
        payload = aggregate_votes(state, votes, height=height, params=params,
                                  verify_signatures=False)
        if payload is None:
            return ()
        identity = self.host.identity
        sender = bytes(identity.verify_key)
        tx = sign_transaction(bytes(identity), chain_id=params.chain_id,
                              nonce=state.account(sender).nonce, fee=0, payload=payload)
        self.aggregates_built += 1
        return (tx,)

    # -- reporting -------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """Chain thread: what ``GET /api/v1/finality`` answers (JSON-ready): the chain's
        finality (`consensus.finality.describe`: justified, finalized, participation per
        epoch, stalled), the checkpoint this node will never leave, its vote pool and, on a
        validator, its duty."""
        chain = self.host.chain
        params = chain.params
        state = State(chain.state_view())
        height = chain.height
        out: dict[str, Any] = dict(describe(finality_status(state), height=height,
                                            params=params))
        final = chain.finalized
        out.update({
            "height": height,
            "epoch_blocks": params.finality_epoch_blocks,
            # the node's own finalized checkpoint (monotonic, kept across restarts): the one
            # its fork choice never leaves
            "node_finalized": {"epoch": final.epoch, "height": final.height,
                               "root": final.block_id.hex()},
            "finalized_height": final.height,
            "pool": [{"source_epoch": c.source_epoch, "target_epoch": c.target_epoch,
                      "target_root": c.target_root.hex(), "votes": c.votes}
                     for c in self.pool.counts()],
            "validator": None,
        })
        if self.validator is not None:
            members = validator_set(state, height // params.finality_epoch_blocks)
            last = self.last_vote
            out["validator"] = {
                "address": self.validator.hex(),
                "registered": validator_record(state, self.validator) is not None,
                "in_set": members is not None and members.index_of(self.validator) is not None,
                "last_vote": None if last is None else {
                    "source_epoch": last.data.source.epoch,
                    "target_epoch": last.data.target.epoch},
                "votes_signed": self.votes_signed,
            }
        return out

    def _summarize(self) -> FinalitySummary:
        """Chain thread: the head's finality numbers for /metrics."""
        chain = self.host.chain
        params = chain.params
        status = finality_status(State(chain.state_view()))
        if status is None:
            return FinalitySummary(finalized_height=chain.finalized.height)
        last = status.participation[-1] if status.participation else None
        return FinalitySummary(
            active=True, finalized_height=chain.finalized.height,
            justified_height=status.last_justified.epoch * params.finality_epoch_blocks,
            stalled=is_stalled(status, height=chain.height, params=params),
            participation_epoch=0 if last is None else last.epoch,
            participation=0.0 if last is None or not last.total else last.voted / last.total)

    def figures(self) -> dict[str, float]:
        """Numbers for /metrics (event loop: attribute reads only; the head's part is the
        summary the duty loop refreshes on every new head)."""
        summary = self.summary
        return {"finalized_height": self.host.chain.finalized.height,
                "justified_height": summary.justified_height,
                "active": float(summary.active), "stalled": float(summary.stalled),
                "participation": summary.participation,
                "participation_epoch": summary.participation_epoch,
                "votes_signed": self.votes_signed, "votes_received": self.votes_received,
                "votes_rejected": self.votes_rejected, "pool_votes": len(self.pool),
                "aggregates_built": self.aggregates_built, "reports_sent": self.reports_sent}
