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

Settlement (rounds drawn from registered nodes) is a shared duty: after ``final`` every node
holds the same round data; the origin sends `SettleSwarmRound` at once, and the other
participants (answerers, then judges, in draw order, without the origin) are backups: the
k-th wakes after ``settle_backoff`` × k seconds and sends its own settlement only if the round
is neither settled in chain state nor pending in its mempool. Nothing is retried; a duplicate
fails with ``swarm.already_settled`` and leaves the mempool when the settling block lands
(`SwarmService.on_tip`). Status: ``pending`` (``pending: backup settler k, …``) ->
``submitted: tx … by <settler>`` -> ``settled at height h: tx … by <settler>`` (read from the
block that holds it, on every node). An interim round cannot settle (its nodes are not in the
registry): ``not on chain: …``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import time
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from consensus.tx import Transaction, sign_transaction
from contracts.escrow import escrow_of
from contracts.registry import swarm_node_ids
from contracts.swarm import (
    ANY_MODEL,
    MAX_SETTLEMENT_LAG,
    SettleSwarmRound,
    build_settlement,
    selected_nodes,
    selection_candidates,
    settled_round,
)
from core.errors import ConsensusError
from core.state import State
from node.logging import get_logger, log_event
from pouw.mining import MiningResult
from swarm.commit_reveal import (
    answer_opening,
    commit,
    judgment_opening,
    judgment_payload,
    make_evidence,
    reveal_matches,
)
from swarm.messages import (
    KIND_ANSWER,
    KIND_JUDGMENT,
    MAX_ROUND_NODES,
    Commitment,
    RequestAnnouncement,
    Reveal,
    SwarmRequest,
    sign_request,
)
from swarm.runtime.base import BackendError, InferenceBackend, Outcome
from swarm.selection import (
    ROLE_ANSWER,
    ROLE_JUDGE,
    Candidate,
    select_nodes,
    selection_weight,
)
from swarm.settlement import (
    SCREEN_BAD,
    SCREEN_GOOD,
    SCREEN_NONE,
    RoundSettlement,
    answer_view,
    settle,
)

if TYPE_CHECKING:
    from node.mining.miner import ExactProduct
    from node.node import Node
    from node.p2p.peer import Peer

log = get_logger("swarm")
MAX_ROUNDS = 1000  # rounds kept in memory (oldest dropped)
MAX_DIGESTS = 2  # commitments kept per (node, kind): two different ones prove equivocation
DEFAULT_SETTLE_BACKOFF = 10.0  # seconds between backup settlers (a few blocks' time)
SETTLEMENT_PENDING = "pending"
NOT_ON_CHAIN = "not on chain: no registered swarm nodes (interim candidates)"
_OUTCOME_BYTE = {Outcome.A: 0, Outcome.B: 1, Outcome.TIE: 2}


class FeeNotCovered(Exception):
    """A client's escrow does not cover the fee of its request (HTTP 402)."""


class SwarmUnavailable(Exception):
    """The round cannot run (no node announces a backend)."""


@dataclasses.dataclass
class RoundState:
    """Everything one node knows about one round."""

    announcement: RequestAnnouncement
    candidates: tuple[Candidate, ...]
    answerers: tuple[bytes, ...]
    judges: tuple[bytes, ...]
    origin: bytes
    started: float
    # (node, kind) -> its validly signed commitments, first seen first; a second one with
    # another digest is equivocation evidence (kept, gossiped, settled), more are ignored
    commitments: dict[tuple[bytes, int], list[Commitment]] = dataclasses.field(
        default_factory=dict)
    reveals: dict[tuple[bytes, int], Reveal] = dataclasses.field(default_factory=dict)
    # our own unrevealed reveals, by kind
    pending: dict[int, Reveal] = dataclasses.field(default_factory=dict)
    phases: set[str] = dataclasses.field(default_factory=set)  # phase messages seen
    status: str = "answering"
    height: int = 0  # chain height whose registry drew the candidates (0: interim rule)
    settlement_tx: bytes | None = None  # the settlement transaction this node sent
    settlement: RoundSettlement | None = None
    settlement_status: str = SETTLEMENT_PENDING
    settled: SettledBy | None = None  # the settlement transaction found on chain
    chosen: bytes | None = None
    answer: str | None = None
    error: str | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    @property
    def round_id(self) -> bytes:
        return self.announcement.request.round_id()

    @property
    def prompt(self) -> str:
        return self.announcement.prompt.decode("utf-8", "replace")

    def committed(self, kind: int) -> set[bytes]:
        return {node for node, k in self.commitments if k == kind}

    def revealed(self, kind: int) -> set[bytes]:
        return {node for node, k in self.reveals if k == kind}

    def add_commitment(self, commitment: Commitment) -> bool:
        """Keep a validly signed commitment of a selected node; True if it is new.

        Two digests per (node, kind) are enough to prove equivocation; a third or a copy is
        dropped, so an equivocator cannot make us store or relay without bound."""
        if commitment.round_id != self.round_id or \
                commitment.kind not in (KIND_ANSWER, KIND_JUDGMENT) or \
                not commitment.verify_signature():
            return False
        role = self.answerers if commitment.kind == KIND_ANSWER else self.judges
        if commitment.node not in role:
            return False
        kept = self.commitments.setdefault((commitment.node, commitment.kind), [])
        if len(kept) >= MAX_DIGESTS or any(c.digest == commitment.digest for c in kept):
            return False
        kept.append(commitment)
        return True

    def opens(self, reveal: Reveal) -> bool:
        """True iff ``reveal`` opens one of its author's commitments of that kind."""
        return any(reveal_matches(c, reveal)
                   for c in self.commitments.get((reveal.node, reveal.kind), ()))

    def all_commitments(self, kind: int | None = None) -> list[Commitment]:
        """Every kept commitment (of ``kind``, if given), sorted: what close/final carry."""
        return sorted(c for (_, k), kept in self.commitments.items() for c in kept
                      if kind is None or k == kind)

    def equivocators(self) -> list[bytes]:
        """Nodes that signed two different commitments of one kind (the settlement slashes)."""
        return sorted({node for (node, _), kept in self.commitments.items() if len(kept) > 1})

    def view(self) -> dict[str, Any]:
        """JSON view for ``GET /api/v1/rounds/{id}``."""
        answers = []
        for node in self.answerers:
            reveal = self.reveals.get((node, KIND_ANSWER))
            answers.append({
                "node": node.hex(), "committed": (node, KIND_ANSWER) in self.commitments,
                "equivocated": len(self.commitments.get((node, KIND_ANSWER), ())) > 1,
                "revealed": reveal is not None,
                "text": None if reveal is None else reveal.payload.decode("utf-8", "replace")})
        judgments = []
        for node in self.judges:
            reveal = self.reveals.get((node, KIND_JUDGMENT))
            judgments.append({
                "node": node.hex(), "committed": (node, KIND_JUDGMENT) in self.commitments,
                "equivocated": len(self.commitments.get((node, KIND_JUDGMENT), ())) > 1,
                "revealed": reveal is not None,
                "outcomes": None if reveal is None else list(reveal.payload[32:])})
        out: dict[str, Any] = {
            "round_id": self.round_id.hex(), "status": self.status, "prompt": self.prompt,
            "origin": self.origin.hex(), "fee": self.announcement.request.fee,
            "candidates": [{"node": c.node.hex(), "stake": c.stake, "reputation": c.reputation,
                            "capable": c.capable} for c in self.candidates],
            "answerers": [a.hex() for a in self.answerers],
            "judges": [j.hex() for j in self.judges],
            "answers": answers, "judgments": judgments,
            "equivocators": [node.hex() for node in self.equivocators()],
            "chosen": None if self.chosen is None else self.chosen.hex(),
            "answer": self.answer, "error": self.error,
            "settlement_status": self.settlement_status,
            "settled": None if self.settled is None else self.settled.view(),
            "timings_ms": {k: round(v * 1000, 1) for k, v in self.timings.items()},
        }
        out["result"] = None if self.settlement is None else self.settlement.summary()
        return out


@dataclasses.dataclass(frozen=True)
class SettledBy:
    """Which transaction settled a round on chain, read from the block that holds it."""

    height: int
    block_id: bytes
    tx_id: bytes
    settler: bytes  # the transaction's sender

    def status(self) -> str:
        if not self.tx_id:  # the block is not in our store (cannot happen on a full node)
            return f"settled at height {self.height}"
        return f"settled at height {self.height}: tx {self.tx_id.hex()} by {self.settler.hex()}"

    def view(self) -> dict[str, Any]:
        return {"height": self.height, "block": self.block_id.hex(), "tx": self.tx_id.hex(),
                "settler": self.settler.hex()}


def _pack(*items: Any) -> bytes:
    return bytes(msgpack.packb(list(items), use_bin_type=True))


def _unpack(data: bytes) -> list[Any]:
    obj = msgpack.unpackb(data, raw=False, use_list=True)
    if type(obj) is not list:
        raise ValueError("swarm message: expected a list")
    return obj


class SwarmService:
    """The swarm side of one node (attach with `attach`)."""

    def __init__(self, node: Node, backend: InferenceBackend | None, *,
                 answers: int = 4, judges: int = 4, answer_timeout: float = 30.0,
                 judge_timeout: float = 30.0, reveal_timeout: float = 5.0,
                 abandon_slack: float = 10.0, max_tokens: int = 64,
                 settlement_fee: int = 10,
                 settle_backoff: float = DEFAULT_SETTLE_BACKOFF) -> None:
        self.node = node
        self.backend = backend
        self.answers = answers
        self.judges = judges
        self.answer_timeout = answer_timeout
        self.judge_timeout = judge_timeout
        self.reveal_timeout = reveal_timeout
        self.abandon_slack = abandon_slack
        self.settlement_fee = settlement_fee
        self.settle_backoff = settle_backoff
        self.max_tokens = max_tokens
        self.capable_peers: dict[bytes, bytes] = {}  # peer node id -> announced model id
        self.rounds: dict[bytes, RoundState] = {}
        self._seen: dict[bytes, None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.silent = False  # tests: a node that never answers nor judges
        self.settles = True  # tests: False = a node that never sends a settlement

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def node_id(self) -> bytes:
        return self.node.node_id

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def round_timeout(self) -> float:
        """The longest a round can take at its origin (every phase timed out), plus slack."""
        return self.answer_timeout + self.judge_timeout + 2 * self.reveal_timeout + \
            self.abandon_slack

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def on_connect(self, peer: Peer) -> None:
        if self.backend is not None:
            peer.send_frame(_swarm_frame("cap", self.backend.model_id))

    def _first_time(self, kind: str, data: bytes) -> bool:
        key = hashlib.sha256(kind.encode() + b"\0" + data).digest()
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > 100_000:
            self._seen.pop(next(iter(self._seen)))
        return True

    def _flood(self, kind: str, data: bytes, *, exclude: Peer | None = None) -> None:
        self._first_time(kind, data)
        self.node.peers.broadcast_swarm(kind, data, exclude=exclude)

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
            self.node.peers.broadcast_swarm(kind, data, exclude=peer)

    # -- message handling (all nodes) ----------------------------------------------------------

    def _handle(self, kind: str, data: bytes) -> bool:
        """Apply one message; True if it should be relayed."""
        if kind == "req":
            raw, candidates, origin, height, (answerers, judges) = _unpack(data)
            return self._on_request(RequestAnnouncement.decode(raw), tuple(
                Candidate(node=bytes(node), stake=int(stake), reputation=int(rep),
                          capable=bool(capable))
                for node, stake, rep, capable in candidates), bytes(origin), int(height),
                selection=(tuple(map(bytes, answerers)), tuple(map(bytes, judges))))
        if kind == "commit":
            c = Commitment.decode(data)
            state = self.rounds.get(c.round_id)
            if state is None or not self._keep_commitment(state, c):
                return False
            state.changed.set()
            return True  # a second digest travels on too: every node must see the evidence
        if kind == "reveal":
            r = Reveal.decode(data)
            state = self.rounds.get(r.round_id)
            if state is None or not state.opens(r):
                return False
            state.reveals.setdefault((r.node, r.kind), r)
            state.changed.set()
            return True
        if kind == "phase":
            round_id, phase = bytes(_unpack(data)[0]), str(_unpack(data)[1])
            state = self.rounds.get(round_id)
            if state is None:
                return False
            reveal_kind = {"reveal_answers": KIND_ANSWER, "reveal_judgments": KIND_JUDGMENT}
            state.phases.add(phase)
            if phase in reveal_kind:
                self._reveal_own(state, reveal_kind[phase])
            return True
        if kind == "close":
            round_id, commits, reveals = _unpack(data)
            state = self.rounds.get(bytes(round_id))
            if state is None:
                return False
            closed = self._absorb(state, commits, reveals)
            if self.node_id in state.judges and self.backend is not None and not self.silent:
                self._spawn(self._judge(state, closed))
            return True
        if kind == "final":
            round_id, commits, reveals, _chosen = _unpack(data)
            state = self.rounds.get(bytes(round_id))
            if state is None or state.status == "complete":
                return False
            self._absorb(state, commits, reveals)
            self._finish(state)
            return True
        return False

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
        round_id = announcement.request.round_id()
        pool = sorted(candidates, key=lambda c: c.node)
        request = announcement.request
        return (select_nodes(pool, round_id=round_id, role=ROLE_ANSWER, count=request.answers),
                select_nodes(pool, round_id=round_id, role=ROLE_JUDGE, count=request.judges))

    def _on_request(self, announcement: RequestAnnouncement, candidates: tuple[Candidate, ...],
                    origin: bytes, height: int, *,
                    selection: tuple[tuple[bytes, ...], tuple[bytes, ...]]) -> bool:
        """A round announced by ``origin``: the request, the selected nodes' records and the
        draw (answerers, judges), which must be distinct selected nodes, no more than the
        request asked for and, when our chain has the round's height, our own draw."""
        request = announcement.request
        if request.chain_id != self.node.chain.params.chain_id or \
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
        state = RoundState(announcement=announcement, candidates=candidates,
                           answerers=answerers, judges=judges, origin=origin,
                           started=time.monotonic(), height=height)
        self.rounds[round_id] = state
        while len(self.rounds) > MAX_ROUNDS:
            self.rounds.pop(next(iter(self.rounds)))
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
        if self.node.chain.height < height:
            return True
        params = self.node.chain.params
        ours = selected_nodes(State(self.node.chain.state_view()), request, height=height,
                              min_stake=params.min_node_stake,
                              epoch_blocks=params.swarm_epoch_blocks)
        return (tuple(ours[0]), tuple(ours[1])) == draw

    async def _watch(self, state: RoundState) -> None:
        """A round whose origin never sends ``final`` (it stopped) is marked abandoned."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.done.wait(), self.round_timeout)
        if not state.done.is_set():
            state.status = "abandoned"
            state.error = "the origin never completed the round"

    # -- answering and judging (selected nodes) ------------------------------------------------

    def _commit_own(self, state: RoundState, kind: int, payload: bytes) -> None:
        commitment, reveal = commit(bytes(self.node.identity), round_id=state.round_id,
                                    kind=kind, payload=payload, salt=os.urandom(32))
        state.pending[kind] = reveal
        raw = commitment.encode()
        self._handle("commit", raw)
        self._flood("commit", raw)

    def _reveal_own(self, state: RoundState, kind: int) -> None:
        reveal = state.pending.pop(kind, None)
        if reveal is not None:
            raw = reveal.encode()
            self._handle("reveal", raw)
            self._flood("reveal", raw)

    async def _answer(self, state: RoundState) -> None:
        assert self.backend is not None
        try:
            answer = await asyncio.wait_for(
                self.backend.answer(state.prompt, max_tokens=self.max_tokens),
                self.answer_timeout)
        except (BackendError, TimeoutError) as exc:
            log_event(log, "swarm.abstain", round=state.round_id, error=str(exc))
            return
        if "reveal_answers" in state.phases:
            return  # too late: committing now would only make us a no-show
        self._commit_own(state, KIND_ANSWER, answer.text.encode())

    async def _judge(self, state: RoundState,
                     closed: tuple[list[Commitment], list[Reveal]]) -> None:
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
        try:  # one call for the round's pairs: a backend batches them
            judgments = await asyncio.wait_for(self.backend.judge_pairs(
                state.prompt, [(texts[nodes[view.pairs[k][0]]], texts[nodes[view.pairs[k][1]]])
                               for k in judged]), self.judge_timeout)
            if len(judgments) != len(judged):
                raise BackendError(f"{len(judgments)} judgments for {len(judged)} pairs")
        except (BackendError, TimeoutError) as exc:
            log_event(log, "swarm.judge_abstain", round=state.round_id, error=str(exc))
            return
        for k, judgment in zip(judged, judgments, strict=True):
            outcomes[k] = _OUTCOME_BYTE[judgment.outcome]
        outcomes += await self._screens(state.prompt, [
            None if node == self.node_id else texts[node] for node in nodes])
        if "reveal_judgments" in state.phases:
            return  # too late (see _answer)
        self._commit_own(state, KIND_JUDGMENT, judgment_payload(view.answer_set,
                                                                bytes(outcomes)))

    async def _screens(self, question: str, answers: list[str | None]) -> bytes:
        """The GOOD/BAD screen marks of ``answers`` (None: our own, no mark); a backend error
        or timeout is no opinion, not a bad answer."""
        assert self.backend is not None
        others = [a for a in answers if a is not None]
        try:
            marks = await asyncio.wait_for(self.backend.screen_answers(question, others),
                                           self.judge_timeout)
            if len(marks) != len(others):
                raise BackendError(f"{len(marks)} screen marks for {len(others)} answers")
        except (BackendError, TimeoutError) as exc:
            log_event(log, "swarm.screen_abstain", error=str(exc))
            marks = [None] * len(others)
        it = iter(marks)
        out = bytearray()
        for answer in answers:
            good = None if answer is None else next(it)
            out.append(SCREEN_NONE if good is None else SCREEN_GOOD if good else SCREEN_BAD)
        return bytes(out)

    # -- the origin's side ---------------------------------------------------------------------

    def candidates(self, *, model: bytes = ANY_MODEL) -> tuple[tuple[Candidate, ...], int]:
        """(candidates, registry height): who may be selected.

        If chain state has registered swarm nodes, exactly the pool validators redraw from
        (`contracts.swarm.selection_candidates` at our tip height: bonded stake, decayed
        reputation, capable iff calibrated), so the round can settle on chain. Otherwise the
        interim rule (module docstring): us and the peers that announced a backend, stake 1,
        reputation 0, height 0 (such a round cannot settle on chain).
        """
        state = State(self.node.chain.state_view())
        if swarm_node_ids(state):
            height = self.node.chain.height
            params = self.node.chain.params
            pool = selection_candidates(state, height=height, model=model,
                                        min_stake=params.min_node_stake,
                                        epoch_blocks=params.swarm_epoch_blocks)
            return tuple(pool), height
        known = {node for node in self.capable_peers if self.node.peers.get(node) is not None}
        if self.backend is not None:
            known.add(self.node_id)
        return tuple(Candidate(node=node, stake=1, reputation=0, capable=True)
                     for node in sorted(known)[:64]), 0

    async def _wait(self, state: RoundState, predicate: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            state.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.changed.wait(), remaining)

    async def ask(self, prompt: str, *, fee: int = 0) -> RoundState:
        """Run one round as its origin, on the node's own account (it signs the request and
        pays the fee); returns when the round is complete (fast path).

        The round runs in its own task: a client that goes away does not cut it short
        (the other nodes still get ``final``)."""
        candidates, height, eligible = self._eligible()
        announcement = sign_request(
            bytes(self.node.identity), chain_id=self.node.chain.params.chain_id,
            prompt=prompt.encode(), fee=fee, answers=min(self.answers, eligible),
            judges=min(self.judges, eligible), nonce=os.urandom(32))
        return await asyncio.shield(self._spawn(self._run(announcement, candidates, height)))

    async def ask_signed(self, announcement: RequestAnnouncement) -> RoundState:
        """Run a round for a request its client signed; the fee comes from the client's
        escrow (contracts.escrow), which must cover it and the fees of the client's rounds
        this node still has unsettled. Raises ValueError (bad request), FeeNotCovered or
        SwarmUnavailable."""
        request = announcement.request
        if request.chain_id != self.node.chain.params.chain_id:
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
        candidates, height, _ = self._eligible(model=request.model)
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
        locked = escrow_of(State(self.node.chain.state_view()), client).locked
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
                   candidates: tuple[Candidate, ...], height: int) -> RoundState:
        # the origin draws from the whole pool (what validators redraw from) and sends the
        # draw with the selected nodes' records only: the message stays small however many
        # nodes are eligible
        drawn = self._select(announcement, candidates)
        chosen = set(drawn[0]) | set(drawn[1])
        raw = _pack(announcement.encode(),
                    [[c.node, c.stake, c.reputation, c.capable] for c in candidates
                     if c.node in chosen],
                    self.node_id, height, [list(drawn[0]), list(drawn[1])])
        self._handle("req", raw)
        self._flood("req", raw)
        state = self.rounds[announcement.request.round_id()]
        t0 = state.started
        answerers = set(state.answerers)
        await self._wait(state, lambda: state.committed(KIND_ANSWER) >= answerers,
                         self.answer_timeout)
        state.timings["answers_committed"] = time.monotonic() - t0
        self._phase(state, "reveal_answers")
        await self._wait(state, lambda: state.revealed(KIND_ANSWER)
                         >= state.committed(KIND_ANSWER), self.reveal_timeout)
        state.timings["answers_revealed"] = time.monotonic() - t0
        state.status = "judging"
        answer_keys = [k for k in state.reveals if k[1] == KIND_ANSWER]
        close = _pack(state.round_id,
                      [c.encode() for c in state.all_commitments(KIND_ANSWER)],
                      [state.reveals[k].encode() for k in sorted(answer_keys)])
        self._handle("close", close)
        self._flood("close", close)
        if len(answer_keys) >= 2:
            judges = set(state.judges)
            await self._wait(state, lambda: state.committed(KIND_JUDGMENT) >= judges,
                             self.judge_timeout)
            state.timings["judgments_committed"] = time.monotonic() - t0
            self._phase(state, "reveal_judgments")
            await self._wait(state, lambda: state.revealed(KIND_JUDGMENT)
                             >= state.committed(KIND_JUDGMENT), self.reveal_timeout)
            state.timings["judgments_revealed"] = time.monotonic() - t0
        final = _pack(state.round_id, [c.encode() for c in state.all_commitments()],
                      [state.reveals[k].encode() for k in sorted(state.reveals)], b"")
        self._flood("final", final)
        self._finish(state)
        state.timings["complete"] = time.monotonic() - t0
        log_event(log, "swarm.round_complete", round=state.round_id,
                  answers=len(answer_keys), ms=round(state.timings["complete"] * 1000, 1))
        return state

    # -- settlement duty (every participant of an on-chain round) ------------------------------

    def settler_position(self, state: RoundState) -> int | None:
        """Our place in the round's settlement duty: 0 the origin (settles at once), k ≥ 1 the
        k-th other participant (answerers, then judges, in draw order), None not a duty.

        Every node computes the same order from the round, so backups wake one at a time."""
        if self.node_id == state.origin:
            return 0
        order = [node for node in dict.fromkeys(state.answerers + state.judges)
                 if node != state.origin]
        return order.index(self.node_id) + 1 if self.node_id in order else None

    async def _settlement_duty(self, state: RoundState) -> None:
        """Settle the round unless someone already has: the origin at once, backup k after
        ``settle_backoff`` × k seconds (so a dead or lazy origin does not leave it unsettled)."""
        position = self.settler_position(state)
        if position is None or not self.settles:
            return
        if position:
            delay = self.settle_backoff * position
            state.settlement_status = (f"pending: backup settler {position}, "
                                       f"sends in {delay:g} s unless settled")
            await asyncio.sleep(delay)
        await self._submit_settlement(state)

    def _settlement_tx(self, state: RoundState) -> Transaction | SettledBy | str:
        """Chain thread: the signed `SettleSwarmRound` of a finished round, or why not to
        send one: the round is settled (`SettledBy`) or a settlement is pending (its status).

        Checking chain state and the mempool first keeps backups from paying for duplicates
        (a duplicate would only fail with ``swarm.already_settled``)."""
        chain_state = State(self.node.chain.state_view())
        settled = self._settled_by(state, chain_state)
        if settled is not None:
            return settled
        for tx in self.node.mempool.transactions():
            if _settles(tx, state.round_id):
                return f"submitted: tx {tx.id().hex()} by {tx.sender.hex()}"
        reveals = list(state.reveals.values())
        payload = build_settlement(
            chain_state, height=state.height, request=state.announcement.request,
            answerers=state.answerers, judges=state.judges,
            commitments=state.all_commitments(),
            answer_openings=[answer_opening(r) for r in reveals if r.kind == KIND_ANSWER],
            judgment_openings=[judgment_opening(r) for r in reveals
                               if r.kind == KIND_JUDGMENT],
            min_stake=self.node.chain.params.min_node_stake,
            epoch_blocks=self.node.chain.params.swarm_epoch_blocks)
        pending = self.node.mempool.pending_of(self.node_id)
        nonce = pending[-1].nonce + 1 if pending else chain_state.account(self.node_id).nonce
        return sign_transaction(bytes(self.node.identity),
                                chain_id=self.node.chain.params.chain_id, nonce=nonce,
                                fee=self.settlement_fee, payload=payload)

    async def _submit_settlement(self, state: RoundState) -> None:
        """Send the round's settlement transaction once, unless it is settled or pending.

        A failure (e.g. a duplicate that raced ours: ``swarm.already_settled``) ends in a
        ``failed: …`` status; nothing is retried."""
        try:
            built = await self.node.call_chain(self._settlement_tx, state)
            if isinstance(built, SettledBy):
                state.settled = built
                state.settlement_status = built.status()
                return
            if isinstance(built, str):
                state.settlement_status = built
                return
            state.settlement_tx = await self.node.submit_transaction(built)
        except (ValueError, ConsensusError) as exc:
            state.settlement_status = f"failed: {exc}"
            log_event(log, "swarm.settlement_failed", round=state.round_id, error=str(exc))
            return
        state.settlement_status = \
            f"submitted: tx {state.settlement_tx.hex()} by {self.node_id.hex()}"
        log_event(log, "swarm.settlement_sent", round=state.round_id, tx=state.settlement_tx)

    def _settled_by(self, state: RoundState, chain_state: State) -> SettledBy | None:
        """The transaction that settled the round on our chain (cached per block), if any."""
        settled = settled_round(chain_state, state.round_id)
        if settled is None:
            return None
        block_id = self.node.chain.block_id_at(settled.height) or b""
        cached = state.settled
        if cached is not None and (cached.height, cached.block_id) == (settled.height,
                                                                      block_id):
            return cached
        block = self.node.chain.get_block(block_id) if block_id else None
        for tx in () if block is None else block.transactions:
            if _settles(tx, state.round_id):
                return SettledBy(height=settled.height, block_id=block_id, tx_id=tx.id(),
                                 settler=tx.sender)
        return SettledBy(height=settled.height, block_id=block_id, tx_id=b"", settler=b"")

    def settlement_status(self, state: RoundState) -> str:
        """The round's settlement status, refreshed from chain state: ``settled at height h:
        tx … by …`` on every node once a block holds the settlement."""
        settled = self._settled_by(state, State(self.node.chain.state_view()))
        if settled is not None:
            state.settled = settled
            state.settlement_status = settled.status()
        return state.settlement_status

    def on_tip(self, _header: Any) -> None:
        """After a tip change: note which rounds are now settled (so every round view says so
        without being asked first) and drop their duplicate settlements from the mempool."""
        chain_state = State(self.node.chain.state_view())
        oldest = self.node.chain.height - MAX_SETTLEMENT_LAG  # older rounds cannot settle now
        for state in self.rounds.values():
            if state.height >= max(1, oldest) and state.settled is None and \
                    state.status == "complete":
                settled = self._settled_by(state, chain_state)
                if settled is not None:
                    state.settled = settled
                    state.settlement_status = settled.status()
        self._spawn(self._drop_duplicates_task())

    async def _drop_duplicates_task(self) -> None:
        with contextlib.suppress(RuntimeError):  # the chain thread is gone (node stopping)
            await self.node.call_chain(self._drop_settled_duplicates)

    def _drop_settled_duplicates(self) -> None:
        """Chain thread: a second settlement of a round settled by someone else can never
        apply; the mempool only re-checks the senders of the new block, so it would sit there
        (and block its sender's later nonces) until it expires. Re-check its sender now."""
        chain_state = State(self.node.chain.state_view())
        senders = {tx.sender for tx in self.node.mempool.transactions()
                   if isinstance(tx.payload, SettleSwarmRound)
                   and settled_round(chain_state, tx.payload.request.round_id()) is not None}
        if senders:
            self.node.mempool.revalidate(senders, tip=self.node.chain.tip_view())
            log_event(log, "swarm.settlement_duplicates_dropped", senders=len(senders))

    def _phase(self, state: RoundState, phase: str) -> None:
        raw = _pack(state.round_id, phase)
        self._handle("phase", raw)
        self._flood("phase", raw)

    def _finish(self, state: RoundState) -> None:
        """Settle from what the round holds (the same data on every node after ``final``).

        Reputations and stakes are the round's candidates' (for an on-chain round: decayed to
        the round height, bonded stake), exactly what the contract uses, so the client's
        top answer is the chain's top answer."""
        reveals = list(state.reveals.values())
        result = settle(
            request=state.announcement.request, answerers=state.answerers,
            judges=state.judges, commitments=state.all_commitments(),
            answer_openings=sorted(answer_opening(r) for r in reveals if r.kind == KIND_ANSWER),
            judgment_openings=sorted(judgment_opening(r) for r in reveals
                                     if r.kind == KIND_JUDGMENT),
            reputations={c.node: c.reputation for c in state.candidates},
            stakes={c.node: c.stake for c in state.candidates})
        state.settlement = result
        ranking = result.outcome.ranking
        if ranking:
            state.chosen = ranking[0]
            state.answer = state.reveals[(ranking[0], KIND_ANSWER)].payload.decode(
                "utf-8", "replace")
        else:
            state.error = "no answer was revealed"
        if not state.height:
            state.settlement_status = NOT_ON_CHAIN
        else:
            self._spawn(self._settlement_duty(state))
        state.status = "complete"
        state.done.set()
        state.changed.set()


async def _warm_up(backend: InferenceBackend) -> None:
    try:
        answer = await backend.answer("What is 1+1?", max_tokens=64)
        await backend.judge("What is 1+1?", answer.text, "3")
    except Exception as exc:  # an unreachable endpoint: rounds will say so, not the warm-up
        log_event(log, "swarm.warm_up_failed", error=str(exc))


def _settles(tx: Transaction, round_id: bytes) -> bool:
    """True iff ``tx`` is a settlement of round ``round_id``."""
    return isinstance(tx.payload, SettleSwarmRound) and \
        tx.payload.request.round_id() == round_id


def _swarm_frame(kind: str, data: bytes) -> bytes:
    from node.p2p.protocol import MsgType, encode_frame

    return encode_frame(MsgType.SWARM, {"kind": kind, "data": data})


class MinedProducts:
    """The built-in model's matmuls, mined by the node's miner (`Miner.mine_product`): on a
    mining node the swarm's inference is the useful work, and a winning ticket is a block."""

    r: int | None = None  # pouw's default chunk size for the padded shapes

    def __init__(self, miner: Any) -> None:
        self.miner = miner

    def mine(self, a: np.ndarray, b: np.ndarray) -> MiningResult | ExactProduct:
        result: MiningResult | ExactProduct = self.miner.mine_product(a, b)
        return result


def attach(node: Node, backend: InferenceBackend | None = None, **options: Any) -> SwarmService:
    """Create the node's swarm service (backend from ``config.swarm_backend`` unless given),
    hook it into the peer manager and register the chat and round routes."""
    if backend is None and node.config.swarm_backend:
        from swarm.runtime.builtin import mining_hook
        from swarm.runtime.factory import make_backend

        miner = getattr(node, "miner", None)  # a mining node (node.mining.miner.attach, before us)
        backend = make_backend(node.config.swarm_backend, matmul_hook=None if miner is None
                               else mining_hook(MinedProducts(miner)))
    config = node.config
    options = {"answers": config.swarm_answers, "judges": config.swarm_judges,
               "settle_backoff": float(config.swarm_settle_backoff)} | options
    service = SwarmService(node, backend, **options)
    setattr(node, "swarm", service)  # noqa: B010  # the peer manager looks it up by name
    node.peers.connect_listeners.append(service.on_connect)
    node.add_tip_listener(service.on_tip)

    async def _stop(_: Node) -> None:
        await service.stop()

    async def _start(_: Node) -> None:
        if backend is not None:  # the first inference pays for warm-up (~1 s): not a client
            service._spawn(_warm_up(backend))

    node.start_hooks.append(_start)
    node.stop_hooks.append(_stop)
    from node.api.chat import register_routes

    node.add_route_hook(lambda app, n: register_routes(app, service))
    from node.swarm.registration import attach as attach_registration

    attach_registration(node, service)  # stake, register, calibrate if config.swarm_register
    return service
