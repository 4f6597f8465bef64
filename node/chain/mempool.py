"""The mempool: valid pending transactions, best fee rate first.

Admission runs the real consensus transition (``apply_transaction``) on a throwaway overlay of
the tip state, replaying the sender's pending transactions first, so a transaction is admitted
only if it would apply after them. Pending transactions of *other* senders are not replayed:
a transaction that needs unconfirmed incoming funds waits for a block (conservative).

Policy (geth-like defaults, scaled down): per-sender and global count limits, a 3 h lifetime,
replacement of the same (sender, nonce) only with a fee bump of at least 10 %, and, when the
pool is full, eviction of the cheapest tail transaction if the newcomer pays a better rate.
Fee rate is fee per canonical byte, compared by cross-multiplication (integers only).
Time is always passed in (``now``); the pool never reads a clock.

Spam: a transaction must pay at least ``min_fee_per_kb`` per 1000 canonical bytes (rounded
up: every transaction pays at least 1 when the rate is positive), or it is refused with
``fee_too_low`` naming the minimum. This is relay policy, not consensus: a block may still
carry a cheaper transaction.

Durability: with a `MempoolJournal` (the node's LevelDB) every admitted transaction is
written before `add` returns (one write batch with whatever it replaced or evicted), and
every removal (mined, replaced, evicted, expired, invalidated) is deleted in the same kind
of batch; `load_journal` re-admits the journal against the current tip on start and drops
what no longer applies, with a log line each (Bitcoin Core's ``mempool.dat``, written as it
changes instead of at shutdown). The write reaches the OS before `add` returns (it survives
a killed process); it is fsynced either at once (``sync``, ~5 ms an admission, measured in
bench/mempool_journal.py) or by a group commit (`JournalFlusher`: one fsync for everything
written in the last interval), after which it survives a power cut too.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import msgpack

from consensus.transition import apply_transaction
from consensus.tx import MAX_TX_SIZE, Transaction
from contracts.registry import SubmitCalibration
from core.errors import ConsensusError
from core.interfaces import KeyValueStore
from core.params import ChainParams
from core.state import State
from node.chain.db import Database, Overlay, ReadOnlyKV
from node.logging import get_logger, log_event
from node.periodic import PeriodicWork

log = get_logger("mempool")

# the default relay fee rate (fee units per 1000 canonical bytes): every transaction pays at
# least 1, and the dev chain's usual fee of 10 covers the largest (MAX_TX_SIZE) transaction
DEFAULT_MIN_FEE_PER_KB = 1
JOURNAL = b"mp/"  # mp/<tx id> -> msgpack [added_at, canonical transaction]


class MempoolError(Exception):
    """A transaction was not admitted; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}" if message else reason)


@dataclass(frozen=True, kw_only=True)
class MempoolConfig:
    """Limits of the pool."""

    max_per_sender: int = 16
    max_total: int = 5120
    lifetime: int = 3 * 3600  # seconds
    replace_bump_percent: int = 10
    min_fee_per_kb: int = DEFAULT_MIN_FEE_PER_KB  # relay policy (module docstring)

    def min_fee(self, size: int) -> int:
        """The least fee a transaction of ``size`` canonical bytes must pay (rounded up)."""
        return -(-size * self.min_fee_per_kb // 1000)


@dataclass(frozen=True, kw_only=True)
class TipView:
    """What admission checks against: the tip state (read-only) and the next block height."""

    state_kv: ReadOnlyKV
    height: int
    parent_id: bytes = b""  # the tip's id: the next block's parent (calibration seeds)
    # the tip's id and its ancestors', newest first (`ChainStore.recent_block_ids`): a
    # calibration's seed block must be one of them
    recent_block_ids: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Entry:
    """A pending transaction with what the pool needs to rank it."""

    tx: Transaction
    tx_id: bytes
    size: int
    added_at: int

    @property
    def fee(self) -> int:
        return self.tx.fee

    def rate_below(self, other: Entry) -> bool:
        """Strictly lower fee per byte than ``other`` (fee_a/size_a < fee_b/size_b)."""
        return self.tx.fee * other.size < other.tx.fee * self.size


@dataclass
class _Candidate:
    """Heap item for block selection: best rate first, then earliest added, then id."""

    neg_rate_num: int
    rate_den: int = field(compare=False)
    added_at: int = 0
    tx_id: bytes = b""

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, _Candidate):
            return NotImplemented
        # self better than other: fee_s/size_s > fee_o/size_o
        left = -self.neg_rate_num * other.rate_den
        right = -other.neg_rate_num * self.rate_den
        if left != right:
            return left > right
        return (self.added_at, self.tx_id) < (other.added_at, other.tx_id)


class MempoolJournal:
    """The pool's transactions in the node's LevelDB (``mp/<id>``), so they outlive a crash.

    ``sync``: admissions are fsynced before `Mempool.add` returns (they survive a power cut);
    without it they reach the OS at once (they survive a killed process). Removals are never
    fsynced on their own: one lost in a power cut brings back a transaction that the load
    revalidates (a mined one is then stale and dropped).
    """

    def __init__(self, db: Database, *, sync: bool = True) -> None:
        self.db = db
        self.sync = sync
        self.writes = 0  # write batches (metrics, benchmarks)
        self.fsyncs = 0  # group commits that had something to make durable
        self._dirty = False  # admissions written but not fsynced (group commit)
        self._lock = threading.Lock()

    def write(self, puts: Sequence[Entry], deletes: Iterable[bytes]) -> None:
        """One atomic batch: ``puts`` written, ``deletes`` (tx ids) removed."""
        writes: dict[bytes, bytes | None] = {JOURNAL + tx_id: None for tx_id in deletes}
        for entry in puts:
            writes[JOURNAL + entry.tx_id] = msgpack.packb([entry.added_at, entry.tx.encode()],
                                                          use_bin_type=True)
        if writes:
            with self._lock:
                self.db.write_raw(writes, sync=self.sync and bool(puts))
                self.writes += 1
                self._dirty = self._dirty or (bool(puts) and not self.sync)

    def flush(self) -> bool:
        """Group commit: fsync everything written so far (one empty synced batch carries
        LevelDB's log to disk); False if there was nothing to make durable."""
        with self._lock:
            if not self._dirty or self.db.closed:
                return False
            self.db.write_raw({}, sync=True)
            self._dirty = False
            self.fsyncs += 1
            return True

    def read(self) -> tuple[list[tuple[int, Transaction]], list[tuple[bytes, str]]]:
        """(added_at, transaction) of every readable entry, and (key, why) of the others."""
        entries: list[tuple[int, Transaction]] = []
        corrupt: list[tuple[bytes, str]] = []
        for key, value in self.db.iterate_prefix(JOURNAL):
            try:
                added_at, raw = msgpack.unpackb(value, raw=False, use_list=True)
                if type(added_at) is not int or type(raw) is not bytes:
                    raise ValueError("entry is not [added_at, transaction bytes]")
                tx = Transaction.decode(raw)
                if tx.id() != key[len(JOURNAL):]:
                    raise ValueError("the transaction's id is not its key")
            except (ValueError, TypeError, ConsensusError) as exc:
                corrupt.append((key, f"{type(exc).__name__}: {exc}"))
                continue
            entries.append((added_at, tx))
        return entries, corrupt

    def delete_keys(self, keys: Iterable[bytes]) -> None:
        """Remove raw journal keys (entries that could not be read)."""
        writes: dict[bytes, bytes | None] = dict.fromkeys(keys)
        if writes:
            self.db.write_raw(writes, sync=False)


class JournalFlusher(PeriodicWork):
    """The journal's group commit as a node service: every ``interval`` seconds, one fsync
    for whatever was admitted meanwhile; a last one when the node stops (before its
    database closes)."""

    def __init__(self, journal: MempoolJournal, *, interval: float) -> None:
        super().__init__(journal.flush, interval=interval, final=True)
        self.journal = journal


@dataclass(frozen=True)
class JournalLoad:
    """What `Mempool.load_journal` found: re-admitted count, and (id or key hex, reason) of
    every entry it dropped."""

    loaded: int
    dropped: list[tuple[str, str]]


class Mempool:
    """Pending transactions keyed by id and by (sender, nonce)."""

    def __init__(self, *, params: ChainParams, config: MempoolConfig | None = None,
                 journal: MempoolJournal | None = None) -> None:
        self.params = params
        self.config = config or MempoolConfig()
        self.journal = journal
        self._by_id: dict[bytes, Entry] = {}
        # sender -> nonce -> entry; each sender's nonces are contiguous from its state nonce
        self._by_sender: dict[bytes, dict[int, Entry]] = {}
        self._removed: list[bytes] = []  # ids removed since the last journal write

    # -- queries -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._by_id

    def get(self, tx_id: bytes) -> Transaction | None:
        entry = self._by_id.get(tx_id)
        return None if entry is None else entry.tx

    def pending_of(self, sender: bytes) -> list[Transaction]:
        """A sender's pending transactions in nonce order."""
        # Read from the event loop while the chain thread changes the pool: copy first (one C
        # call, atomic under the GIL); indexing the live dict raised KeyError when a nonce left
        # between listing and reading it.
        chain = dict(self._by_sender.get(sender, {}))
        return [entry.tx for _, entry in sorted(chain.items())]

    def transactions(self) -> list[Transaction]:
        return [e.tx for e in list(self._by_id.values())]  # a snapshot, as in `pending_of`

    # -- admission -----------------------------------------------------------------------------

    def add(self, tx: Transaction, *, tip: TipView, now: int) -> bytes:
        """Admit ``tx`` against ``tip`` (state and next height); return its id once it is
        journaled (with a journal: on disk).

        Raises `MempoolError` with the reason: ``known``, ``too_large``, ``fee_too_low``,
        ``invalid:<rule>``, ``nonce_gap``, ``underpriced_replacement``, ``sender_limit``,
        ``pool_full``.
        """
        entry = self._admit(tx, tip=tip, now=now)
        self._write_journal([entry])
        return entry.tx_id

    def _admit(self, tx: Transaction, *, tip: TipView, now: int,
               sender_limit: bool = True) -> Entry:
        """`add` without the journal write (callers write once for many). Without
        ``sender_limit`` (`load_journal`: transactions the pool or a block already took) a
        sender may hold more than ``max_per_sender``."""
        entry = self._entry(tx, now=now)
        tx_id = entry.tx_id
        chain = dict(self._by_sender.get(tx.sender, {}))
        replaced = chain.get(tx.nonce)
        if replaced is not None:
            # a replacement must pay at least replace_bump_percent more fee
            bump = 100 + self.config.replace_bump_percent
            if tx.fee * 100 < replaced.fee * bump:
                raise MempoolError("underpriced_replacement",
                                   f"fee {tx.fee} < {replaced.fee} + {bump - 100}%")
        else:
            # the sender may not exceed its pending limit
            if sender_limit and len(chain) >= self.config.max_per_sender:
                raise MempoolError("sender_limit")
        chain[tx.nonce] = entry
        valid, error = self._validate_chain(tx.sender, chain, tip)
        # the new transaction must itself apply after the sender's earlier ones
        if tx.nonce not in valid:
            raise error or MempoolError("invalid:tx.nonce")
        evict: Entry | None = None
        if replaced is None and len(self._by_id) >= self.config.max_total:
            evict = self._cheapest_tail(exclude=tx.sender)
            # when full, only a better fee rate than the cheapest tail gets in
            if evict is None or not evict.rate_below(entry):
                raise MempoolError("pool_full")
        if evict is not None:
            self._remove_from(evict.tx.sender, evict.tx.nonce)
        dropped = [e for n, e in chain.items() if n not in valid]
        if replaced is not None:
            self._forget(replaced.tx_id)
        for e in dropped:
            self._forget(e.tx_id)
        self._by_sender[tx.sender] = valid
        self._by_id[tx_id] = entry
        return entry

    def _entry(self, tx: Transaction, *, now: int) -> Entry:
        """The checks that need no state: new, within the size limit, paying the minimum."""
        encoded = tx.encode()
        tx_id = tx.id()
        # a transaction already pending is not added twice
        if tx_id in self._by_id:
            raise MempoolError("known")
        # the canonical encoding must fit the consensus size limit
        if len(encoded) > MAX_TX_SIZE:
            raise MempoolError("too_large")
        # relay policy: the fee must meet the node's minimum rate for this size
        least = self.config.min_fee(len(encoded))
        if tx.fee < least:
            raise MempoolError("fee_too_low",
                               f"fee {tx.fee} < minimum {least} for {len(encoded)} bytes "
                               f"(min_relay_fee_per_kb {self.config.min_fee_per_kb})")
        return Entry(tx=tx, tx_id=tx_id, size=len(encoded), added_at=now)

    def _forget(self, tx_id: bytes) -> None:
        """Drop an id from the index (its journal entry goes with the next write)."""
        if self._by_id.pop(tx_id, None) is not None:
            self._removed.append(tx_id)

    def _write_journal(self, added: Sequence[Entry] = ()) -> None:
        """Journal what changed since the last write: ``added`` entries still pending, and
        every removal."""
        removed, self._removed = self._removed, []
        if self.journal is None:
            return
        puts = [e for e in added if self._by_id.get(e.tx_id) is e]
        self.journal.write(puts, [i for i in removed if i not in self._by_id])

    def load_journal(self, *, tip: TipView, now: int,
                     returning: Sequence[Transaction] = ()) -> JournalLoad:
        """Start-up: re-admit the journaled transactions against ``tip`` in (sender, nonce)
        order with their first admission times; drop (from pool and journal, with a log
        line each) the unreadable, the expired and those that no longer apply.

        ``returning``: transactions of blocks a reorg disconnected before a crash let the pool
        take them back (`ChainStore.returning_blocks`). They are admitted with the journal, in
        the same nonce order (so a journaled k+1 after a returning k is no gap), and journaled;
        those that no longer apply (mostly: confirmed again on the new chain) are skipped
        without a log line, since they were never the pool's.
        """
        if self.journal is None:
            return JournalLoad(0, [])
        entries, corrupt = self.journal.read()
        dropped = [(key.hex(), f"corrupt: {why}") for key, why in corrupt]
        self.journal.delete_keys(key for key, _ in corrupt)
        candidates = [(added_at, tx, True) for added_at, tx in entries]
        seen = {tx.id() for _, tx in entries}
        for tx in returning:
            if tx.id() not in seen:
                seen.add(tx.id())
                candidates.append((now, tx, False))
        stale: list[bytes] = []
        readmitted: list[Entry] = []
        for added_at, tx, from_journal in sorted(
                candidates, key=lambda c: (c[1].sender, c[1].nonce, c[0])):
            reason = "expired" if now - added_at >= self.config.lifetime else ""
            if not reason:
                try:
                    entry = self._admit(tx, tip=tip, now=added_at, sender_limit=False)
                    if not from_journal:
                        readmitted.append(entry)
                    continue
                except MempoolError as exc:
                    reason = exc.reason
            if from_journal:
                stale.append(tx.id())
                dropped.append((tx.id().hex(), reason))
        self._removed.extend(stale)
        self._write_journal(readmitted)
        loaded = len(self._by_id)
        for key, reason in dropped:
            log_event(log, "mempool.journal_dropped", level=logging.WARNING, tx=key,
                      reason=reason)
        log_event(log, "mempool.journal_loaded", loaded=loaded, dropped=len(dropped),
                  returned=len(readmitted))
        return JournalLoad(loaded, dropped)

    def _validate_chain(self, sender: bytes, chain: dict[int, Entry],
                        tip: TipView) -> tuple[dict[int, Entry], MempoolError | None]:
        """Apply a sender's pending chain in nonce order on an overlay of the tip state.

        Returns the longest valid prefix (contiguous nonces from the account nonce) and the
        error that stopped it.
        """
        state = State(_as_kv(Overlay(tip.state_kv)))
        nonce = state.account(sender).nonce
        valid: dict[int, Entry] = {}
        stale: MempoolError | None = None
        for n in sorted(chain):
            entry = chain[n]
            # nonces already used on chain are stale
            if n < nonce:
                stale = MempoolError("invalid:tx.nonce", f"nonce {n} already used")
                continue
            # nonces must be contiguous: a gap cannot execute
            if n != nonce:
                return valid, MempoolError("nonce_gap", f"expected {nonce}, got {n}")
            try:
                apply_transaction(state, entry.tx, height=tip.height, params=self.params,
                                  parent_id=tip.parent_id,
                                  recent_block_ids=tip.recent_block_ids)
            except ConsensusError as exc:
                return valid, MempoolError(f"invalid:{exc.rule}", exc.message)
            valid[n] = entry
            nonce += 1
        return valid, stale

    def _cheapest_tail(self, *, exclude: bytes) -> Entry | None:
        """The lowest-rate transaction that is last in its sender's chain."""
        worst: Entry | None = None
        for sender, chain in self._by_sender.items():
            if sender == exclude or not chain:
                continue
            tail = chain[max(chain)]
            if worst is None or tail.rate_below(worst):
                worst = tail
        return worst

    def _remove_from(self, sender: bytes, nonce: int) -> list[Entry]:
        """Remove (sender, nonce) and every later nonce of the sender (they would gap)."""
        chain = self._by_sender.get(sender, {})
        removed = [chain.pop(n) for n in sorted(chain) if n >= nonce]
        for e in removed:
            self._forget(e.tx_id)
        if not chain:
            self._by_sender.pop(sender, None)
        return removed

    # -- chain events --------------------------------------------------------------------------

    def expire(self, *, now: int) -> list[Transaction]:
        """Drop transactions older than the lifetime (and the sender's later nonces)."""
        removed: list[Transaction] = []
        for sender in list(self._by_sender):
            chain = self._by_sender[sender]
            old = [n for n, e in chain.items() if now - e.added_at >= self.config.lifetime]
            if old:
                removed.extend(e.tx for e in self._remove_from(sender, min(old)))
        self._write_journal()
        return removed

    def remove_confirmed(self, transactions: Iterable[Transaction], *,
                         tip: TipView) -> None:
        """After a block connects: drop its transactions and whatever they made invalid."""
        self.apply_chain_update(transactions, [], tip=tip, now=0)

    def apply_chain_update(self, confirmed: Iterable[Transaction],
                           returning: Sequence[Transaction], *, tip: TipView,
                           now: int) -> list[bytes]:
        """After the best chain moved: drop the confirmed, put the returning back, revalidate.

        The returning transactions (of disconnected blocks, each sender's nonces ascending) go
        back before anything is revalidated: a sender whose nonce-k transaction returns keeps
        its pending k+1, which would otherwise look like a gap and be lost. Returns the ids
        re-admitted.
        """
        senders: set[bytes] = set()
        for tx in confirmed:
            senders.add(tx.sender)
            entry = self._by_id.get(tx.id())
            if entry is not None:
                self._forget(entry.tx_id)
                self._by_sender[tx.sender].pop(tx.nonce, None)
        readmitted = self.readd(returning, tip=tip, now=now) if returning else []
        senders.update(tx.sender for tx in returning)
        # a calibration stays valid while its seed block is one of the chain's last
        # CALIBRATION_WINDOW blocks: each new block may push it out (or a reorg drop it)
        senders.update(e.tx.sender for e in self._by_id.values()
                       if isinstance(e.tx.payload, SubmitCalibration))
        self.revalidate(senders, tip=tip)
        return [tx_id for tx_id in readmitted if tx_id in self._by_id]

    def revalidate(self, senders: Iterable[bytes], *, tip: TipView) -> None:
        """Re-check the given senders' chains against a new tip state."""
        for sender in senders:
            chain = self._by_sender.get(sender)
            if chain is None:
                continue
            valid, _ = self._validate_chain(sender, chain, tip)
            for n, e in list(chain.items()):
                if n not in valid:
                    self._forget(e.tx_id)
            if valid:
                self._by_sender[sender] = valid
            else:
                del self._by_sender[sender]
        self._write_journal()

    def readd(self, transactions: Sequence[Transaction], *, tip: TipView,
              now: int) -> list[bytes]:
        """After a reorg: put transactions of disconnected blocks back if still valid.

        Each sender's returning transactions go back together with its pending ones, and its
        chain is validated once. Re-admitting them one by one dropped the pending tail: with
        k and k+1 returning and k+2 pending, admitting k alone makes k+2 a gap (k+1 is not
        back yet), and admission drops what does not apply (bench/chaos.py's partition
        cycles lost accepted transactions this way, and only this way). Returns the ids
        admitted; the others are dropped (already confirmed, invalid on the new chain, or
        refused by the pool's policy).
        """
        by_sender: dict[bytes, list[Transaction]] = {}
        for tx in transactions:
            by_sender.setdefault(tx.sender, []).append(tx)
        admitted: list[Entry] = []
        for sender, returning in by_sender.items():
            admitted += self._readd_sender(sender, returning, tip=tip, now=now)
        self._write_journal(admitted)
        return [e.tx_id for e in admitted if e.tx_id in self._by_id]

    def _readd_sender(self, sender: bytes, returning: Sequence[Transaction], *, tip: TipView,
                      now: int) -> list[Entry]:
        """One sender's returning transactions merged into its pending chain (see `readd`);
        the entries admitted. A nonce already pending keeps its transaction (this one, or
        another with its nonce); limits as for admission (`_within_limits`)."""
        chain = dict(self._by_sender.get(sender, {}))
        fresh: dict[int, Entry] = {}
        for tx in returning:
            if tx.nonce in chain:
                continue
            try:
                entry = self._entry(tx, now=now)
            except MempoolError:
                continue  # e.g. below this node's relay fee (a block may carry it)
            chain[tx.nonce] = fresh[tx.nonce] = entry
        if not fresh:
            return []
        valid, _ = self._validate_chain(sender, chain, tip)
        kept = self._within_limits(valid, fresh, exclude=sender)
        for n, entry in chain.items():
            if n not in kept and n not in fresh:
                self._forget(entry.tx_id)  # pending, but no longer applies on this chain
        if kept:
            self._by_sender[sender] = kept
        else:
            self._by_sender.pop(sender, None)
        return [e for n, e in kept.items() if n in fresh]

    def _within_limits(self, valid: dict[int, Entry], fresh: dict[int, Entry], *,
                       exclude: bytes) -> dict[int, Entry]:
        """The prefix of a sender's ``valid`` chain the pool keeps, indexing the ``fresh``
        entries it takes: a full pool takes a fresh entry only in place of a cheaper tail of
        another sender (``exclude`` is this one). The per-sender limit is an admission rule
        and does not apply here: these transactions come back from disconnected blocks (a
        block took them) with the sender's pending ones after them (the pool took those);
        capping them dropped accepted transactions (bench/chaos.py: a node that mined 16
        blocks of one sender's transfers alone, then reorged, lost the sender's next one)."""
        kept: dict[int, Entry] = {}
        for n in sorted(valid):
            entry = valid[n]
            if n in fresh:
                if len(self._by_id) >= self.config.max_total:
                    evict = self._cheapest_tail(exclude=exclude)
                    if evict is None or not evict.rate_below(entry):
                        break  # this nonce and the later ones stay out
                    self._remove_from(evict.tx.sender, evict.tx.nonce)
                self._by_id[entry.tx_id] = entry
            kept[n] = entry
        return kept

    # -- block templates -----------------------------------------------------------------------

    def select(self, *, max_count: int, max_bytes: int) -> list[Transaction]:
        """Transactions for a block: best fee rate first, each sender's nonces in order."""
        heap: list[_Candidate] = []
        cursors: dict[bytes, list[Entry]] = {}
        for sender, chain in self._by_sender.items():
            ordered = [chain[n] for n in sorted(chain)]
            cursors[sender] = ordered
            heapq.heappush(heap, _candidate(ordered[0]))
        by_id = self._by_id
        chosen: list[Transaction] = []
        size = 0
        while heap and len(chosen) < max_count:
            best = by_id[heapq.heappop(heap).tx_id]
            if size + best.size > max_bytes:
                continue  # the rest of this sender's chain depends on it: skip the sender
            chosen.append(best.tx)
            size += best.size
            rest = cursors[best.tx.sender]
            rest.pop(0)
            if rest:
                heapq.heappush(heap, _candidate(rest[0]))
        return chosen


def _candidate(entry: Entry) -> _Candidate:
    return _Candidate(-entry.fee, entry.size, entry.added_at, entry.tx_id)


def _as_kv(overlay: Overlay) -> KeyValueStore:
    return overlay
