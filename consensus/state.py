"""Chain state over a key-value store, its incremental root, undo data, and the transition.

Layout (keys are raw bytes; ``addr`` is a 32-byte Ed25519 public key)::

    acct/<addr>   Account(balance, nonce)          absent == zero account
    stake/<addr>  StakeRecord(bonded, unbonding)   absent == no stake
    node/<addr>   SwarmNode(models, endpoint)      absent == not registered
    rep/<addr>    Reputation(score)                absent == 0
    \\x00lthash    the 2048-byte LtHash lane vector (meta: not itself hashed)

Every write goes through `State._write`, which updates the LtHash lanes (subtract the old
pair, add the new one) and appends the previous value to a journal. The journal gives both
transaction atomicity (`snapshot`/`revert`: a failed transaction leaves no trace) and block
undo data (`begin_block`/`end_block` -> `BlockUndo`, `apply_undo` restores the exact root).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Annotated, ClassVar

from consensus.encoding import Canonical, FixedBytes, ListOf, Nested, UInt, VarBytes
from consensus.interfaces import KeyValueStore
from consensus.lthash import LANE_BYTES, LtHash
from consensus.params import ChainParams
from consensus.records import Account, Reputation, StakeRecord, SwarmNode
from consensus.tx import Transaction
from contracts import PAYLOAD_KINDS, TxContext
from contracts.bank import credit, debit
from contracts.base import MAX_U64, require

ACCOUNT_PREFIX = b"acct/"
STAKE_PREFIX = b"stake/"
NODE_PREFIX = b"node/"
REPUTATION_PREFIX = b"rep/"
META_PREFIX = b"\x00"
LANES_KEY = META_PREFIX + b"lthash"


def _key(prefix: bytes, address: bytes) -> bytes:
    if type(address) is not bytes or len(address) != 32:
        raise ValueError("addresses are 32-byte public keys")
    return prefix + address


@dataclasses.dataclass(frozen=True, order=True)
class UndoEntry(Canonical):
    """Value of ``key`` before the block (``existed`` = 0 means the key was absent)."""

    TAG: ClassVar[bytes] = b"pouw/undoentry"
    key: Annotated[bytes, VarBytes(256)]
    existed: Annotated[int, UInt(1)]
    value: Annotated[bytes, VarBytes(1 << 20)]


@dataclasses.dataclass(frozen=True)
class BlockUndo(Canonical):
    """Everything needed to disconnect a block: prior values of touched keys + prior lanes."""

    TAG: ClassVar[bytes] = b"pouw/undo"
    MAX_SIZE: ClassVar[int] = 1 << 28
    entries: Annotated[tuple[UndoEntry, ...], ListOf(Nested(UndoEntry), 1 << 22)]
    lanes: Annotated[bytes, FixedBytes(LANE_BYTES)]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A point to `State.revert` to: journal length and the lanes at that time."""

    journal_length: int
    lanes: bytes


class State:
    """Typed, root-maintaining view of the state stored in ``kv``.

    ``kv`` is any `KeyValueStore` whose reads see its own writes (a dict, or a LevelDB write
    batch wrapper in the node). The lane vector lives in memory while blocks apply and is
    written under `LANES_KEY` by `commit` (called by `end_block`).
    """

    def __init__(self, kv: KeyValueStore) -> None:
        self.kv = kv
        stored = kv.get(LANES_KEY)
        self.lthash = LtHash(stored)
        self._journal: list[tuple[bytes, bytes | None]] = []
        self._block_start: Snapshot | None = None

    # -- raw access ---------------------------------------------------------------------
    def _write(self, key: bytes, value: bytes | None) -> None:
        """Set (or delete, if None) ``key``, updating lanes and journal."""
        if key.startswith(META_PREFIX):
            raise ValueError("meta keys are not state")
        old = self.kv.get(key)
        if old == value:
            return
        self._journal.append((key, old))
        if old is not None:
            self.lthash.remove(key, old)
        if value is None:
            self.kv.delete(key)
        else:
            self.lthash.add(key, value)
            self.kv.put(key, value)

    def _raw_restore(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.kv.delete(key)
        else:
            self.kv.put(key, value)

    # -- typed records ------------------------------------------------------------------
    def account(self, address: bytes) -> Account:
        raw = self.kv.get(_key(ACCOUNT_PREFIX, address))
        return Account() if raw is None else Account.decode(raw)

    def set_account(self, address: bytes, account: Account) -> None:
        value = None if account == Account() else account.encode()
        self._write(_key(ACCOUNT_PREFIX, address), value)

    def stake(self, address: bytes) -> StakeRecord:
        raw = self.kv.get(_key(STAKE_PREFIX, address))
        return StakeRecord() if raw is None else StakeRecord.decode(raw)

    def set_stake(self, address: bytes, record: StakeRecord) -> None:
        value = None if record.is_empty() else record.encode()
        self._write(_key(STAKE_PREFIX, address), value)

    def swarm_node(self, address: bytes) -> SwarmNode | None:
        raw = self.kv.get(_key(NODE_PREFIX, address))
        return None if raw is None else SwarmNode.decode(raw)

    def set_swarm_node(self, address: bytes, node: SwarmNode | None) -> None:
        self._write(_key(NODE_PREFIX, address), None if node is None else node.encode())

    def reputation(self, address: bytes) -> int:
        raw = self.kv.get(_key(REPUTATION_PREFIX, address))
        return 0 if raw is None else Reputation.decode(raw).score

    def set_reputation(self, address: bytes, score: int) -> None:
        value = None if score == 0 else Reputation(score=score).encode()
        self._write(_key(REPUTATION_PREFIX, address), value)

    # -- root ---------------------------------------------------------------------------
    def root(self) -> bytes:
        """The state root: BLAKE2b-256 of the LtHash lanes."""
        return self.lthash.root()

    def commit(self) -> None:
        """Persist the lane vector (the root survives a restart without a rescan)."""
        self.kv.put(LANES_KEY, self.lthash.to_bytes())

    # -- atomicity and undo -------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return Snapshot(len(self._journal), self.lthash.to_bytes())

    def revert(self, snapshot: Snapshot) -> None:
        """Undo every write since ``snapshot`` (newest first)."""
        while len(self._journal) > snapshot.journal_length:
            key, old = self._journal.pop()
            self._raw_restore(key, old)
        self.lthash = LtHash(snapshot.lanes)

    def begin_block(self) -> None:
        """Start recording undo data for one block."""
        self._journal.clear()
        self._block_start = self.snapshot()

    def end_block(self) -> BlockUndo:
        """Finish the block: persist lanes, return its undo data (first prior value per key)."""
        if self._block_start is None:
            raise RuntimeError("end_block without begin_block")
        first: dict[bytes, bytes | None] = {}
        for key, old in self._journal:
            first.setdefault(key, old)
        undo = BlockUndo(
            entries=tuple(
                sorted(UndoEntry(k, int(v is not None), v or b"") for k, v in first.items())
            ),
            lanes=self._block_start.lanes,
        )
        self._journal.clear()
        self._block_start = None
        self.commit()
        return undo

    def abort_block(self) -> None:
        """Discard a block that failed half way: restore the state at `begin_block`."""
        if self._block_start is not None:
            self.revert(self._block_start)
            self._block_start = None
        self._journal.clear()

    def apply_undo(self, undo: BlockUndo) -> None:
        """Disconnect a block: restore every touched key and the exact prior lanes."""
        for entry in undo.entries:
            self._raw_restore(entry.key, entry.value if entry.existed else None)
        self.lthash = LtHash(undo.lanes)
        self._journal.clear()
        self.commit()


def root_from_items(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Recompute the state root from scratch over all (key, value) pairs (audits, tests)."""
    h = LtHash()
    for key, value in items:
        if not key.startswith(META_PREFIX):
            h.add(key, value)
    return h.root()


# -- the state transition ------------------------------------------------------------------
def apply_transaction(
    state: State, tx: Transaction, *, height: int, params: ChainParams
) -> int:
    """Apply one transaction atomically and return its fee; raise `TransactionError`.

    On failure nothing the transaction wrote remains (block builders can skip it).
    """
    snapshot = state.snapshot()
    try:
        _apply_transaction(state, tx, height=height, params=params)
    except BaseException:
        state.revert(snapshot)
        raise
    return tx.fee


def _apply_transaction(state: State, tx: Transaction, *, height: int, params: ChainParams) -> None:
    sender = state.account(tx.sender)
    kind = PAYLOAD_KINDS.get(type(tx.payload).KIND_ID)
    # the transaction must be for this chain
    require(tx.chain_id == params.chain_id, "tx.chain_id", f"chain {tx.chain_id}")
    # the payload kind must be registered
    require(kind is not None and kind.cls is type(tx.payload), "tx.payload_kind")
    # the signature must verify over the canonical unsigned bytes
    tx.verify_signature()
    # nonce must be the sender's next nonce
    require(tx.nonce == sender.nonce, "tx.nonce", f"expected {sender.nonce}, got {tx.nonce}")
    # the nonce must not overflow
    require(sender.nonce < MAX_U64, "tx.nonce_overflow")
    # the sender must afford the fee
    debit(state, tx.sender, tx.fee, rule="tx.insufficient_fee_balance")
    state.set_account(
        tx.sender, dataclasses.replace(state.account(tx.sender), nonce=sender.nonce + 1)
    )
    assert kind is not None
    kind.apply(state, tx.payload, TxContext(sender=tx.sender, height=height, params=params))


def apply_block_transactions(
    state: State,
    transactions: Sequence[Transaction],
    *,
    height: int,
    miner: bytes,
    params: ChainParams,
) -> int:
    """Apply a block's transactions in order, then pay the miner subsidy + fees.

    Any invalid transaction invalidates the block (the error propagates; the caller aborts
    the block). Returns the total fees.
    """
    fees = 0
    for tx in transactions:
        fees += apply_transaction(state, tx, height=height, params=params)
    # the block reward (subsidy + fees) must fit the miner's balance
    credit(state, miner, params.block_subsidy + fees, rule="block.reward_overflow")
    return fees
