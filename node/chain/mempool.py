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
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from consensus.transition import apply_transaction
from consensus.tx import MAX_TX_SIZE, Transaction
from contracts.registry import SubmitCalibration
from core.errors import ConsensusError
from core.interfaces import KeyValueStore
from core.params import ChainParams
from core.state import State
from node.chain.db import Overlay, ReadOnlyKV


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


class Mempool:
    """Pending transactions keyed by id and by (sender, nonce)."""

    def __init__(self, *, params: ChainParams, config: MempoolConfig | None = None) -> None:
        self.params = params
        self.config = config or MempoolConfig()
        self._by_id: dict[bytes, Entry] = {}
        # sender -> nonce -> entry; each sender's nonces are contiguous from its state nonce
        self._by_sender: dict[bytes, dict[int, Entry]] = {}

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
        chain = self._by_sender.get(sender, {})
        return [chain[n].tx for n in sorted(chain)]

    def transactions(self) -> list[Transaction]:
        return [e.tx for e in self._by_id.values()]

    # -- admission -----------------------------------------------------------------------------

    def add(self, tx: Transaction, *, tip: TipView, now: int) -> bytes:
        """Admit ``tx`` against ``tip`` (state and next height); return its id.

        Raises `MempoolError` with the reason: ``known``, ``too_large``, ``invalid:<rule>``,
        ``nonce_gap``, ``underpriced_replacement``, ``sender_limit``, ``pool_full``.
        """
        encoded = tx.encode()
        tx_id = tx.id()
        # a transaction already pending is not added twice
        if tx_id in self._by_id:
            raise MempoolError("known")
        # the canonical encoding must fit the consensus size limit
        if len(encoded) > MAX_TX_SIZE:
            raise MempoolError("too_large")
        entry = Entry(tx=tx, tx_id=tx_id, size=len(encoded), added_at=now)
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
            if len(chain) >= self.config.max_per_sender:
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
            del self._by_id[replaced.tx_id]
        for e in dropped:
            self._by_id.pop(e.tx_id, None)
        self._by_sender[tx.sender] = valid
        self._by_id[tx_id] = entry
        return tx_id

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
            del self._by_id[e.tx_id]
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
        return removed

    def remove_confirmed(self, transactions: Iterable[Transaction], *,
                         tip: TipView) -> None:
        """After a block connects: drop its transactions and whatever they made invalid."""
        senders: set[bytes] = set()
        for tx in transactions:
            senders.add(tx.sender)
            entry = self._by_id.get(tx.id())
            if entry is not None:
                del self._by_id[entry.tx_id]
                self._by_sender[tx.sender].pop(tx.nonce, None)
        # a calibration stays valid while its seed block is one of the chain's last
        # CALIBRATION_WINDOW blocks: each new block may push it out (or a reorg drop it)
        senders.update(e.tx.sender for e in self._by_id.values()
                       if isinstance(e.tx.payload, SubmitCalibration))
        self.revalidate(senders, tip=tip)

    def revalidate(self, senders: Iterable[bytes], *, tip: TipView) -> None:
        """Re-check the given senders' chains against a new tip state."""
        for sender in senders:
            chain = self._by_sender.get(sender)
            if chain is None:
                continue
            valid, _ = self._validate_chain(sender, chain, tip)
            for n, e in list(chain.items()):
                if n not in valid:
                    del self._by_id[e.tx_id]
            if valid:
                self._by_sender[sender] = valid
            else:
                del self._by_sender[sender]

    def readd(self, transactions: Sequence[Transaction], *, tip: TipView,
              now: int) -> list[bytes]:
        """After a reorg: put transactions of disconnected blocks back if still valid.

        ``transactions`` are in block order (so each sender's nonces ascend). Returns the ids
        admitted; the others are silently dropped (already confirmed or now invalid).
        """
        admitted: list[bytes] = []
        for tx in transactions:
            try:
                admitted.append(self.add(tx, tip=tip, now=now))
            except MempoolError:
                continue
        return admitted

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
