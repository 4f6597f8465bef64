"""Round messages: one canonical encoding each; signed requests; bounds enforced."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.genesis import dev_seed
from consensus.tx import public_key
from contracts.swarm import SettleSwarmRound
from core.encoding import decode, encode
from core.errors import EncodingError
from swarm.commit_reveal import commit
from swarm.messages import (
    KIND_ANSWER,
    MAX_REVEAL,
    Commitment,
    Payout,
    RequestAnnouncement,
    Reveal,
    RoundOutcome,
    SwarmRequest,
    prompt_hash_of,
    sign_request,
)

ROUND = bytes([3]) * 32


def announcement(**kw: object) -> RequestAnnouncement:
    fields: dict[str, object] = dict(chain_id=1337, prompt=b"What is 2+2?", fee=500, answers=5,
                                     judges=4, nonce=bytes(32))
    fields.update(kw)
    return sign_request(dev_seed(1), **fields)  # type: ignore[arg-type]


def test_signed_request_round_trips_and_verifies() -> None:
    a = announcement()
    assert a.prompt_matches()
    assert a.request.client == public_key(dev_seed(1))
    assert a.request.prompt_hash == prompt_hash_of(b"What is 2+2?")
    assert a.request.verify_signature()
    assert RequestAnnouncement.decode(a.encode()) == a
    assert SwarmRequest.decode(a.request.encode()) == a.request
    # any field change breaks the signature and changes the round id
    for change in (dict(fee=501), dict(answers=6), dict(nonce=bytes([1]) * 32)):
        forged = dataclasses.replace(a.request, **change)  # type: ignore[arg-type]
        assert not forged.verify_signature()
        assert forged.round_id() != a.request.round_id()
    assert not dataclasses.replace(a, prompt=b"What is 2+3?").prompt_matches()


def test_round_ids_differ_by_nonce() -> None:
    assert announcement().request.round_id() != \
        announcement(nonce=bytes([9]) * 32).request.round_id()


def test_non_canonical_encodings_are_rejected() -> None:
    c, r = commit(dev_seed(2), round_id=ROUND, kind=KIND_ANSWER, payload=b"4", salt=bytes(32))
    assert Commitment.decode(c.encode()) == c
    with pytest.raises(EncodingError):
        Commitment.decode(c.encode() + b"\x00")
    with pytest.raises(EncodingError):
        Reveal(round_id=ROUND, node=r.node, kind=0, salt=bytes(32),
               payload=b"x" * (MAX_REVEAL + 1)).encode()
    # set-like lists must be strictly increasing: one order, no duplicates
    p1, p2 = Payout(node=bytes([1]) * 32, amount=5), Payout(node=bytes([2]) * 32, amount=5)
    outcome = RoundOutcome(round_id=ROUND, ranking=(), scores=(), payouts=(p1, p2), refund=0,
                           reputations=(), slashes=())
    assert RoundOutcome.decode(outcome.encode()) == outcome
    with pytest.raises(EncodingError):
        dataclasses.replace(outcome, payouts=(p2, p1)).encode()
    with pytest.raises(EncodingError):
        dataclasses.replace(outcome, payouts=(p1, p1)).encode()


def test_settlement_payload_lists_are_canonical() -> None:
    a = announcement()
    c1, _ = commit(dev_seed(2), round_id=a.request.round_id(), kind=KIND_ANSWER, payload=b"4",
                   salt=bytes(32))
    c2, _ = commit(dev_seed(3), round_id=a.request.round_id(), kind=KIND_ANSWER, payload=b"4",
                   salt=bytes(32))
    low, high = sorted((c1, c2))
    outcome = RoundOutcome(round_id=a.request.round_id(), ranking=(), scores=(), payouts=(),
                           refund=0, reputations=(), slashes=())
    payload = SettleSwarmRound(request=a.request, reputation_height=7, beacon_block=bytes(32),
                               answerers=tuple(sorted((c1.node, c2.node))),
                               judges=(), commitments=(low, high), answer_openings=(),
                               judgment_openings=(), outcome=outcome)
    assert decode(SettleSwarmRound, encode(payload)) == payload
    with pytest.raises(EncodingError):
        encode(dataclasses.replace(payload, commitments=(high, low)))
    with pytest.raises(EncodingError):
        encode(dataclasses.replace(payload, answerers=payload.answerers[::-1]))
