"""One swarm round as a node holds it: its announcement, draw, commitments and reveals, and
the settlement found on chain; plus the msgpack lists swarm gossip carries.

Pure data with its own checks (`RoundState.add_commitment` keeps at most two digests per
node and kind: enough to prove equivocation, too few to flood us); the service drives it.

`RoundStore` keeps on-chain rounds in the node's LevelDB until they settle: the signed
announcement, the draw, every kept commitment and reveal, our own unrevealed reveals and the
settlement we sent, so a restarted node can still finish (origin) and settle (any
participant) a round it took part in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import zlib
from collections import Counter
from typing import Any

import msgpack

from core.errors import ConsensusError
from node.chain.db import Database
from node.swarm.generation import GenerationOptions
from swarm.commit_reveal import reveal_matches
from swarm.messages import (
    ABSTAIN_REASONS,
    KIND_ANSWER,
    KIND_JUDGMENT,
    KIND_NAMES,
    Abstention,
    Commitment,
    RequestAnnouncement,
    Reveal,
)
from swarm.selection import Candidate
from swarm.settlement import RoundSettlement

ROUND_PREFIX = b"round/"  # round/<round id> -> msgpack record (`RoundStore`)
MAX_DIGESTS = 2  # commitments kept per (node, kind): two different ones prove equivocation
SETTLEMENT_PENDING = "pending"
NOT_ON_CHAIN = "not on chain: no registered swarm nodes (interim candidates)"
#: abstention reasons that are the request's own (no other node would do better): the client
#: gets a 4xx naming them; any other failure is the answerers' (5xx)
CLIENT_REASONS = ("unsupported_prompt", "context_length_exceeded")
#: a failed round's code (``RoundState.error_code``) when no answerer gave a reason
NO_ANSWER = "no_answer"
#: ... when answerers abstained, but only for their own failures (timeouts, errors)
ANSWERERS_FAILED = "answerers_failed"
#: the parts of a round's view (`RoundState.view`) read from its signed messages, its
#: candidates and its settlement: what `RoundState.compact` keeps once those are dropped
FROZEN_VIEW = ("candidates", "answers", "judgments", "equivocators", "abstentions", "result")


def reason_name(reason: int) -> str:
    """An abstention's reason code as text (`swarm.messages.ABSTAIN_REASONS`)."""
    return ABSTAIN_REASONS.get(reason, f"reason_{reason}")


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
    # ``settlement`` ties were broken by the round's beacon (the chain's seed), not yet by the
    # round id (the fast path before the beacon block is mined, docs/swarm.md §5.2a "Ties")
    beacon_seeded: bool = False
    settlement_status: str = SETTLEMENT_PENDING
    settled: SettledBy | None = None  # the settlement transaction found on chain
    chosen: bytes | None = None
    answer: str | None = None
    error: str | None = None
    error_code: str | None = None  # why no answer came (`failure`): a stable code
    # (node, kind) -> its signed abstention (gossip only, not stored: the origin stops
    # waiting for that node; the client hears why)
    abstentions: dict[tuple[bytes, int], Abstention] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    # the client's generation options (the ``req`` gossip carries them; default: the nodes')
    options: GenerationOptions = dataclasses.field(default_factory=GenerationOptions)
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    # `compact`: the ``FROZEN_VIEW`` parts of the view as zlib'd JSON (None: a whole round)
    frozen_view: bytes | None = None

    @property
    def compacted(self) -> bool:
        """True once `compact` dropped the round's messages: it only serves its view."""
        return self.frozen_view is not None

    def compact(self) -> None:
        """Keep only what the round view shows and drop the signed messages, the candidates
        and the settlement (measured: ~18.6 KiB -> ~4.4 KiB per 4-node arith round).

        Why: a node holds up to ``MAX_ROUNDS`` rounds for the API and the explorer, and a
        settled round's messages are needed no more (the service compacts a round only once
        nothing can make it settle again, `SwarmService._compact_finished`); whole, they grew
        the soak's RSS ~15 MB/h (issue 12). What forgetting costs: the round can no longer be
        settled, challenged or re-ranked by this node, and its late messages are ignored; its
        ``GET /api/v1/rounds/{id}`` view stays the same, byte for byte."""
        if self.frozen_view is not None:
            return
        view = self.view()
        self.frozen_view = zlib.compress(json.dumps(
            {key: view[key] for key in FROZEN_VIEW}, separators=(",", ":")).encode())
        self.candidates = ()
        self.commitments = {}
        self.reveals = {}
        self.pending = {}
        self.abstentions = {}
        self.phases = set()
        self.settlement = None

    @property
    def round_id(self) -> bytes:
        """The request's id: what every message of the round names."""
        return self.announcement.request.round_id()

    @property
    def prompt(self) -> str:
        """The question as text (undecodable bytes replaced: it is only shown and answered)."""
        return self.announcement.prompt.decode("utf-8", "replace")

    def committed(self, kind: int) -> set[bytes]:
        """Nodes with a commitment of ``kind``: what the origin waits for."""
        return {node for node, k in self.commitments if k == kind}

    def revealed(self, kind: int) -> set[bytes]:
        """Nodes whose reveal of ``kind`` opened their commitment."""
        return {node for node, k in self.reveals if k == kind}

    def abstained(self, kind: int) -> set[bytes]:
        """Nodes that signed an abstention of ``kind``: not waited for."""
        return {node for node, k in self.abstentions if k == kind}

    def add_abstention(self, abstention: Abstention) -> bool:
        """Keep a validly signed abstention of a node selected for its kind; True if new."""
        if self.compacted or abstention.round_id != self.round_id or \
                abstention.kind not in (KIND_ANSWER, KIND_JUDGMENT):
            return False
        role = self.answerers if abstention.kind == KIND_ANSWER else self.judges
        key = (abstention.node, abstention.kind)
        if abstention.node not in role or key in self.abstentions or \
                not abstention.verify_signature():
            return False
        self.abstentions[key] = abstention
        return True

    def failure(self) -> tuple[str, str]:
        """(code, message) of a round that got no answer: the answerers' own reasons.

        Every answerer that abstained for the request's sake (``CLIENT_REASONS``: the prompt
        is outside what its model serves, or past its context) makes the round fail with the
        most frequent such reason; abstentions only for their own failures are
        ``answerers_failed``; no abstention at all (silence until the timeouts) is
        ``no_answer``."""
        abstained = [a for (_, kind), a in sorted(self.abstentions.items())
                     if kind == KIND_ANSWER]
        if not abstained:
            return NO_ANSWER, (f"no answer from the {len(self.answerers)} selected answerer(s) "
                               "within the round's timeouts")
        reasons = Counter(reason_name(a.reason) for a in abstained)
        client = [r for r in CLIENT_REASONS if reasons[r]]
        code = max(client, key=lambda r: reasons[r]) if client else ANSWERERS_FAILED
        why: dict[tuple[str, str], int] = Counter(
            (reason_name(a.reason), a.detail.decode("utf-8", "replace")) for a in abstained)
        details = "; ".join(f"{reason} ({count} node{'s' if count > 1 else ''}): {detail}"
                            for (reason, detail), count in sorted(why.items()))
        silent = len(self.answerers) - len(abstained)
        head = ("every selected answerer abstained" if not silent else
                f"{len(abstained)} of {len(self.answerers)} selected answerers abstained "
                f"and {silent} did not answer")
        return code, f"{head}: {details}"

    def abstention_view(self) -> list[dict[str, Any]]:
        """The round's abstentions as JSON (round view, a failed chat's error)."""
        return [{"node": node.hex(), "role": KIND_NAMES.get(kind, str(kind)),
                 "reason": reason_name(a.reason),
                 "detail": a.detail.decode("utf-8", "replace")}
                for (node, kind), a in sorted(self.abstentions.items())]

    def add_commitment(self, commitment: Commitment) -> bool:
        """Keep a validly signed commitment of a selected node; True if it is new.

        Two digests per (node, kind) are enough to prove equivocation; a third or a copy is
        dropped, so an equivocator cannot make us store or relay without bound."""
        if self.compacted or commitment.round_id != self.round_id or \
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
        return not self.compacted and any(
            reveal_matches(c, reveal)
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
            "judges_requested": self.announcement.request.judges,
            "answers": answers, "judgments": judgments,
            "equivocators": [node.hex() for node in self.equivocators()],
            "chosen": None if self.chosen is None else self.chosen.hex(),
            "answer": self.answer, "error": self.error, "error_code": self.error_code,
            "abstentions": self.abstention_view(),
            "settlement_status": self.settlement_status,
            "settled": None if self.settled is None else self.settled.view(),
            "timings_ms": {k: round(v * 1000, 1) for k, v in self.timings.items()},
        }
        out["result"] = None if self.settlement is None else self.settlement.summary()
        if self.frozen_view is not None:
            out |= json.loads(zlib.decompress(self.frozen_view))
        return out


@dataclasses.dataclass(frozen=True)
class SettledBy:
    """Which transaction settled a round on chain, read from the block that holds it."""

    height: int
    block_id: bytes
    tx_id: bytes
    settler: bytes  # the transaction's sender

    def status(self) -> str:
        """The round's settlement status line (the API and the CLI show it)."""
        if not self.tx_id:  # the block is not in our store (cannot happen on a full node)
            return f"settled at height {self.height}"
        return f"settled at height {self.height}: tx {self.tx_id.hex()} by {self.settler.hex()}"

    def view(self) -> dict[str, Any]:
        """JSON view, under ``settled`` in the round view."""
        return {"height": self.height, "block": self.block_id.hex(), "tx": self.tx_id.hex(),
                "settler": self.settler.hex()}


def pack(*items: Any) -> bytes:
    """One swarm message's data: a msgpack list (bytes stay bytes)."""
    return bytes(msgpack.packb(list(items), use_bin_type=True))


def unpack(data: bytes) -> list[Any]:
    """The list `pack` made; raises ValueError on anything else (the message is dropped)."""
    obj = msgpack.unpackb(data, raw=False, use_list=True)
    if type(obj) is not list:
        raise ValueError("swarm message: expected a list")
    return obj


class RoundStore:
    """Rounds in the node's LevelDB (``round/<id>``) until they settle.

    Written on every change of a round's signed messages, without an fsync of its own (in
    the OS at once: it survives a killed process; a power cut may lose the newest messages,
    which peers re-send in ``final``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def record(state: RoundState) -> bytes:
        """The msgpack record of a round: what finishing or settling it needs."""
        return pack(
            state.announcement.encode(),
            [[c.node, c.stake, c.reputation, c.capable] for c in state.candidates],
            list(state.answerers), list(state.judges), state.origin, state.height,
            state.status, [c.encode() for c in state.all_commitments()],
            [state.reveals[k].encode() for k in sorted(state.reveals)],
            [r.encode() for _, r in sorted(state.pending.items())],
            state.settlement_tx or b"",
            None if state.options.is_default else state.options.wire(),
            sorted(state.phases))

    def save(self, state: RoundState) -> None:
        if not self.db.closed:
            self.db.write_raw({ROUND_PREFIX + state.round_id: self.record(state)}, sync=False)

    def forget(self, round_ids: list[bytes]) -> None:
        if round_ids and not self.db.closed:
            self.db.write_raw(dict.fromkeys((ROUND_PREFIX + r for r in round_ids), None),
                              sync=False)

    def load(self) -> tuple[list[RoundState], list[tuple[bytes, str]]]:
        """Every readable round; (id, why) of the others, which are deleted."""
        rounds: list[RoundState] = []
        bad: list[tuple[bytes, str]] = []
        for key, value in self.db.iterate_prefix(ROUND_PREFIX):
            round_id = key[len(ROUND_PREFIX):]
            try:
                state = restore_round(value)
                if state.round_id != round_id:
                    raise ValueError("the record's request is not this round's")
            except (ValueError, TypeError, KeyError, ConsensusError) as exc:
                bad.append((round_id, f"{type(exc).__name__}: {exc}"))
                continue
            rounds.append(state)
        self.forget([round_id for round_id, _ in bad])
        return rounds, bad


def restore_round(value: bytes) -> RoundState:
    """The `RoundState` a `RoundStore.record` holds (signatures re-checked as it is rebuilt:
    a commitment is kept only if validly signed by a selected node, a reveal only if it
    opens one)."""
    (announcement, candidates, answerers, judges, origin, height, status, commits, reveals,
     pending, settlement_tx, options, phases) = unpack(value)
    state = RoundState(
        announcement=RequestAnnouncement.decode(bytes(announcement)),
        candidates=tuple(Candidate(node=bytes(n), stake=int(st), reputation=int(rep),
                                   capable=bool(cap)) for n, st, rep, cap in candidates),
        answerers=tuple(map(bytes, answerers)), judges=tuple(map(bytes, judges)),
        origin=bytes(origin), started=time.monotonic(), height=int(height),
        status=str(status), settlement_tx=bytes(settlement_tx) or None,
        options=GenerationOptions() if options is None else GenerationOptions.from_wire(options),
        phases={str(p) for p in phases})
    for raw in commits:
        state.add_commitment(Commitment.decode(bytes(raw)))
    for raw in reveals:
        reveal = Reveal.decode(bytes(raw))
        if state.opens(reveal):
            state.reveals.setdefault((reveal.node, reveal.kind), reveal)
    for raw in pending:
        reveal = Reveal.decode(bytes(raw))
        state.pending[reveal.kind] = reveal
    return state
