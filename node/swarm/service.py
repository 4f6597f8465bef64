"""The swarm round in the node: gossip, answering, judging, aggregation, the round view.

One round, driven by the node a client asked (the *origin*):

1. ``req``: the origin floods the ``RequestAnnouncement`` (signed by the node itself, or by
   a client over ``POST /api/v1/swarm/requests``), its draw of answerers and judges
   (`swarm.selection.select_nodes` over every eligible node, roles ``answer`` / ``judge``:
   the draw validators redo) and the selected nodes' records. A node whose chain has the
   round's height checks the draw against its own (`contracts.swarm.selected_nodes`) and
   drops a round that differs, so all agree who was asked.
2. ``commit`` (answer): each selected answerer with a backend answers and floods a signed
   commitment. The origin waits for all selected answerers or ``answer_timeout``.
3. ``phase reveal_answers``: answerers flood their ``reveal``. The origin waits for every
   committed answerer or ``reveal_timeout``.
4. ``close``: the origin floods the answer commitments and reveals it counts; judges build
   the same `answer_view`, judge the scheduled pairs (`swarm.schedule`) with their backend
   and flood a judgment ``commit``; the origin waits for all judges or ``judge_timeout``.
5. ``phase reveal_judgments``: judges flood their reveals (``reveal_timeout``).
6. ``final``: the origin floods every commitment and reveal of the round; every node runs
   `swarm.settlement.settle` on exactly those, so the round view is the same everywhere.

A node that stays silent only drops out of its phase: the round completes with the nodes that
answered. Messages are deduplicated by hash and flooded to every peer but the sender.

Candidates: once chain state registers any swarm node, exactly the epoch's candidate table
(`contracts.swarm.selection_candidates`), so rounds settle on chain. Before that, the interim
rule: the origin takes itself (if it runs a backend) and the connected peers that announced a
backend (``cap`` message on connect, with the model id), with stake 1 and reputation 0; such
rounds cannot settle.
Equivocation: every node keeps up to two validly signed commitments with different digests
per selected node and kind (a third, or a copy, is dropped and not relayed), relays the second
one like any commitment, and hands all of them to ``close``/``final`` and the settlement, so
`swarm.settlement.settle` excludes the equivocator, lists it under ``equivocators`` and the
chain slashes it. A reveal counts if it opens one of its author's commitments.

Fast path: `settle` runs with the candidates' reputations and stakes (for an on-chain round
the chain's own inputs), so the client's top answer is the one the settlement ranks first.

Settlement of an on-chain round is a shared duty of its participants
(`node.swarm.settlement_duty`).

Restarts: on-chain rounds are kept in the node's LevelDB until they settle
(`node.swarm.round.RoundStore`, `attach_store`). A restarted node takes its rounds back:
a complete one is settled as usual (its settlement, if sent, is in the journaled mempool);
one it originated and had not finished is finished with what it holds and its ``final`` is
sent to every peer that connects, so the other participants settle it too; one another node
originated waits for that ``final`` as before (or is abandoned).
An interim round cannot settle (its nodes are not in the registry): ``not on chain: …``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from consensus.block import BlockHeader
from contracts.escrow import escrow_of
from contracts.registry import swarm_node_ids
from contracts.swarm import (
    ANY_MODEL,
    MAX_SETTLEMENT_LAG,
    request_beacon_fault,
    selected_nodes,
    selection_candidates,
)
from core.errors import ConsensusError
from core.state import State
from node.chain.db import Database
from node.chain.lru import LruSet
from node.logging import get_logger, log_event
from node.p2p.peer import Peer
from node.p2p.protocol import Message, MsgType, encode_frame
from node.swarm.backend import RoundBackend, inference_stats, round_seed, warm_up
from node.swarm.errors import FeeNotCovered, SwarmUnavailable
from node.swarm.generation import GenerationOptions, generate
from node.swarm.host import SwarmHost, SwarmPeers
from node.swarm.round import NOT_ON_CHAIN, RoundState, RoundStore, pack, reason_name, unpack
from node.swarm.settlement_duty import (
    DEFAULT_SETTLE_BACKOFF,
    DEFAULT_SETTLEMENT_FEE,
    SettlementDuty,
    round_settlement,
)
from node.swarm.stats import SwarmStats
from swarm.commit_reveal import (
    answer_opening,
    commit,
    judgment_payload,
    make_evidence,
)
from swarm.messages import (
    ABSTAIN_BACKEND_ERROR,
    ABSTAIN_PROMPT_TOO_LONG,
    ABSTAIN_TIMEOUT,
    ABSTAIN_UNSUPPORTED_PROMPT,
    DEFAULT_ROUND_JUDGES,
    KIND_ANSWER,
    KIND_JUDGMENT,
    KIND_NAMES,
    MAX_JUDGES_WITHOUT_DATA_ROOT,
    MAX_ROUND_NODES,
    Abstention,
    Commitment,
    RequestAnnouncement,
    Reveal,
    SwarmRequest,
    sign_abstention,
    sign_request,
)
from swarm.runtime.base import (
    BackendError,
    BackendTimeout,
    InferenceBackend,
    Outcome,
    PromptTooLong,
    UnsupportedPrompt,
)
from swarm.selection import (
    ROLE_ANSWER,
    ROLE_JUDGE,
    Candidate,
    select_nodes,
    selection_weight,
)
from swarm.settlement import SCREEN_BAD, SCREEN_GOOD, SCREEN_NONE, answer_view

__all__ = ["NOT_ON_CHAIN", "FeeNotCovered", "RoundState", "SwarmService", "SwarmUnavailable"]

log = get_logger("swarm")
T = TypeVar("T")
# Rounds kept in memory, oldest dropped: what ``GET /api/v1/rounds`` lists and serves
# (`node.api.chat.MAX_ROUND_LIST`). A finished on-chain round is compacted (`RoundState.compact`,
# ~4.4 KiB instead of ~18.6 KiB), so a full table holds ~4.5 MB, not ~19 MB; a dropped round
# is a 404 ``unknown round`` for the API.
MAX_ROUNDS = 1000
# Message hashes kept for deduplication (`_first_time`), oldest dropped. They only have to
# outlive a message's echoes while its round runs (a round lasts at most `round_timeout`,
# ~80 s by default); a round has ~50 messages with 18 judges, so 16,384 cover ~300 rounds,
# ~20 minutes of the soak's ~15 rounds a minute, at ~190 B each (`node.chain.lru`): ~3 MiB
# full (100,000 took ~11 MiB). A forgotten hash costs one re-apply (and relay) of an echo
# that comes later; handlers are idempotent (a known round, commitment, reveal or phase, a
# finished round's close or final).
MAX_SEEN = 16_384
# A settled round is compacted once its settlement is this many blocks deep and out of any
# inclusion window (`SettlementDuty.settled_for_good`), an unsettled one once the chain is
# this many blocks past its settlement deadline: only a reorg deeper than that could make it
# settle (or be challenged) again, and settling it then would need its messages. The
# settlement deadline's own margin (`contracts.swarm.MAX_SETTLEMENT_LAG`), ~1 minute at the
# testnet's pace.
COMPACT_DEPTH = MAX_SETTLEMENT_LAG
_OUTCOME_BYTE = {Outcome.A: 0, Outcome.B: 1, Outcome.TIE: 2}


def _screen_bytes(answers: Sequence[str | None], marks: Sequence[bool | None]) -> bytes:
    """The screen marks of ``answers`` (None: our own, no mark; ``marks`` are the others',
    in order) as the judgment payload's bytes; raises BackendError on a count mismatch."""
    if len(marks) != sum(1 for a in answers if a is not None):
        raise BackendError(f"{len(marks)} screen marks for "
                           f"{sum(1 for a in answers if a is not None)} answers")
    it = iter(marks)
    out = bytearray()
    for answer in answers:
        good = None if answer is None else next(it)
        out.append(SCREEN_NONE if good is None else SCREEN_GOOD if good else SCREEN_BAD)
    return bytes(out)


def abstain_reason(exc: BaseException) -> int:
    """Why a backend's failure makes its node abstain (`swarm.messages.ABSTAIN_REASONS`)."""
    if isinstance(exc, PromptTooLong):
        return ABSTAIN_PROMPT_TOO_LONG
    if isinstance(exc, UnsupportedPrompt):
        return ABSTAIN_UNSUPPORTED_PROMPT
    if isinstance(exc, BackendTimeout | TimeoutError):
        return ABSTAIN_TIMEOUT
    return ABSTAIN_BACKEND_ERROR


def swarm_frame(kind: str, data: bytes) -> bytes:
    """One swarm message as a p2p frame (the ``cap`` we send a new peer)."""
    return encode_frame(MsgType.SWARM, {"kind": kind, "data": data})


def round_judges(requested: int, *, eligible: int, inclusion_window: int) -> int:
    """Judges a round this node starts asks for: the configured count, no more than the
    eligible nodes, and on a chain without an inclusion window no more than a full settlement
    transaction holds (`MAX_JUDGES_WITHOUT_DATA_ROOT`; only a window allows a data root)."""
    cap = requested if inclusion_window else min(requested, MAX_JUDGES_WITHOUT_DATA_ROOT)
    return min(cap, eligible)


class SwarmService:
    """The swarm side of one node: gossip, answering, judging, the origin's side of a round.

    Built by the node's builder from explicit dependencies (`node.swarm.host`); the builder
    hands it p2p frames (`on_message`/`on_frame`), new peers (`on_connect`) and new tips
    (`on_tip`), and the chat API (`node.api.chat`) calls `ask`/`ask_signed`."""

    def __init__(self, host: SwarmHost, peers: SwarmPeers, backend: InferenceBackend | None,
                 *, answers: int = 4, judges: int = DEFAULT_ROUND_JUDGES,
                 answer_timeout: float = 30.0, judge_timeout: float = 30.0,
                 reveal_timeout: float = 5.0,
                 abandon_slack: float = 10.0, max_tokens: int = 64,
                 settlement_fee: int = DEFAULT_SETTLEMENT_FEE,
                 settle_backoff: float = DEFAULT_SETTLE_BACKOFF) -> None:
        self.host = host
        self.peers = peers
        self.backend = backend
        self.answers = answers
        self.judges = judges
        self.answer_timeout = answer_timeout
        self.judge_timeout = judge_timeout
        self.reveal_timeout = reveal_timeout
        self.abandon_slack = abandon_slack
        self.max_tokens = max_tokens
        self.duty = SettlementDuty(host, fee=settlement_fee, backoff=settle_backoff)
        self.capable_peers: dict[bytes, bytes] = {}  # peer node id -> announced model id
        self.rounds: OrderedDict[bytes, RoundState] = OrderedDict()  # oldest first
        self._seen = LruSet(MAX_SEEN)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[str, Callable[[bytes], bool]] = {
            "req": self._on_req, "commit": self._on_commit, "reveal": self._on_reveal,
            "phase": self._on_phase, "close": self._on_close, "final": self._on_final,
            "abstain": self._on_abstain}
        self.silent = False  # tests: a node that never answers nor judges
        self.store: RoundStore | None = None  # on-chain rounds until settled (attach_store)
        self._restored: list[RoundState] = []  # taken back from the store, resumed at start
        self._finals: dict[bytes, bytes] = {}  # restored rounds' ``final``, for new peers
        self._stored: set[bytes] = set()  # ids of the rounds the store holds
        self.stats = SwarmStats()  # rounds, abstentions, latency, settlement lag (`/metrics`)

    def attach_store(self, db: Database) -> int:
        """Keep on-chain rounds in ``db`` until they settle, and take back the rounds kept
        there (resumed by `start`); how many came back."""
        self.store = RoundStore(db)
        rounds, bad = self.store.load()
        for round_id, why in bad:
            log_event(log, "swarm.round_record_dropped", round=round_id, error=why)
        for state in rounds:
            self.rounds[state.round_id] = state
            self._stored.add(state.round_id)
        self._restored = rounds
        if rounds:
            log_event(log, "swarm.rounds_restored", count=len(rounds),
                      complete=sum(s.status == "complete" for s in rounds))
        return len(rounds)

    def _save(self, state: RoundState) -> None:
        """Keep an on-chain round's messages (interim rounds cannot settle: not kept)."""
        if self.store is not None and state.height and state.settled is None:
            self.store.save(state)
            self._stored.add(state.round_id)

    def _resume(self) -> None:
        """Start: finish the rounds we originated and settle the complete ones (their
        ``final`` goes to each peer that connects); watch the others' rounds again."""
        for state in self._restored:
            if state.status != "complete" and state.origin != self.node_id:
                # a reveal phase opened before the crash: open what we committed
                for phase, kind in (("reveal_answers", KIND_ANSWER),
                                    ("reveal_judgments", KIND_JUDGMENT)):
                    if phase in state.phases:
                        self._reveal_own(state, kind)
                self._spawn(self._watch(state))
                continue
            final = pack(state.round_id, [c.encode() for c in state.all_commitments()],
                         [state.reveals[k].encode() for k in sorted(state.reveals)], b"")
            self._finals[state.round_id] = final
            self._flood("final", final)
            self._finish(state)
        self._restored = []

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def node_id(self) -> bytes:
        """Our node id: how the round's draw names us."""
        return self.host.node_id

    @property
    def settles(self) -> bool:
        """False: a node that never sends a settlement (tests)."""
        return self.duty.enabled

    @settles.setter
    def settles(self, value: bool) -> None:
        self.duty.enabled = value

    @property
    def settle_backoff(self) -> float:
        """Seconds between backup settlers (`SettlementDuty`)."""
        return self.duty.backoff

    @property
    def settlement_fee(self) -> int:
        """The fee our settlement transactions pay."""
        return self.duty.fee

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a task we own: `stop` cancels it, and it is not collected early."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def round_timeout(self) -> float:
        """The longest a round can take at its origin (every phase timed out), plus slack."""
        return self.answer_timeout + self.judge_timeout + 2 * self.reveal_timeout + \
            self.abandon_slack

    async def start(self) -> None:
        """After the node listens: warm the backend up (the first inference pays ~1 s for
        it, better us than a client)."""
        if self.backend is not None:
            self._spawn(warm_up(self.backend))
        self._resume()

    async def stop(self) -> None:
        """Cancel every round task (answering, judging, settling) and wait for them."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def on_connect(self, peer: Peer) -> None:
        """A new peer: tell it our model, so it can draw us under the interim rule."""
        if self.backend is not None:
            peer.send_frame(swarm_frame("cap", self.backend.model_id))
        for final in self._finals.values():
            peer.send_frame(swarm_frame("final", final))

    def _first_time(self, kind: str, data: bytes) -> bool:
        """True the first time we see this message (we flood each message once)."""
        return self._seen.add(hashlib.sha256(kind.encode() + b"\0" + data).digest())

    def _flood(self, kind: str, data: bytes, *, exclude: Peer | None = None) -> None:
        """Send our own message to every peer (marked seen, so its echo is not re-applied)."""
        self._first_time(kind, data)
        self.peers.broadcast_swarm(kind, data, exclude=exclude)

    async def on_frame(self, peer: Peer, msg: Message) -> None:
        """A ``SWARM`` p2p frame (``kind`` and ``data``; the protocol checked their types)."""
        await self.on_message(peer, msg["kind"], msg["data"])

    async def on_message(self, peer: Peer, kind: str, data: bytes) -> None:
        """A swarm frame from ``peer``. Bad data is dropped (IGNORE), never relayed."""
        if kind == "cap":
            if len(data) == 32:
                self.capable_peers[peer.node_id] = data
            return
        if not self._first_time(kind, data):
            return
        try:
            relay = self._handle(kind, data)
        except (ValueError, TypeError, KeyError, ConsensusError, UnicodeDecodeError) as exc:
            log_event(log, "swarm.bad_message", kind=kind, peer=peer.node_id, error=str(exc))
            return
        if relay:
            self.peers.broadcast_swarm(kind, data, exclude=peer)

    # -- message handling (all nodes) ----------------------------------------------------------

    def _handle(self, kind: str, data: bytes) -> bool:
        """Apply one message; True if it should be relayed."""
        handler = self._handlers.get(kind)
        return False if handler is None else handler(data)

    def _on_req(self, data: bytes) -> bool:
        """A round's announcement: the request, the selected nodes' records, the draw."""
        items = unpack(data)
        if len(items) not in (5, 6):
            raise ValueError("req: expected 5 or 6 elements")
        raw, candidates, origin, height, (answerers, judges) = items[:5]
        # the client's generation options ride along, outside the signed request (answers
        # are committed text: the settlement never re-derives them)
        options = GenerationOptions.from_wire(items[5]) if len(items) == 6 \
            else GenerationOptions()
        return self._on_request(RequestAnnouncement.decode(raw), tuple(
            Candidate(node=bytes(node), stake=int(stake), reputation=int(rep),
                      capable=bool(capable))
            for node, stake, rep, capable in candidates), bytes(origin), int(height),
            selection=(tuple(map(bytes, answerers)), tuple(map(bytes, judges))),
            options=options)

    def _on_commit(self, data: bytes) -> bool:
        """A commitment of a selected node; a second digest travels on too: every node must
        see the equivocation evidence."""
        c = Commitment.decode(data)
        state = self.rounds.get(c.round_id)
        if state is None or not self._keep_commitment(state, c):
            return False
        state.changed.set()
        self._save(state)
        return True

    def _on_reveal(self, data: bytes) -> bool:
        """A reveal; it counts if it opens one of its author's commitments."""
        r = Reveal.decode(data)
        state = self.rounds.get(r.round_id)
        if state is None or not state.opens(r):
            return False
        state.reveals.setdefault((r.node, r.kind), r)
        state.changed.set()
        self._save(state)
        return True

    def _on_abstain(self, data: bytes) -> bool:
        """A selected node's signed abstention: the origin stops waiting for it (the first
        one per node and kind counts; a node that abstains and then commits still counts
        with its commitment)."""
        abstention = Abstention.decode(data)
        state = self.rounds.get(abstention.round_id)
        if state is None or not state.add_abstention(abstention):
            return False
        state.changed.set()
        return True

    def _on_phase(self, data: bytes) -> bool:
        """The origin opens a reveal phase: reveal what we committed of that kind."""
        round_id, phase = bytes(unpack(data)[0]), str(unpack(data)[1])
        state = self.rounds.get(round_id)
        if state is None or state.compacted:
            return False
        reveal_kind = {"reveal_answers": KIND_ANSWER, "reveal_judgments": KIND_JUDGMENT}
        state.phases.add(phase)
        if phase in reveal_kind:
            self._reveal_own(state, reveal_kind[phase])
        return True

    def _on_close(self, data: bytes) -> bool:
        """The answers the origin counts: judges judge exactly those."""
        round_id, commits, reveals = unpack(data)
        state = self.rounds.get(bytes(round_id))
        if state is None or state.status == "complete":  # judging is over (or an old echo)
            return False
        closed = self._absorb(state, commits, reveals)
        self._save(state)
        if self.node_id in state.judges and self.backend is not None and not self.silent:
            self._spawn(self._judge(state, closed))
        return True

    def _on_final(self, data: bytes) -> bool:
        """Every commitment and reveal of the round: settle on exactly those."""
        round_id, commits, reveals, _chosen = unpack(data)
        state = self.rounds.get(bytes(round_id))
        if state is None or state.status == "complete" or state.compacted:
            return False
        self._absorb(state, commits, reveals)
        self._finish(state)
        return True

    def _absorb(self, state: RoundState, commits: list[bytes],
                reveals: list[bytes]) -> tuple[list[Commitment], list[Reveal]]:
        """Take the commitments and matching reveals of a close/final message."""
        cs = [Commitment.decode(bytes(raw)) for raw in commits]
        rs = [Reveal.decode(bytes(raw)) for raw in reveals]
        for c in cs:
            self._keep_commitment(state, c)
        for r in rs:
            if state.opens(r):
                state.reveals.setdefault((r.node, r.kind), r)
        state.changed.set()
        return cs, rs

    def _keep_commitment(self, state: RoundState, commitment: Commitment) -> bool:
        """`RoundState.add_commitment`, logging equivocation when the second digest comes."""
        if not state.add_commitment(commitment):
            return False
        kept = state.commitments[(commitment.node, commitment.kind)]
        if len(kept) > 1:
            evidence = make_evidence(kept[0], kept[1])
            log_event(log, "swarm.equivocation", round=state.round_id, node=commitment.node,
                      kind=commitment.kind,
                      evidence=b"" if evidence is None else evidence.id())
        return True

    def _select(self, announcement: RequestAnnouncement,
                candidates: tuple[Candidate, ...]) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
        """(answerers, judges) drawn from the sorted pool: the draw validators redo."""
        round_id = announcement.request.round_id()
        pool = sorted(candidates, key=lambda c: c.node)
        request = announcement.request
        return (select_nodes(pool, round_id=round_id, role=ROLE_ANSWER, count=request.answers),
                select_nodes(pool, round_id=round_id, role=ROLE_JUDGE, count=request.judges))

    def _on_request(self, announcement: RequestAnnouncement, candidates: tuple[Candidate, ...],
                    origin: bytes, height: int, *,
                    selection: tuple[tuple[bytes, ...], tuple[bytes, ...]],
                    options: GenerationOptions | None = None) -> bool:
        """A round announced by ``origin``: the request, the selected nodes' records and the
        draw (answerers, judges), which must be distinct selected nodes, no more than the
        request asked for and, when our chain has the round's height, our own draw."""
        request = announcement.request
        if request.chain_id != self.host.chain.params.chain_id or \
                not request.verify_signature() or not announcement.prompt_matches():
            return False
        round_id = request.round_id()
        answerers, judges = selection
        nodes = {c.node for c in candidates}
        if round_id in self.rounds or not candidates or \
                len(candidates) > 2 * MAX_ROUND_NODES or len(nodes) != len(candidates) or \
                len(set(answerers)) != len(answerers) or len(set(judges)) != len(judges) or \
                len(answerers) > request.answers or len(judges) > request.judges or \
                not set(answerers) | set(judges) <= nodes:
            return False
        if height and not self._draw_matches(request, height, (answerers, judges)):
            log_event(log, "swarm.bad_draw", round=round_id, origin=origin)
            return False
        # a round drawn at a height its request does not allow can never settle (its beacon
        # block is not the request's to name), or was drawn too late for its commits to come
        # before its beacon block (docs/swarm.md §5.2a "Ties", "Late commits")
        if height and request_beacon_fault(request, height=height,
                                           params=self.host.chain.params):
            log_event(log, "swarm.bad_beacon", round=round_id, origin=origin)
            return False
        state = RoundState(announcement=announcement, candidates=candidates,
                           answerers=answerers, judges=judges, origin=origin,
                           started=time.monotonic(), height=height,
                           options=options or GenerationOptions())
        self.rounds[round_id] = state
        while len(self.rounds) > MAX_ROUNDS:
            self.rounds.popitem(last=False)
        self._save(state)
        if self.node_id in answerers and self.backend is not None and not self.silent:
            self._spawn(self._answer(state))
        if origin != self.node_id:
            self._spawn(self._watch(state))
        return True

    def _draw_matches(self, request: SwarmRequest, height: int,
                      draw: tuple[tuple[bytes, ...], tuple[bytes, ...]]) -> bool:
        """The origin's draw is the chain's (`contracts.swarm.selected_nodes`), checked when
        our chain has reached the round's height (a node behind takes it on trust: the
        settlement is checked by every validator anyway)."""
        if self.host.chain.height < height:
            return True
        params = self.host.chain.params
        ours = selected_nodes(State(self.host.chain.state_view()), request, height=height,
                              min_stake=params.min_node_stake,
                              epoch_blocks=params.swarm_epoch_blocks)
        return (tuple(ours[0]), tuple(ours[1])) == draw

    async def _watch(self, state: RoundState) -> None:
        """A round whose origin never sends ``final`` (it stopped) is marked abandoned."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.round_timeout):
                await state.done.wait()
        if not state.done.is_set():
            state.status = "abandoned"
            state.error = "the origin never completed the round"

    # -- answering and judging (selected nodes) ------------------------------------------------

    def _commit_own(self, state: RoundState, kind: int, payload: bytes) -> None:
        """Commit to our answer or judgment (a salted digest) and keep the reveal for later."""
        commitment, reveal = commit(bytes(self.host.identity), round_id=state.round_id,
                                    kind=kind, payload=payload, salt=os.urandom(32))
        state.pending[kind] = reveal
        raw = commitment.encode()
        self._handle("commit", raw)
        self._flood("commit", raw)

    def _reveal_own(self, state: RoundState, kind: int) -> None:
        """Open our commitment of ``kind`` once the origin opens that reveal phase."""
        reveal = state.pending.pop(kind, None)
        if reveal is not None:
            raw = reveal.encode()
            self._handle("reveal", raw)
            self._flood("reveal", raw)

    async def _answer(self, state: RoundState) -> None:
        """A selected answerer: answer with the backend and commit (or abstain on error)."""
        assert self.backend is not None
        backend = self.backend
        try:
            # a language model samples with the round's own seed for this node
            async with asyncio.timeout(self.answer_timeout):
                answer = await generate(
                    backend, state.prompt, state.options, default_max_tokens=self.max_tokens,
                    seed=round_seed(state.round_id, self.node_id))
        except (BackendError, TimeoutError) as exc:
            self._abstain(state, KIND_ANSWER, exc)
            return
        if "reveal_answers" in state.phases:
            return  # too late: committing now would only make us a no-show
        self.stats.answered += 1
        self._commit_own(state, KIND_ANSWER, answer.text.encode())

    def _abstain(self, state: RoundState, kind: int, exc: BaseException) -> None:
        """Our backend failed: log it and tell the round why (a signed `Abstention`), so its
        origin stops waiting for us and the client hears the reason at once."""
        reason = abstain_reason(exc)
        event = "swarm.abstain" if kind == KIND_ANSWER else "swarm.judge_abstain"
        log_event(log, event, round=state.round_id, reason=reason_name(reason),
                  error=str(exc) or type(exc).__name__)
        self.stats.abstained[(KIND_NAMES.get(kind, str(kind)), reason_name(reason))] += 1
        abstention = sign_abstention(bytes(self.host.identity), round_id=state.round_id,
                                     kind=kind, reason=reason,
                                     detail=str(exc) or type(exc).__name__)
        raw = abstention.encode()
        self._handle("abstain", raw)
        self._flood("abstain", raw)

    async def _judge(self, state: RoundState,
                     closed: tuple[list[Commitment], list[Reveal]]) -> None:
        """A selected judge: judge the scheduled pairs of the answers the origin closed on,
        screen them, and commit the verdicts (or abstain on error)."""
        assert self.backend is not None
        commitments, reveals = closed
        view = answer_view(round_id=state.round_id, answerers=state.answerers,
                           judges=state.judges, commitments=commitments,
                           answer_openings=[answer_opening(r) for r in reveals
                                            if r.kind == KIND_ANSWER])
        if len(view.nodes) < 2:
            return  # nothing to compare
        texts = {r.node: r.payload.decode("utf-8", "replace") for r in reveals
                 if r.kind == KIND_ANSWER}
        nodes = view.nodes
        # own answer: no verdict and no screen mark (aggregation drops them anyway)
        judged = [k for k, (a, b) in enumerate(view.pairs)
                  if self.node_id not in (nodes[a], nodes[b])]
        outcomes = bytearray([2] * len(view.pairs))
        pairs = [(texts[nodes[view.pairs[k][0]]], texts[nodes[view.pairs[k][1]]])
                 for k in judged]
        screened: list[str | None] = [None if node == self.node_id else texts[node]
                                      for node in nodes]
        backend = self.backend
        marks: bytes | None = None
        try:  # one call for the round's pairs (and, a language model, its screen): batched
            if isinstance(backend, RoundBackend):
                async with asyncio.timeout(self.judge_timeout):
                    judgments, screen = await backend.judge_round(
                        state.prompt, pairs, [a for a in screened if a is not None],
                        seen=list(texts.values()))
                marks = _screen_bytes(screened, screen)
            else:
                async with asyncio.timeout(self.judge_timeout):
                    judgments = await backend.judge_pairs(state.prompt, pairs)
            if len(judgments) != len(judged):
                raise BackendError(f"{len(judgments)} judgments for {len(judged)} pairs")
        except (BackendError, TimeoutError) as exc:
            self._abstain(state, KIND_JUDGMENT, exc)
            return
        for k, judgment in zip(judged, judgments, strict=True):
            outcomes[k] = _OUTCOME_BYTE[judgment.outcome]
        outcomes += marks if marks is not None else await self._screens(state.prompt,
                                                                         screened)
        if "reveal_judgments" in state.phases:
            return  # too late (see _answer)
        self.stats.judged += 1
        self._commit_own(state, KIND_JUDGMENT, judgment_payload(view.answer_set,
                                                                bytes(outcomes)))

    async def _screens(self, question: str, answers: list[str | None]) -> bytes:
        """The GOOD/BAD screen marks of ``answers`` (None: our own, no mark); a backend error
        or timeout is no opinion, not a bad answer."""
        assert self.backend is not None
        others = [a for a in answers if a is not None]
        try:
            async with asyncio.timeout(self.judge_timeout):
                marks = await self.backend.screen_answers(question, others)
            if len(marks) != len(others):
                raise BackendError(f"{len(marks)} screen marks for {len(others)} answers")
        except (BackendError, TimeoutError) as exc:
            log_event(log, "swarm.screen_abstain", error=str(exc))
            marks = [None] * len(others)
        return _screen_bytes(answers, marks)

    def inference_stats(self) -> Mapping[str, int]:
        """The backend's own product counters (a language model's; `/metrics`)."""
        return inference_stats(self.backend)

    # -- the origin's side ---------------------------------------------------------------------

    def candidates(self, *, model: bytes = ANY_MODEL) -> tuple[tuple[Candidate, ...], int]:
        """(candidates, registry height): who may be selected.

        If chain state has registered swarm nodes, exactly the pool validators redraw from
        (`contracts.swarm.selection_candidates` at our tip height: bonded stake, decayed
        reputation, capable iff calibrated), so the round can settle on chain. Otherwise the
        interim rule (module docstring): us and the peers that announced a backend, stake 1,
        reputation 0, height 0 (such a round cannot settle on chain).
        """
        state = State(self.host.chain.state_view())
        if swarm_node_ids(state):
            height = self.host.chain.height
            params = self.host.chain.params
            pool = selection_candidates(state, height=height, model=model,
                                        min_stake=params.min_node_stake,
                                        epoch_blocks=params.swarm_epoch_blocks)
            return tuple(pool), height
        known = {node for node, served in self.capable_peers.items()
                 if self.peers.get(node) is not None and model in (ANY_MODEL, served)}
        if self.backend is not None and model in (ANY_MODEL, self.backend.model_id):
            known.add(self.node_id)
        return tuple(Candidate(node=node, stake=1, reputation=0, capable=True)
                     for node in sorted(known)[:64]), 0

    async def _wait(self, state: RoundState, predicate: Callable[[], bool],
                    timeout: float) -> None:
        """Until ``predicate`` holds (checked on every change of the round) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            state.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await state.changed.wait()

    async def ask(self, prompt: str, *, fee: int = 0, model: bytes = ANY_MODEL,
                  options: GenerationOptions | None = None) -> RoundState:
        """Run one round as its origin, on the node's own account (it signs the request and
        pays the fee); returns when the round is complete (fast path).

        The round runs in its own task: a client that goes away does not cut it short
        (the other nodes still get ``final``)."""
        _round_id, running = self.begin(prompt, fee=fee, model=model, options=options)
        return await asyncio.shield(running)

    def begin(self, prompt: str, *, fee: int = 0, model: bytes = ANY_MODEL,
              options: GenerationOptions | None = None
              ) -> tuple[bytes, asyncio.Task[RoundState]]:
        """Start the round `ask` runs: (its id, the task that completes it). Raises
        SwarmUnavailable at once (a streaming client hears it before its stream starts)."""
        candidates, height, eligible = self._eligible(model=model)
        params = self.host.chain.params
        announcement = sign_request(
            bytes(self.host.identity), chain_id=params.chain_id,
            prompt=prompt.encode(), fee=fee, answers=min(self.answers, eligible),
            judges=round_judges(self.judges, eligible=eligible,
                                inclusion_window=params.swarm_inclusion_window),
            nonce=os.urandom(32), model=model, beacon_height=height)
        return announcement.request.round_id(), self._spawn(
            self._run(announcement, candidates, height, options))

    async def ask_signed(self, announcement: RequestAnnouncement) -> RoundState:
        """Run a round for a request its client signed; the fee comes from the client's
        escrow (contracts.escrow), which must cover it and the fees of the client's rounds
        this node still has unsettled. Raises ValueError (bad request), FeeNotCovered or
        SwarmUnavailable."""
        request = announcement.request
        if request.chain_id != self.host.chain.params.chain_id:
            raise ValueError(f"request is for chain {request.chain_id}")
        if not request.verify_signature():
            raise ValueError("bad request signature")
        if not announcement.prompt_matches():
            raise ValueError("prompt does not match the request's prompt hash")
        if request.round_id() in self.rounds:
            raise ValueError("round already known (a request runs once)")
        if not 1 <= request.answers <= MAX_ROUND_NODES or \
                not 0 <= request.judges <= MAX_ROUND_NODES:
            raise ValueError(f"answers must be 1..{MAX_ROUND_NODES} and judges "
                             f"0..{MAX_ROUND_NODES}")
        self.check_fee(request.client, request.fee)
        candidates, height, eligible = self._eligible(model=request.model)
        stale = height and request_beacon_fault(request, height=height,
                                                params=self.host.chain.params)
        if stale:
            raise ValueError(stale)
        window = self.host.chain.params.swarm_inclusion_window
        if round_judges(request.judges, eligible=eligible, inclusion_window=window) \
                < min(request.judges, eligible):
            raise ValueError(f"judges: at most {MAX_JUDGES_WITHOUT_DATA_ROOT} on a chain without "
                             "an inclusion window (a round must settle in one transaction)")
        return await asyncio.shield(self._spawn(self._run(announcement, candidates, height)))

    def unsettled_fees(self, client: bytes) -> int:
        """Fees of ``client``'s rounds this node knows that have not settled on chain."""
        return sum(s.announcement.request.fee for s in self.rounds.values()
                   if s.announcement.request.client == client and s.settled is None
                   and s.status != "abandoned")

    def check_fee(self, client: bytes, fee: int) -> None:
        """A client other than this node must have the fee, plus its unsettled fees, locked
        in escrow: the settlement lands after the answer, when a balance could be gone."""
        if fee == 0 or client == self.node_id:
            return
        locked = escrow_of(State(self.host.chain.state_view()), client).locked
        unsettled = self.unsettled_fees(client)
        if locked < fee + unsettled:
            raise FeeNotCovered(
                f"the client's swarm escrow ({locked} locked) does not cover the fee {fee}"
                + (f" plus {unsettled} of its unsettled rounds" if unsettled else "")
                + "; lock more with `pouwchain wallet escrow-deposit`")

    def _eligible(self, *, model: bytes = ANY_MODEL) -> tuple[tuple[Candidate, ...], int, int]:
        """(candidates serving ``model``, registry height, how many may be selected); raises
        SwarmUnavailable."""
        candidates, height = self.candidates(model=model)
        eligible = sum(1 for c in candidates if selection_weight(c) > 0)
        if not eligible:
            raise SwarmUnavailable("no eligible swarm node in the chain's registry (registered "
                                   "nodes need stake and calibration)" if height or candidates
                                   else "no connected node runs an inference backend")
        return candidates, height, eligible

    async def _run(self, announcement: RequestAnnouncement,
                   candidates: tuple[Candidate, ...], height: int,
                   options: GenerationOptions | None = None) -> RoundState:
        """The origin's round: announce, collect answers, close, collect judgments, final."""
        state = self._announce(announcement, candidates, height, options)
        t0 = state.started
        await self._collect(state, KIND_ANSWER, self.answer_timeout, "answers")
        state.status = "judging"
        answers = self._close(state)
        if answers >= 2:
            await self._collect(state, KIND_JUDGMENT, self.judge_timeout, "judgments")
        final = pack(state.round_id, [c.encode() for c in state.all_commitments()],
                     [state.reveals[k].encode() for k in sorted(state.reveals)], b"")
        self._flood("final", final)
        self._finish(state)
        state.timings["complete"] = time.monotonic() - t0
        self.stats.round_done(state.error_code or "answered", state.timings["complete"])
        log_event(log, "swarm.round_complete" if state.error_code is None else
                  "swarm.round_failed", round=state.round_id, answers=answers,
                  code=state.error_code, ms=round(state.timings["complete"] * 1000, 1))
        return state

    def _announce(self, announcement: RequestAnnouncement,
                  candidates: tuple[Candidate, ...], height: int,
                  options: GenerationOptions | None = None) -> RoundState:
        """Draw and flood the ``req``; our own round state.

        The origin draws from the whole pool (what validators redraw from) and sends the
        draw with the selected nodes' records only: the message stays small however many
        nodes are eligible."""
        drawn = self._select(announcement, candidates)
        chosen = set(drawn[0]) | set(drawn[1])
        items: list[Any] = [announcement.encode(),
                            [[c.node, c.stake, c.reputation, c.capable] for c in candidates
                             if c.node in chosen],
                            self.node_id, height, [list(drawn[0]), list(drawn[1])]]
        if options is not None and not options.is_default:
            items.append(options.wire())
        raw = pack(*items)
        self._handle("req", raw)
        self._flood("req", raw)
        return self.rounds[announcement.request.round_id()]

    async def _collect(self, state: RoundState, kind: int, timeout: float, name: str) -> None:
        """Wait for every selected node's commitment of ``kind`` (or ``timeout``), open the
        reveal phase, wait for every committed node's reveal (or ``reveal_timeout``)."""
        t0 = state.started
        selected = set(state.answerers if kind == KIND_ANSWER else state.judges)
        # a selected node that abstained (signed, `Abstention`) will not commit: not waited for
        await self._wait(state, lambda: state.committed(kind) | state.abstained(kind) >= selected,
                         timeout)
        state.timings[f"{name}_committed"] = time.monotonic() - t0
        self._phase(state, f"reveal_{name}")
        await self._wait(state, lambda: state.revealed(kind) >= state.committed(kind),
                         self.reveal_timeout)
        state.timings[f"{name}_revealed"] = time.monotonic() - t0

    def _close(self, state: RoundState) -> int:
        """Flood the answers we count (``close``): judges judge exactly those; how many."""
        answer_keys = [k for k in state.reveals if k[1] == KIND_ANSWER]
        close = pack(state.round_id,
                     [c.encode() for c in state.all_commitments(KIND_ANSWER)],
                     [state.reveals[k].encode() for k in sorted(answer_keys)])
        self._handle("close", close)
        self._flood("close", close)
        return len(answer_keys)

    # -- settlement duty (every participant of an on-chain round) ------------------------------

    def settler_position(self, state: RoundState) -> int | None:
        """Our place in the round's settlement duty (`SettlementDuty.position`)."""
        return self.duty.position(state)

    def settlement_status(self, state: RoundState) -> str:
        """The round's settlement status, refreshed from chain state (`SettlementDuty`)."""
        return self.duty.status(state)

    def on_tip(self, _header: BlockHeader) -> None:
        """After a tip change: note which rounds are now settled (so every round view says so
        without being asked first), drop their duplicate settlements from the mempool and
        challenge held settlements that left out our data (`SettlementDuty.watch`)."""
        unsettled = [s for s in self.rounds.values() if s.settled is None and s.height]
        self.duty.note_settled(unsettled)
        for state in unsettled:
            if state.settled is not None:
                self.stats.round_settled(state.settled.height - state.height)
        self._forget_settled()
        self._compact_finished()
        self.duty.beacons_mined(self.rounds.values())
        self._spawn(self.duty.drop_duplicates(self.rounds.values()))
        self._spawn(self.duty.watch(self.rounds.values()))

    def _forget_settled(self) -> None:
        """Drop from the store the rounds settled for good (out of any inclusion window: a
        held settlement may be voided and need the data again) or unsettled past
        ``MAX_SETTLEMENT_LAG``; a round dropped from memory goes too."""
        if self.store is None:
            return
        height = self.host.chain.height
        done = []
        for round_id in self._stored:
            state = self.rounds.get(round_id)
            if state is None or self.duty.settled_for_good(state):
                done.append(round_id)
            elif state.settled is None and height > state.height + MAX_SETTLEMENT_LAG:
                done.append(round_id)
        for round_id in done:
            self._stored.discard(round_id)
            self._finals.pop(round_id, None)
        self.store.forget(done)

    def _compact_finished(self) -> None:
        """Compact (`RoundState.compact`) the on-chain rounds nothing can make settle again:
        settled ``COMPACT_DEPTH`` blocks deep and for good, or ``COMPACT_DEPTH`` blocks past
        their settlement deadline. Interim rounds (height 0) never settle: kept whole, up to
        ``MAX_ROUNDS`` (a dev network's)."""
        tip = self.host.chain.height
        for state in self.rounds.values():
            if state.compacted or not state.height or \
                    state.status not in ("complete", "abandoned"):
                continue
            settled = state.settled
            if settled is None:
                if tip >= state.height + MAX_SETTLEMENT_LAG + COMPACT_DEPTH:
                    state.compact()
            elif tip >= settled.height + COMPACT_DEPTH and self.duty.settled_for_good(state):
                state.compact()

    def _phase(self, state: RoundState, phase: str) -> None:
        """The origin opens a phase: apply it here and flood it."""
        raw = pack(state.round_id, phase)
        self._handle("phase", raw)
        self._flood("phase", raw)

    def _finish(self, state: RoundState) -> None:
        """Settle from what the round holds (the same data on every node after ``final``).

        Reputations and stakes are the round's candidates' (for an on-chain round: decayed to
        the round height, bonded stake), exactly what the contract uses, so the client's
        top answer is the chain's top answer. Exact ties are the chain's once the round's
        beacon block is mined: until then the round id breaks them, and the round's result
        is ranked again with the beacon's seed when it arrives (`SettlementDuty.beacons_mined`)."""
        seed = self.duty.tie_seed(state) if state.height else None
        result = round_settlement(state, seed)
        state.settlement = result
        state.beacon_seeded = seed is not None
        ranking = result.outcome.ranking
        if ranking:
            state.chosen = ranking[0]
            state.answer = state.reveals[(ranking[0], KIND_ANSWER)].payload.decode(
                "utf-8", "replace")
        else:
            state.error_code, state.error = state.failure()
        if not state.height:
            state.settlement_status = NOT_ON_CHAIN
        else:
            self._spawn(self.duty.run(state))
        state.status = "complete"
        state.done.set()
        state.changed.set()
        self._save(state)
