"""Build real signed swarm rounds for tests and benches: keys, commitments, openings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from consensus.tx import public_key, signing_key
from core.encoding import tagged_hash
from swarm.bradley_terry import Outcome
from swarm.commit_reveal import (
    answer_opening,
    answer_set_digest,
    commit,
    judgment_opening,
    judgment_payload,
    payload_hash,
)
from swarm.messages import (
    KIND_ANSWER,
    KIND_JUDGMENT,
    AnswerOpening,
    Commitment,
    JudgmentOpening,
    SwarmRequest,
)
from swarm.schedule import judging_pairs
from swarm.settlement import SCREEN_NONE

CHAIN_ID = 1337
STAKE = 10_000_000  # a round node's stake in the settlement tests


def seed(name: str) -> bytes:
    return tagged_hash(b"pouw/testseed", name.encode())


def make_request(client_seed: bytes, *, fee: int, answers: int, judges: int,
                 nonce: int = 0, chain_id: int = CHAIN_ID,
                 beacon_height: int = 0) -> SwarmRequest:
    key = signing_key(client_seed)
    unsigned = SwarmRequest(chain_id=chain_id, client=bytes(key.verify_key), model=bytes(32),
                            prompt_hash=bytes([7]) * 32, fee=fee, answers=answers, judges=judges,
                            nonce=nonce.to_bytes(32, "big"), beacon_height=beacon_height,
                            signature=bytes(64))
    return dataclasses.replace(
        unsigned, signature=bytes(key.sign(unsigned.signing_bytes()).signature))


# a judge's verdict: (judge seed, first answer text, second answer text) -> outcome
Verdict = Callable[[bytes, bytes, bytes], Outcome]
# a judge's screen mark: (judge seed, answer text) -> SCREEN_BAD, SCREEN_GOOD or SCREEN_NONE
Screen = Callable[[bytes, bytes], int]


@dataclasses.dataclass
class Round:
    request: SwarmRequest
    answerers: list[bytes]
    judges: list[bytes]
    commitments: list[Commitment]
    answer_openings: list[AnswerOpening]
    judgment_openings: list[JudgmentOpening]
    answer_text: dict[bytes, bytes]  # node -> revealed answer


def build_round(
    *,
    request: SwarmRequest,
    answers: Sequence[tuple[bytes, bytes]],  # (answerer seed, answer text)
    judges: Sequence[tuple[bytes, Verdict]],
    answer_no_shows: Sequence[bytes] = (),  # answerer seeds that commit but never reveal
    unjudged: Sequence[bytes] = (),  # answerer seeds that reveal but judges leave out
    screen: Screen | None = None,  # judges' screen marks (default: no opinion)
) -> Round:
    rid = request.round_id()
    r = Round(request=request, answerers=[], judges=[], commitments=[], answer_openings=[],
              judgment_openings=[], answer_text={})
    for s, text in answers:
        c, rev = commit(s, round_id=rid, kind=KIND_ANSWER, payload=text,
                        salt=tagged_hash(b"pouw/testsalt", s + rid))
        r.answerers.append(c.node)
        r.commitments.append(c)
        if s not in answer_no_shows:
            r.answer_openings.append(answer_opening(rev))
            if s not in unjudged:
                r.answer_text[c.node] = text
    revealed = sorted(r.answer_text)
    pairs = judging_pairs(rid, len(revealed))
    answer_set = answer_set_digest((node, payload_hash(r.answer_text[node])) for node in revealed)
    for s, verdict in judges:
        outcomes = bytes(verdict(s, r.answer_text[revealed[a]], r.answer_text[revealed[b]])
                         for a, b in pairs) + bytes(
            SCREEN_NONE if screen is None else screen(s, r.answer_text[node])
            for node in revealed)
        c, rev = commit(s, round_id=rid, kind=KIND_JUDGMENT,
                        payload=judgment_payload(answer_set, outcomes),
                        salt=tagged_hash(b"pouw/testsalt", s + rid + b"j"))
        r.judges.append(public_key(s))
        r.commitments.append(c)
        r.judgment_openings.append(judgment_opening(rev))
    return r


def quality_of(text: bytes) -> int:
    """The quality an answer of the form ``b"... q=N"`` claims (N)."""
    return int(text.split(b"=")[1])


def honest(_judge: bytes, a: bytes, b: bytes) -> Outcome:
    """A judge preferring the answer of higher `quality_of`."""
    return Outcome.FIRST_WINS if quality_of(a) > quality_of(b) else Outcome.SECOND_WINS
