"""Blocks: header fields, the PoUW commitment, transaction Merkle root, work.

The header commits to everything (parent, time, target, transactions, post-state, miner) and
to the PoUW job (operand roots and shape). The certificate is excluded from the commitment it
proves, and the commitment covers every other field, so a certificate is bound to exactly one
block: changing any field (a different miner address, one more transaction) needs new work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, ClassVar

from consensus.tx import Transaction
from core.encoding import (
    U64,
    U256,
    Canonical,
    Hash32,
    ListOf,
    Nested,
    PublicKey,
    VarBytes,
    encode,
    tagged_hash,
)
from pouw import MAX_CERTIFICATE_BYTES

MAX_BLOCK_TRANSACTIONS = 100_000
MAX_HEADER_SIZE = MAX_CERTIFICATE_BYTES + 1024
ZERO_HASH = bytes(32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BlockHeader(Canonical):
    """Block header; field order is the canonical encoding order."""

    TAG: ClassVar[bytes] = b"pouw/header"
    MAX_SIZE: ClassVar[int] = MAX_HEADER_SIZE
    version: U64
    chain_id: U64
    height: U64
    parent_hash: Hash32
    timestamp: U64  # integer seconds since the Unix epoch
    target: U256  # a ticket wins if it beats this (pouw scales it by ticket weight)
    tx_root: Hash32
    state_root: Hash32
    miner: PublicKey
    root_a: Hash32  # PoUW operand roots and job shape (zero for genesis)
    root_b: Hash32
    m: U64
    k: U64
    n: U64
    r: U64
    # canonical encoding of pouw.Certificate; empty for genesis (nothing was mined)
    certificate: Annotated[bytes, VarBytes(MAX_CERTIFICATE_BYTES)] = b""

    def block_id(self) -> bytes:
        """The block id: hash of the full header, certificate included."""
        return self.id()


def header_commitment(header: BlockHeader) -> bytes:
    """The PoUW commitment: hash of the header's canonical encoding without the certificate."""
    return tagged_hash(b"pouw/commit", encode(header, omit=("certificate",)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Block(Canonical):
    """Header plus transactions in application order."""

    TAG: ClassVar[bytes] = b"pouw/block"
    MAX_SIZE: ClassVar[int] = 32 * 1024 * 1024  # decoding bound; consensus uses params
    header: Annotated[BlockHeader, Nested(BlockHeader)]
    transactions: Annotated[
        tuple[Transaction, ...], ListOf(Nested(Transaction), MAX_BLOCK_TRANSACTIONS)
    ] = ()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Binary Merkle root with distinct leaf/node/empty tags.

    An odd node is promoted, not duplicated (duplication lets two different lists share a
    root, Bitcoin's CVE-2012-2459); tagging leaves apart from nodes stops a node being passed
    off as a leaf. The leaf count is committed too, so lists of different lengths never
    collide.
    """
    if not leaves:
        return tagged_hash(b"pouw/merkle0", b"")
    level = [tagged_hash(b"pouw/merkleleaf", leaf) for leaf in leaves]
    while len(level) > 1:
        nxt = [
            tagged_hash(b"pouw/merklenode", level[i] + level[i + 1])
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return tagged_hash(b"pouw/merkleroot", len(leaves).to_bytes(8, "big") + level[0])


def transactions_root(transactions: Sequence[Transaction]) -> bytes:
    """Merkle root of the transaction ids, in block order."""
    return merkle_root([tx.id() for tx in transactions])


def work_of(target: int) -> int:
    """Expected number of tickets to beat ``target``: the chain-work increment of a block."""
    return 2**256 // (target + 1)
