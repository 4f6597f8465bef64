"""Canonical encodings of swarm round objects (gossip and the settlement transaction).

Every object is a `core.encoding.Canonical` dataclass, so it has exactly one byte form:
nodes can gossip and deduplicate by id, and a settlement transaction carries the same bytes
the nodes signed. Lists that behave like sets (payouts, slashes, openings) are strictly
increasing, so they too have one order.

Sizes are bounded by `MAX_ROUND_NODES` (answerers or judges per round) and `MAX_REVEAL`
(one revealed answer); the settlement carries only hashes of answers, not their text.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

import nacl.exceptions
import nacl.signing

from core.encoding import (
    U64,
    Canonical,
    FixedBytes,
    Hash32,
    ListOf,
    Nested,
    PublicKey,
    Signature64,
    UInt,
    VarBytes,
    encode,
    tagged_hash,
)

KIND_ANSWER = 0
KIND_JUDGMENT = 1
KIND_NAMES = {KIND_ANSWER: "answer", KIND_JUDGMENT: "judgment"}

SLASH_NO_SHOW = 0
SLASH_EQUIVOCATION = 1
SLASH_REASONS = {SLASH_NO_SHOW: "no_show", SLASH_EQUIVOCATION: "equivocation"}

MAX_ROUND_NODES = 64
#: Judges a round asks for unless its client asks otherwise (the node's ``swarm_judges``, the
#: chat API's rounds, ``pouwchain ask --wallet``); the draw gives fewer when fewer nodes are
#: eligible. Sized for docs/swarm.md §5.2a's coalition bound (a 30% GOOD+all-BAD coalition's
#: target first in <= 1% of rounds, outcome change <= 2 pp over the control), which needs >= 12
#: honest judges: 18 seats leave 12 when a 30% coalition takes its share (6) of them
#: (bench/swarm_attacks.py --judges 18: 0.33% on 600 held-out rounds; 15 judges: 1.33%).
DEFAULT_ROUND_JUDGES = 18
#: Judges a node asks for on a chain without an inclusion window (``swarm_inclusion_window`` 0),
#: where a round can only settle by a full `SettleSwarmRound` within `MAX_TX_SIZE`: each judge
#: adds about 400 bytes (commitment and opening), so 4 answers and 12 judges take 6,852 of
#: 8,192 bytes, 14 take 7,656 and 16 do not fit (tests/contracts/test_swarm_settlement_size.py).
#: Larger rounds settle by data root, which needs the window.
MAX_JUDGES_WITHOUT_DATA_ROOT = 12
MAX_PAIRS = 4 * MAX_ROUND_NODES  # judging_pairs gives at most 4n ordered pairs
#: A judgment's outcome bytes: one per scheduled pair, then one screen byte per answer.
MAX_JUDGMENT_BYTES = MAX_PAIRS + MAX_ROUND_NODES
MAX_REVEAL = 1 << 16
MAX_PROMPT = 1 << 16
MAX_COMMITMENTS = 4 * MAX_ROUND_NODES  # room for equivocation evidence

REQUEST_DOMAIN = b"pouwchain/swarm-request/v1\x00"
COMMIT_DOMAIN = b"pouwchain/swarm-commit/v1\x00"

NodeIds = Annotated[tuple[bytes, ...], ListOf(FixedBytes(32), MAX_ROUND_NODES)]
SortedNodeIds = Annotated[
    tuple[bytes, ...], ListOf(FixedBytes(32), MAX_ROUND_NODES, strictly_increasing=True)
]


def _verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


def prompt_hash_of(prompt: bytes) -> bytes:
    """Hash of a prompt: the request commits to it without carrying it on chain."""
    return tagged_hash(b"pouw/swprompt", prompt)


@dataclasses.dataclass(frozen=True)
class SwarmRequest(Canonical):
    """A client's signed request; its id is the round id, and its signature authorises the fee.

    ``model`` is the model id asked for (all zero: any model); ``answers``/``judges`` are how
    many nodes to select for each role; ``nonce`` lets a client ask the same prompt again.
    ``beacon_height`` is the chain height the client saw when it signed: the round is drawn
    at that height or later, and its ties are broken by the id of the block
    ``ChainParams.swarm_beacon_delay`` blocks above it, which nobody knows yet
    (`swarm.settlement.beacon_seed`, docs/swarm.md §5.2a "Ties").
    """

    TAG: ClassVar[bytes] = b"pouw/swrequest"
    chain_id: U64
    client: PublicKey
    model: Hash32
    prompt_hash: Hash32
    fee: U64
    answers: Annotated[int, UInt(8)]
    judges: Annotated[int, UInt(8)]
    nonce: Hash32
    beacon_height: U64
    signature: Signature64

    def signing_bytes(self) -> bytes:
        return REQUEST_DOMAIN + encode(self, omit=("signature",))

    def verify_signature(self) -> bool:
        return _verify(self.client, self.signing_bytes(), self.signature)

    def round_id(self) -> bytes:
        return self.id()


def sign_request(
    seed: bytes, *, chain_id: int, prompt: bytes, fee: int, answers: int, judges: int,
    nonce: bytes, model: bytes = bytes(32), beacon_height: int = 0,
) -> RequestAnnouncement:
    """A client's signed request for ``prompt`` (Ed25519 seed), ready to gossip.

    ``nonce`` (32 bytes) must differ between requests the client wants answered separately:
    the round id is the request's id, and a round settles once. ``beacon_height``: the chain's
    tip height as the client sees it (nodes refuse a request whose beacon block is already
    mined, docs/swarm.md §5.2a "Ties"; 0 only where no chain runs the round).
    """
    key = nacl.signing.SigningKey(seed)
    unsigned = SwarmRequest(chain_id=chain_id, client=bytes(key.verify_key), model=model,
                            prompt_hash=prompt_hash_of(prompt), fee=fee, answers=answers,
                            judges=judges, nonce=nonce, beacon_height=beacon_height,
                            signature=bytes(64))
    signed = dataclasses.replace(
        unsigned, signature=bytes(key.sign(unsigned.signing_bytes()).signature))
    return RequestAnnouncement(request=signed, prompt=prompt)


@dataclasses.dataclass(frozen=True)
class RequestAnnouncement(Canonical):
    """Gossip form of a request: the signed request plus the prompt text it hashes."""

    TAG: ClassVar[bytes] = b"pouw/swannounce"
    MAX_SIZE: ClassVar[int] = MAX_PROMPT + 1024
    request: Annotated[SwarmRequest, Nested(SwarmRequest)]
    prompt: Annotated[bytes, VarBytes(MAX_PROMPT)]

    def prompt_matches(self) -> bool:
        return prompt_hash_of(self.prompt) == self.request.prompt_hash


@dataclasses.dataclass(frozen=True, order=True)
class Commitment(Canonical):
    """A node's signed commitment to an answer or judgment of one round (see commit_reveal)."""

    TAG: ClassVar[bytes] = b"pouw/swcommit"
    round_id: Hash32
    node: PublicKey
    kind: Annotated[int, UInt(8)]
    digest: Hash32
    signature: Signature64

    def signing_bytes(self) -> bytes:
        return COMMIT_DOMAIN + encode(self, omit=("signature",))

    def verify_signature(self) -> bool:
        return _verify(self.node, self.signing_bytes(), self.signature)


ABSTAIN_DOMAIN = b"pouwchain/swarm-abstain/v1\x00"
#: why a selected node will not commit (Abstention.reason); unknown codes are shown as numbers
ABSTAIN_UNSUPPORTED_PROMPT = 0  # the prompt is outside what its model serves
ABSTAIN_PROMPT_TOO_LONG = 1  # past its model's context window
ABSTAIN_TIMEOUT = 2  # its backend did not answer in time
ABSTAIN_BACKEND_ERROR = 3  # any other backend failure
ABSTAIN_REASONS = {ABSTAIN_UNSUPPORTED_PROMPT: "unsupported_prompt",
                   ABSTAIN_PROMPT_TOO_LONG: "context_length_exceeded",
                   ABSTAIN_TIMEOUT: "backend_timeout", ABSTAIN_BACKEND_ERROR: "backend_error"}
MAX_ABSTAIN_DETAIL = 256


@dataclasses.dataclass(frozen=True)
class Abstention(Canonical):
    """A selected node's signed word that it will not commit its ``kind`` in this round, and
    why (gossip only, outside consensus): the origin stops waiting for it."""

    TAG: ClassVar[bytes] = b"pouw/swabstain"
    round_id: Hash32
    node: PublicKey
    kind: Annotated[int, UInt(8)]
    reason: Annotated[int, UInt(8)]
    detail: Annotated[bytes, VarBytes(MAX_ABSTAIN_DETAIL)]  # UTF-8, for humans
    signature: Signature64

    def signing_bytes(self) -> bytes:
        return ABSTAIN_DOMAIN + encode(self, omit=("signature",))

    def verify_signature(self) -> bool:
        return _verify(self.node, self.signing_bytes(), self.signature)


def sign_abstention(seed: bytes, *, round_id: bytes, kind: int, reason: int,
                    detail: str) -> Abstention:
    """``seed``'s node abstains from ``kind`` in round ``round_id`` (detail cut to fit)."""
    key = nacl.signing.SigningKey(seed)
    unsigned = Abstention(round_id=round_id, node=bytes(key.verify_key), kind=kind,
                          reason=reason, detail=detail.encode()[:MAX_ABSTAIN_DETAIL],
                          signature=bytes(64))
    return dataclasses.replace(
        unsigned, signature=bytes(key.sign(unsigned.signing_bytes()).signature))


@dataclasses.dataclass(frozen=True)
class Reveal(Canonical):
    """Gossip form of an opening: the salt and the full payload (answer text or outcomes)."""

    TAG: ClassVar[bytes] = b"pouw/swreveal"
    MAX_SIZE: ClassVar[int] = MAX_REVEAL + 256
    round_id: Hash32
    node: PublicKey
    kind: Annotated[int, UInt(8)]
    salt: Hash32
    payload: Annotated[bytes, VarBytes(MAX_REVEAL)]


@dataclasses.dataclass(frozen=True, order=True)
class AnswerOpening(Canonical):
    """What a settlement needs to open an answer commitment: the answer's hash, not its text."""

    TAG: ClassVar[bytes] = b"pouw/swansopen"
    node: PublicKey
    salt: Hash32
    answer_hash: Hash32


@dataclasses.dataclass(frozen=True, order=True)
class JudgmentOpening(Canonical):
    """Opening of a judgment: the digest of the answer set judged (`answer_set_digest`) and
    one outcome byte (0 first wins, 1 second wins, 2 tie) per scheduled pair.

    The set digest makes a judgment say which answers it ranked: a judge who saw a different
    set of reveals is simply not counted, rather than misread.
    """

    TAG: ClassVar[bytes] = b"pouw/swjudgopen"
    node: PublicKey
    salt: Hash32
    answer_set: Hash32
    outcomes: Annotated[bytes, VarBytes(MAX_JUDGMENT_BYTES)]


@dataclasses.dataclass(frozen=True, order=True)
class Payout(Canonical):
    TAG: ClassVar[bytes] = b"pouw/swpayout"
    node: PublicKey
    amount: U64


@dataclasses.dataclass(frozen=True, order=True)
class ReputationUpdate(Canonical):
    """A participant's reputation after the round (absolute, not a delta: u64 has no sign)."""

    TAG: ClassVar[bytes] = b"pouw/swrepupd"
    node: PublicKey
    score: U64


@dataclasses.dataclass(frozen=True, order=True)
class Slash(Canonical):
    TAG: ClassVar[bytes] = b"pouw/swslash"
    node: PublicKey
    amount: U64
    reason: Annotated[int, UInt(8)]


@dataclasses.dataclass(frozen=True)
class RoundOutcome(Canonical):
    """The settlement of a round: what every validator recomputes and compares byte for byte.

    ``ranking`` lists ranked answerers best first with ``scores`` (σ(θ) as 64-bit fractions);
    ``refund`` returns to the client what nobody earned.
    """

    TAG: ClassVar[bytes] = b"pouw/swoutcome"
    round_id: Hash32
    ranking: NodeIds
    scores: Annotated[tuple[int, ...], ListOf(UInt(64), MAX_ROUND_NODES)]
    payouts: Annotated[tuple[Payout, ...], ListOf(Nested(Payout), 2 * MAX_ROUND_NODES,
                                                  strictly_increasing=True)]
    refund: U64
    reputations: Annotated[tuple[ReputationUpdate, ...],
                           ListOf(Nested(ReputationUpdate), 2 * MAX_ROUND_NODES,
                                  strictly_increasing=True)]
    slashes: Annotated[tuple[Slash, ...], ListOf(Nested(Slash), 2 * MAX_ROUND_NODES,
                                                 strictly_increasing=True)]


@dataclasses.dataclass(frozen=True)
class EquivocationEvidence(Canonical):
    """Two validly signed, different commitments by one node for one round and kind.

    ``first < second`` (canonical order), so one pair of commitments has one evidence id.
    """

    TAG: ClassVar[bytes] = b"pouw/swequivoc"
    first: Annotated[Commitment, Nested(Commitment)]
    second: Annotated[Commitment, Nested(Commitment)]


MAX_LEAF_COMMITMENTS = 2  # one, or an equivocation pair


@dataclasses.dataclass(frozen=True)
class RoundLeaf(Canonical):
    """One slot of a round's data root: a selected node in one role (``kind``) with its
    counting commitments (one, or the two of an equivocation) and the opening of a single
    commitment, if the settler holds one (`swarm.data_root`)."""

    TAG: ClassVar[bytes] = b"pouw/swleaf"
    node: PublicKey
    kind: Annotated[int, UInt(8)]
    commitments: Annotated[tuple[Commitment, ...], ListOf(
        Nested(Commitment), MAX_LEAF_COMMITMENTS, strictly_increasing=True)] = ()
    answer_openings: Annotated[tuple[AnswerOpening, ...], ListOf(Nested(AnswerOpening), 1)] = ()
    judgment_openings: Annotated[tuple[JudgmentOpening, ...],
                                 ListOf(Nested(JudgmentOpening), 1)] = ()
