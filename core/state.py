"""Chain state over a key-value store, its incremental root and undo data (the transition
that changes it is `consensus.transition`).

Layout (keys are raw bytes; ``addr`` is a 32-byte Ed25519 public key)::

    acct/<addr>   Account(balance, nonce)          absent == zero account
    stake/<addr>  StakeRecord(bonded, unbonding)   absent == no stake
    node/<addr>   SwarmNode(models, endpoint)      absent == not registered
    rep/<addr>    Reputation(score)                absent == 0
    \\x00lthash    the 2048-byte LtHash lane vector (meta: not itself hashed)

Every write goes through `State._write`, which stores the new value, appends the previous
one to a journal and marks the key for the LtHash (subtract the old pair, add the new one:
folded lazily and vectorised, once per key, when the root is needed). The journal gives both
transaction atomicity (`snapshot`/`revert`: a failed transaction leaves no trace) and block
undo data (`begin_block`/`end_block` -> `BlockUndo`, `apply_undo` restores the exact root).

Speed without trusting less: records the state wrote itself are read back from a
`RecordCache` (valid only while the stored bytes are identical), bytes it has not seen are
decoded with the full canonical check; the chain store shares one cache, and one LtHash
`ElementCache`, across blocks.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterable
from typing import Annotated, ClassVar, TypeVar

from core.encoding import Canonical, FixedBytes, ListOf, Nested, UInt, VarBytes
from core.interfaces import KeyValueStore
from core.lthash import LANE_BYTES, ElementCache, LtHash
from core.records import Account, Reputation, StakeRecord, SwarmNode

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
    MEMOISE: ClassVar[bool] = False
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
    """A point to `State.revert` to: the journal length at that time.

    (The lanes need no copy: every write is journalled and the lanes follow the stored
    values, see `State`.)
    """

    journal_length: int


# Decoded records a `RecordCache` keeps (the chain store's is shared by its per-block views).
# What for: the records recent blocks read and write (their senders' and recipients'
# accounts, stakes, swarm records), so the next block's reads of the same keys skip the
# canonical decode; 32,768 hold ~16 blocks of 1,000 transfers (bench/chain_validate.py). An
# entry holds ~400 B (an account: key, stored bytes, decoded record, the table's share;
# tracemalloc in tests/core/test_fastpaths.py), so ~13 MiB full: at 1 << 18 it could fill
# over hours of new keys to ~100 MiB (issue 12's soak). Forgetting costs one decode when an
# older key is read.
RECORD_CACHE_ENTRIES = 1 << 15


class RecordCache:
    """Decoded state records by key, each valid only while the stored bytes are unchanged.

    A read looks the key up and uses the cached record only if its bytes equal the bytes the
    store holds now, so the cache can never serve a stale value and needs no invalidation; it
    can be shared by several `State` views (the chain store keeps one across blocks). Records
    the state itself writes are cached with their encoding, so reading back one's own writes
    never decodes; bytes not seen before are decoded with the full canonical check.
    """

    def __init__(self, max_entries: int = RECORD_CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[bytes, object]] = OrderedDict()  # oldest first

    def get(self, key: bytes, raw: bytes) -> object | None:
        hit = self._entries.get(key)
        if hit is not None and hit[0] == raw:
            return hit[1]
        return None

    def put(self, key: bytes, raw: bytes, record: object) -> None:
        entries = self._entries
        entries[key] = (raw, record)
        if len(entries) > self.max_entries:
            entries.popitem(last=False)  # oldest inserted first

    def __len__(self) -> int:
        return len(self._entries)


_ZERO_ACCOUNT = Account()  # what an absent account reads as
R = TypeVar("R", bound=Canonical)


class State:
    """Typed, root-maintaining view of the state stored in ``kv``.

    ``kv`` is any `KeyValueStore` whose reads see its own writes (a dict, or a LevelDB write
    batch wrapper in the node). The lane vector lives in memory while blocks apply and is
    written under `LANES_KEY` by `commit` (called by `end_block`).

    Lane updates are deferred: the state remembers, for each key written since the last fold,
    the value the lanes still account for, and `_fold` (on `root`, `commit`, `lthash`) moves
    the lanes from those values to the current ones in one vectorised step. A key written
    many times in a block costs one removal and one addition, and a key restored to its
    accounted value costs nothing. The result equals applying every write one by one
    (LtHash is a sum, so order and intermediate values cancel out).
    """

    def __init__(self, kv: KeyValueStore, *, records: RecordCache | None = None,
                 elements: ElementCache | None = None) -> None:
        self.kv = kv
        self._lanes = LtHash(kv.get(LANES_KEY))
        # key -> the value (None: absent) the lanes account for, for keys changed since
        # the last fold; invariant: folded lanes == LtHash of the stored (key, value) pairs
        self._unfolded: dict[bytes, bytes | None] = {}
        self._records = RecordCache() if records is None else records
        self._elements = ElementCache() if elements is None else elements
        self._journal: list[tuple[bytes, bytes | None]] = []
        self._block_lanes: bytes | None = None

    # -- raw access ---------------------------------------------------------------------
    def _store(self, key: bytes, old: bytes | None, value: bytes | None) -> None:
        """Change ``key`` from ``old`` (its current value) to ``value``; lanes follow lazily."""
        if key not in self._unfolded:
            self._unfolded[key] = old
        if value is None:
            self.kv.delete(key)
        else:
            self.kv.put(key, value)

    def _write(self, key: bytes, value: bytes | None) -> None:
        """Set (or delete, if None) ``key``, journalling its previous value."""
        if key.startswith(META_PREFIX):
            raise ValueError("meta keys are not state")
        old = self.kv.get(key)
        if old == value:
            return
        self._journal.append((key, old))
        self._store(key, old, value)

    def _raw_restore(self, key: bytes, value: bytes | None) -> None:
        old = self.kv.get(key)
        if old != value:
            self._store(key, old, value)

    def _fold(self) -> None:
        """Bring the lanes up to date with every write since the last fold."""
        if not self._unfolded:
            return
        elements = self._elements
        added: list[bytes] = []
        removed: list[bytes] = []
        for key, accounted in self._unfolded.items():
            current = self.kv.get(key)
            if current == accounted:
                continue
            if accounted is not None:
                removed.append(elements.element(key, accounted))
            if current is not None:
                added.append(elements.computed(key, current))
        self._unfolded.clear()
        self._lanes.update_elements(add=added, remove=removed)

    def _reset_lanes(self, lanes: bytes) -> None:
        """Declare ``lanes`` to be the LtHash of the stored pairs as they are now."""
        self._lanes = LtHash(lanes)
        self._unfolded.clear()

    @property
    def lthash(self) -> LtHash:
        """The up-to-date lane vector (do not mutate it: write through the setters)."""
        self._fold()
        return self._lanes

    # -- typed records ------------------------------------------------------------------
    def record(self, key: bytes, cls: type[R]) -> R | None:
        """The ``cls`` record stored under ``key`` (None if absent), through the record cache.

        For contracts with their own key prefixes; the typed accessors below use it too.
        """
        return self._record(key, cls)

    def set_record(self, key: bytes, record: Canonical | None) -> None:
        """Store ``record`` under ``key`` (None deletes), keeping root, journal and cache."""
        self._set_record(key, record)

    def _record(self, key: bytes, cls: type[R]) -> R | None:
        raw = self.kv.get(key)
        if raw is None:
            return None
        record = self._records.get(key, raw)
        if type(record) is cls:
            return record
        decoded = cls.decode(raw)
        self._records.put(key, raw, decoded)
        return decoded

    def _set_record(self, key: bytes, record: Canonical | None) -> None:
        if record is None:
            self._write(key, None)
            return
        value = record.encode()
        self._write(key, value)
        self._records.put(key, value, record)

    def account(self, address: bytes) -> Account:
        record = self._record(_key(ACCOUNT_PREFIX, address), Account)
        return _ZERO_ACCOUNT if record is None else record

    def set_account(self, address: bytes, account: Account) -> None:
        self._set_record(_key(ACCOUNT_PREFIX, address),
                         None if account.is_empty() else account)

    def stake(self, address: bytes) -> StakeRecord:
        record = self._record(_key(STAKE_PREFIX, address), StakeRecord)
        return StakeRecord() if record is None else record

    def set_stake(self, address: bytes, record: StakeRecord) -> None:
        self._set_record(_key(STAKE_PREFIX, address), None if record.is_empty() else record)

    def swarm_node(self, address: bytes) -> SwarmNode | None:
        return self._record(_key(NODE_PREFIX, address), SwarmNode)

    def set_swarm_node(self, address: bytes, node: SwarmNode | None) -> None:
        self._set_record(_key(NODE_PREFIX, address), node)

    def reputation(self, address: bytes) -> int:
        record = self._record(_key(REPUTATION_PREFIX, address), Reputation)
        return 0 if record is None else record.score

    def set_reputation(self, address: bytes, score: int) -> None:
        self._set_record(_key(REPUTATION_PREFIX, address),
                         None if score == 0 else Reputation(score=score))

    # -- root ---------------------------------------------------------------------------
    def root(self) -> bytes:
        """The state root: BLAKE2b-256 of the LtHash lanes."""
        return self.lthash.root()

    def commit(self) -> None:
        """Persist the lane vector (the root survives a restart without a rescan)."""
        self.kv.put(LANES_KEY, self.lthash.to_bytes())

    # -- atomicity and undo -------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        return Snapshot(len(self._journal))

    def revert(self, snapshot: Snapshot) -> None:
        """Undo every write since ``snapshot`` (newest first); the lanes follow."""
        while len(self._journal) > snapshot.journal_length:
            key, old = self._journal.pop()
            self._raw_restore(key, old)

    def begin_block(self) -> None:
        """Start recording undo data for one block."""
        self._journal.clear()
        self._block_lanes = self.lthash.to_bytes()

    def end_block(self) -> BlockUndo:
        """Finish the block: persist lanes, return its undo data (first prior value per key)."""
        if self._block_lanes is None:
            raise RuntimeError("end_block without begin_block")
        first: dict[bytes, bytes | None] = {}
        for key, old in self._journal:
            first.setdefault(key, old)
        # keys are unique, so key order is the UndoEntry order
        undo = BlockUndo(
            entries=tuple(
                UndoEntry(k, int(v is not None), v or b"")
                for k, v in [(key, first[key]) for key in sorted(first)]
            ),
            lanes=self._block_lanes,
        )
        self._journal.clear()
        self._block_lanes = None
        self.commit()
        return undo

    def abort_block(self) -> None:
        """Discard a block that failed half way: restore the state at `begin_block`."""
        if self._block_lanes is not None:
            self.revert(Snapshot(0))
            self._block_lanes = None
        self._journal.clear()

    def apply_undo(self, undo: BlockUndo) -> None:
        """Disconnect a block: restore every touched key and the exact prior lanes."""
        for entry in undo.entries:
            if entry.existed:
                self.kv.put(entry.key, entry.value)
            else:
                self.kv.delete(entry.key)
        self._reset_lanes(undo.lanes)
        self._journal.clear()
        self.commit()


def root_from_items(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Recompute the state root from scratch over all (key, value) pairs (audits, tests)."""
    h = LtHash()
    for key, value in items:
        if not key.startswith(META_PREFIX):
            h.add(key, value)
    return h.root()
