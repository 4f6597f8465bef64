"""Commit-reveal for answers and judgments, and equivocation evidence.

A node first publishes a signed `Commitment` to

    digest = H_tag("pouw/swdigest", kind ‖ round_id ‖ node ‖ salt ‖ H(payload))

and only after the commit deadline reveals ``salt`` and the payload. Why each part:

* the salt hides a short payload (a judgment is a few bytes) from guessing;
* ``node`` in the preimage binds the commitment to its author: a copycat who takes another
  node's reveal cannot open any commitment of its own with it, and cannot reuse the other
  node's digest either (its own node id would change the hash);
* ``round_id`` and ``kind`` stop replay into another round or role;
* hashing the payload first lets a settlement open answer commitments from the answer's hash
  alone (`AnswerOpening`), keeping answer text off chain.

Two validly signed commitments with different digests by one node for one round and kind are
equivocation: `find_equivocations` turns them into `EquivocationEvidence`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import nacl.signing

from core.encoding import tagged_hash
from swarm.messages import (
    KIND_ANSWER,
    KIND_JUDGMENT,
    AnswerOpening,
    Commitment,
    EquivocationEvidence,
    JudgmentOpening,
    Reveal,
)

DIGEST_TAG = b"pouw/swdigest"
PAYLOAD_TAG = b"pouw/swpayload"
ANSWER_SET_TAG = b"pouw/swansset"


def payload_hash(payload: bytes) -> bytes:
    """Hash of a revealed payload (answer text or judgment outcomes)."""
    return tagged_hash(PAYLOAD_TAG, payload)


def answer_set_digest(answers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Digest of the judged answer set: sorted (answerer node, answer hash) pairs."""
    return tagged_hash(ANSWER_SET_TAG, b"".join(node + h for node, h in sorted(answers)))


def judgment_payload(answer_set: bytes, outcomes: bytes) -> bytes:
    """The committed bytes of a judgment: answer-set digest ‖ one outcome byte per pair ‖
    one screen byte per answer (`swarm.settlement.judgment_outcomes`)."""
    if len(answer_set) != 32:
        raise ValueError("answer set digest is 32 bytes")
    return answer_set + outcomes


def commitment_digest(
    *, kind: int, round_id: bytes, node: bytes, salt: bytes, payload_digest: bytes
) -> bytes:
    """The committed digest; fixed-width fields make the preimage unambiguous."""
    if not (len(round_id) == len(node) == len(salt) == len(payload_digest) == 32):
        raise ValueError("round id, node, salt and payload hash are 32 bytes each")
    if kind not in (KIND_ANSWER, KIND_JUDGMENT):
        raise ValueError(f"unknown commitment kind {kind}")
    return tagged_hash(DIGEST_TAG, bytes([kind]) + round_id + node + salt + payload_digest)


def commit(
    seed: bytes, *, round_id: bytes, kind: int, payload: bytes, salt: bytes
) -> tuple[Commitment, Reveal]:
    """Sign a commitment to ``payload`` with the node key from ``seed``; keep the reveal.

    The caller supplies a fresh random 32-byte ``salt`` (``secrets.token_bytes(32)``).
    """
    key = nacl.signing.SigningKey(seed)
    node = bytes(key.verify_key)
    digest = commitment_digest(kind=kind, round_id=round_id, node=node, salt=salt,
                               payload_digest=payload_hash(payload))
    unsigned = Commitment(round_id=round_id, node=node, kind=kind, digest=digest,
                          signature=bytes(64))
    signed = dataclasses.replace(
        unsigned, signature=bytes(key.sign(unsigned.signing_bytes()).signature))
    return signed, Reveal(round_id=round_id, node=node, kind=kind, salt=salt, payload=payload)


def reveal_matches(commitment: Commitment, reveal: Reveal) -> bool:
    """True iff ``reveal`` opens ``commitment`` (same round, author, kind and digest)."""
    if (reveal.round_id, reveal.node, reveal.kind) != (
            commitment.round_id, commitment.node, commitment.kind):
        return False
    return commitment.digest == commitment_digest(
        kind=reveal.kind, round_id=reveal.round_id, node=reveal.node, salt=reveal.salt,
        payload_digest=payload_hash(reveal.payload))


def answer_opening(reveal: Reveal) -> AnswerOpening:
    """The settlement form of an answer reveal (the text stays off chain)."""
    if reveal.kind != KIND_ANSWER:
        raise ValueError("not an answer reveal")
    return AnswerOpening(node=reveal.node, salt=reveal.salt,
                         answer_hash=payload_hash(reveal.payload))


def judgment_opening(reveal: Reveal) -> JudgmentOpening:
    """The settlement form of a judgment reveal (outcomes included: settlement needs them)."""
    if reveal.kind != KIND_JUDGMENT or len(reveal.payload) < 32:
        raise ValueError("not a judgment reveal")
    return JudgmentOpening(node=reveal.node, salt=reveal.salt, answer_set=reveal.payload[:32],
                           outcomes=reveal.payload[32:])


def opening_matches(commitment: Commitment, opening: AnswerOpening | JudgmentOpening) -> bool:
    """True iff the settlement opening opens ``commitment``."""
    if isinstance(opening, AnswerOpening):
        kind, digest = KIND_ANSWER, opening.answer_hash
    else:
        kind = KIND_JUDGMENT
        digest = payload_hash(judgment_payload(opening.answer_set, opening.outcomes))
    if commitment.kind != kind or commitment.node != opening.node:
        return False
    return commitment.digest == commitment_digest(
        kind=kind, round_id=commitment.round_id, node=opening.node, salt=opening.salt,
        payload_digest=digest)


def make_evidence(a: Commitment, b: Commitment) -> EquivocationEvidence | None:
    """Evidence if ``a`` and ``b`` equivocate (validly signed, same round/node/kind, differ)."""
    if a.digest == b.digest or (a.round_id, a.node, a.kind) != (b.round_id, b.node, b.kind):
        return None
    if not (a.verify_signature() and b.verify_signature()):
        return None
    first, second = (a, b) if a < b else (b, a)
    return EquivocationEvidence(first=first, second=second)


def verify_evidence(evidence: EquivocationEvidence) -> bool:
    """True iff the evidence proves equivocation (anyone can check it, e.g. a validator)."""
    again = make_evidence(evidence.first, evidence.second)
    return again == evidence


def find_equivocations(commitments: Iterable[Commitment]) -> list[EquivocationEvidence]:
    """One piece of evidence per equivocating (round, node, kind), in canonical order.

    Only validly signed commitments count (a forged second commitment proves nothing);
    the evidence pairs the two smallest distinct commitments.
    """
    groups: dict[tuple[bytes, bytes, int], list[Commitment]] = {}
    for c in commitments:
        if c.verify_signature():
            groups.setdefault((c.round_id, c.node, c.kind), []).append(c)
    evidence = []
    for key in sorted(groups):
        distinct = sorted({c.digest: c for c in sorted(groups[key], reverse=True)}.values())
        if len(distinct) >= 2:
            evidence.append(EquivocationEvidence(first=distinct[0], second=distinct[1]))
    return evidence
