"""Finality votes: checkpoints, the (source, target) vote and its signing root.

A validator's BLS signature (`core.bls`) covers `vote_signing_root`: a tagged hash of the
chain id and the vote's canonical encoding, so a vote means one thing on one network and
nothing else can be passed off as one (docs/finality.md §3).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

from core.encoding import U64, Canonical, FixedBytes, Hash32, Nested, PublicKey, tagged_hash

BLS_PUBKEY_BYTES = 48
BLS_SIGNATURE_BYTES = 96
VOTE_TAG = b"pouw/ffgvote"  # the signing root's domain: used for nothing else

BlsPublicKey = Annotated[bytes, FixedBytes(BLS_PUBKEY_BYTES)]
BlsSignature = Annotated[bytes, FixedBytes(BLS_SIGNATURE_BYTES)]


@dataclasses.dataclass(frozen=True, order=True)
class Checkpoint(Canonical):
    """The first block of a finality epoch: ``root`` is its block id."""

    TAG: ClassVar[bytes] = b"pouw/checkpoint"
    MEMOISE: ClassVar[bool] = False
    epoch: U64
    root: Hash32


@dataclasses.dataclass(frozen=True)
class VoteData(Canonical):
    """What a validator votes for: a link from a justified ``source`` to ``target``."""

    TAG: ClassVar[bytes] = b"pouw/votedata"
    source: Annotated[Checkpoint, Nested(Checkpoint)]
    target: Annotated[Checkpoint, Nested(Checkpoint)]


@dataclasses.dataclass(frozen=True)
class SignedVote(Canonical):
    """One validator's vote as gossip carries it: its account address, the data, and its
    BLS signature over `vote_signing_root`."""

    TAG: ClassVar[bytes] = b"pouw/signedvote"
    MAX_SIZE: ClassVar[int] = 512
    validator: PublicKey
    data: Annotated[VoteData, Nested(VoteData)]
    signature: BlsSignature


def vote_signing_root(data: VoteData, *, chain_id: int) -> bytes:
    """The 32 bytes a validator signs for ``data`` on chain ``chain_id``."""
    return tagged_hash(VOTE_TAG, chain_id.to_bytes(8, "big") + data.encode())
