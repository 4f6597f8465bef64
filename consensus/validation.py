"""Block validation: flat rule functions, one check per line, each naming its rule.

Order: cheap context checks on the header, then the body's size and transactions root, then
the PoUW certificate (milliseconds), then the state transition (the most expensive). The
caller supplies everything contextual: the parent header, recent ancestor timestamps, the
current time (consensus never reads a clock) and the target the difficulty rule expects
(``consensus.difficulty`` computes it; taking it as an argument keeps this module free of the
difficulty algorithm and its storage needs).
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.block import Block, BlockHeader, header_commitment, transactions_root
from consensus.transition import apply_block_transactions
from core.errors import BodyError, CertificateRuleError, HeaderError, StateRootError
from core.params import MEDIAN_TIME_SPAN, ChainParams
from core.state import BlockUndo, State
from pouw import Certificate, PouwParams, verify_certificate


def median_time_past(timestamps: Sequence[int]) -> int:
    """Median of the last `MEDIAN_TIME_SPAN` timestamps (upper median for even counts)."""
    window = sorted(timestamps[-MEDIAN_TIME_SPAN:])
    if not window:
        raise ValueError("median of no timestamps")
    return window[len(window) // 2]


def check_header(
    header: BlockHeader,
    *,
    parent: BlockHeader | None,
    recent_timestamps: Sequence[int],
    now: int,
    expected_target: int,
    params: ChainParams,
) -> None:
    """Contextual header rules; ``recent_timestamps`` ends with the parent's timestamp."""
    # the header version must be the current one
    if header.version != params.block_version:
        raise HeaderError("header.version", f"version {header.version}")
    # the header must be for this chain
    if header.chain_id != params.chain_id:
        raise HeaderError("header.chain_id", f"chain {header.chain_id}")
    # the parent must be known
    if parent is None:
        raise HeaderError("header.parent_unknown", header.parent_hash.hex())
    # the parent hash must be the parent's block id
    if header.parent_hash != parent.block_id():
        raise HeaderError("header.parent_hash")
    # height must be the parent's height + 1
    if header.height != parent.height + 1:
        raise HeaderError("header.height", f"{header.height} after {parent.height}")
    # timestamp must exceed the median of the last 11 blocks
    if header.timestamp <= median_time_past(recent_timestamps or [parent.timestamp]):
        raise HeaderError("header.timestamp_median", f"timestamp {header.timestamp}")
    # timestamp must not run ahead of the local clock by more than the bound
    if header.timestamp > now + params.max_future_block_time:
        raise HeaderError("header.timestamp_future", f"{header.timestamp} > {now}")
    # the target must equal the difficulty rule's output
    if header.target != expected_target:
        raise HeaderError("header.target", f"target {header.target:#x} != {expected_target:#x}")


def check_certificate(header: BlockHeader) -> int:
    """PoUW rules: the certificate verifies, beats the target, and is bound to this header."""
    shape = PouwParams(m=header.m, k=header.k, n=header.n, r=header.r)
    commitment = header_commitment(header)
    # the job shape must be within the PoUW bounds
    try:
        shape.validate()
    except ValueError as exc:
        raise CertificateRuleError("certificate.shape", str(exc)) from exc
    # the certificate must decode canonically
    try:
        cert = Certificate.decode(header.certificate)
    except ValueError as exc:
        raise CertificateRuleError("certificate.decode", str(exc)) from exc
    # the certificate's job shape must be the header's
    if cert.params != shape:
        raise CertificateRuleError("certificate.shape_mismatch")
    # the certificate's operand roots must be the header's
    if (cert.root_a, cert.root_b) != (header.root_a, header.root_b):
        raise CertificateRuleError("certificate.roots_mismatch")
    # the certificate must commit to this header
    if cert.commitment != commitment:
        raise CertificateRuleError("certificate.commitment")
    # the certificate must be mined at the header's target
    if cert.target != header.target:
        raise CertificateRuleError("certificate.target")
    # the certificate must verify and its ticket must beat the target
    try:
        return verify_certificate(cert, commitment=commitment, target=header.target)
    except ValueError as exc:
        raise CertificateRuleError("certificate.invalid", str(exc)) from exc


def check_body(block: Block, *, params: ChainParams) -> None:
    """Body rules that need no state."""
    # the block's canonical encoding must fit the size limit
    size = len(block.encode())
    if size > params.max_block_size:
        raise BodyError("body.size", f"{size} > {params.max_block_size} bytes")
    ids = [tx.id() for tx in block.transactions]
    # a transaction may appear only once
    if len(set(ids)) != len(ids):
        raise BodyError("body.duplicate_tx")
    # the transactions root must commit to exactly these transactions
    if block.header.tx_root != transactions_root(block.transactions):
        raise BodyError("body.tx_root")


def connect_block(state: State, block: Block, *, params: ChainParams,
                  signatures_verified: bool = False,
                  recent_block_ids: Sequence[bytes] = ()) -> BlockUndo:
    """Apply the block's transactions and reward; the result must match the state root.

    On any failure the state is restored to what it was and the error propagates.
    ``signatures_verified``: the caller checked every transaction signature beforehand (in
    parallel); pass it only when all of them verified, so the outcome is unchanged.
    ``recent_block_ids``: the chain's latest block ids ending at the parent, newest first
    (`consensus.transition.apply_transaction`; calibrations name a seed among them).
    """
    header = block.header
    state.begin_block()
    try:
        apply_block_transactions(
            state, block.transactions, height=header.height, miner=header.miner, params=params,
            signatures_verified=signatures_verified, parent_id=header.parent_hash,
            recent_block_ids=recent_block_ids,
        )
        # the post-state root must equal the header's state root
        if state.root() != header.state_root:
            raise StateRootError("state.root", f"computed {state.root().hex()}")
    except BaseException:
        state.abort_block()
        raise
    return state.end_block()


def disconnect_block(state: State, undo: BlockUndo) -> None:
    """Undo a connected block (reorgs): the state root returns exactly to its prior value."""
    state.apply_undo(undo)


def validate_block(
    state: State,
    block: Block,
    *,
    parent: BlockHeader | None,
    recent_timestamps: Sequence[int],
    now: int,
    expected_target: int,
    params: ChainParams,
    signatures_verified: bool = False,
    recent_block_ids: Sequence[bytes] = (),
) -> BlockUndo:
    """Every rule, cheapest first; connects the block to ``state`` and returns its undo.
    ``recent_block_ids``: the latest block ids ending at the parent (`connect_block`)."""
    check_header(
        block.header,
        parent=parent,
        recent_timestamps=recent_timestamps,
        now=now,
        expected_target=expected_target,
        params=params,
    )
    check_body(block, params=params)
    check_certificate(block.header)
    return connect_block(state, block, params=params, signatures_verified=signatures_verified,
                         recent_block_ids=recent_block_ids)
