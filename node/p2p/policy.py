"""Misbehaviour policy: REJECT (disconnect and ban for a time) versus IGNORE (drop quietly).

Following consensus-specs' gossip rules: input that is provably bad (invalid block, bad
signature, bad PoUW proof, malformed or oversized frame, failed handshake proof) costs the
sender its connection and a ban by node id and address; input that is merely useless
(duplicate, unknown parent, a transaction that no longer fits our pool) is dropped without
penalty, because honest peers send such things all the time.

Bans outlive a restart: `BanList.attach` gives the list the node's LevelDB, where each ban is
kept under ``ban/<key>`` with its wall-clock deadline and reason until it expires or is
lifted. Rate limits (`TokenBucket`) throttle a peer that floods transactions or swarm
messages: the excess is dropped (IGNORE); a peer that keeps flooding far past its allowance
is banned like any other misbehaviour.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import time
from dataclasses import dataclass

import msgpack

from core.errors import (
    ConsensusError,
    EncodingError,
    ForkChoiceError,
    HeaderError,
    TransactionError,
)
from node.chain.db import Database
from node.chain.mempool import MempoolError
from node.logging import get_logger, log_event
from node.p2p.protocol import ProtocolError

log = get_logger("p2p")
BAN_PREFIX = b"ban/"  # ban/<key utf-8> -> msgpack [wall-clock deadline (float s), reason]


class Verdict(enum.Enum):
    """What a peer's input earns it."""
    ACCEPT = "accept"
    IGNORE = "ignore"
    REJECT = "reject"


class Judged(ValueError):
    """An error that already carries its verdict: the node judged a peer's input (the
    node's ``NodeRejected`` is one), so the policy takes its word instead of guessing."""

    def __init__(self, reason: str, message: str = "", *,
                 verdict: Verdict = Verdict.REJECT) -> None:
        self.reason = reason
        self.verdict = verdict
        super().__init__(f"{reason}: {message}" if message else reason)


# Header rules an honest peer can trip (clock skew, a block racing its parent): not its fault.
_IGNORED_HEADER_RULES = frozenset({"header.parent_unknown", "header.timestamp_future"})
# Mempool outcomes that say nothing about the sender's honesty.
# A transaction below our relay fee is dropped, not punished: the sender may run a lower
# minimum (relay policy is each node's own).
_IGNORED_MEMPOOL = frozenset({"known", "nonce_gap", "underpriced_replacement", "sender_limit",
                              "pool_full", "fee_too_low", "invalid:tx.nonce",
                              "invalid:tx.balance"})


def classify(exc: BaseException) -> tuple[Verdict, str]:
    """Map an error raised while handling a peer's input to a verdict and a reason."""
    if isinstance(exc, Judged):  # the node already judged it (NodeRejected)
        return exc.verdict, exc.reason
    if isinstance(exc, ProtocolError):
        return Verdict.REJECT, f"frame.{exc.reason}"
    if isinstance(exc, EncodingError):
        return Verdict.REJECT, exc.rule if exc.rule.startswith("encoding") \
            else f"encoding.{exc.rule}"
    if isinstance(exc, HeaderError) and exc.rule in _IGNORED_HEADER_RULES:
        return Verdict.IGNORE, exc.rule
    if isinstance(exc, TransactionError) and exc.rule == "tx.signature":
        return Verdict.REJECT, exc.rule
    # A chain off our finalized checkpoint may be an honest node's from the other side of a
    # partition: refused, never banned, so it can still fetch our chain (docs/finality.md §8).
    if isinstance(exc, ForkChoiceError):
        return Verdict.IGNORE, exc.rule
    if isinstance(exc, ConsensusError):
        return Verdict.REJECT, exc.rule
    if isinstance(exc, MempoolError):
        if exc.reason in _IGNORED_MEMPOOL or not exc.reason.startswith("invalid:"):
            return Verdict.IGNORE, exc.reason
        if exc.reason == "invalid:tx.signature":
            return Verdict.REJECT, "tx.signature"
        # other rule breaks may depend on our tip (balance moved, etc.): no penalty
        return Verdict.IGNORE, exc.reason
    return Verdict.IGNORE, type(exc).__name__


def ban_key(host: str, port: int | None) -> str:
    """The address part of a ban. Loopback bans include the port: on 127.0.0.1 every test
    node shares one IP, and banning the IP would cut honest local peers too."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return f"{host}:{port}" if loopback and port is not None else host


@dataclass
class BanList:
    """Bans by node id and by address, each until a deadline; kept in LevelDB once attached.

    Deadlines are monotonic in memory (a clock step does not lift a ban) and wall-clock on
    disk (the only clock that means something to the next process)."""

    default_seconds: float = 3600.0

    def __post_init__(self) -> None:
        self._until: dict[str, float] = {}
        self.reasons: dict[str, str] = {}
        self._store: Database | None = None

    def attach(self, store: Database) -> int:
        """Load the bans kept in ``store`` and keep every later change there; how many
        bans were restored (expired and unreadable entries are deleted, the latter logged)."""
        self._store = store
        wall, mono = time.time(), time.monotonic()
        stale: dict[bytes, bytes | None] = {}
        restored = 0
        for raw_key, value in store.iterate_prefix(BAN_PREFIX):
            try:
                key = raw_key[len(BAN_PREFIX):].decode()
                deadline, reason = msgpack.unpackb(value, raw=False)
                if type(deadline) not in (int, float) or type(reason) is not str:
                    raise ValueError("entry is not [deadline, reason]")
            except (ValueError, TypeError) as exc:
                log_event(log, "peer.ban_entry_dropped", level=logging.WARNING,
                          key=raw_key.hex(), error=str(exc))
                stale[raw_key] = None
                continue
            if deadline <= wall:
                stale[raw_key] = None
                continue
            self._until[key] = max(self._until.get(key, 0.0), mono + deadline - wall)
            self.reasons[key] = reason
            restored += 1
        if stale:
            store.write_raw(stale, sync=False)
        return restored

    def _keep(self, keys: list[str]) -> None:
        """Write the bans of ``keys`` (or their removal) to the store, one batch."""
        if self._store is None or self._store.closed:
            return
        offset = time.time() - time.monotonic()
        writes: dict[bytes, bytes | None] = {}
        for key in keys:
            deadline = self._until.get(key)
            writes[BAN_PREFIX + key.encode()] = None if deadline is None else msgpack.packb(
                [deadline + offset, self.reasons.get(key, "")], use_bin_type=True)
        # not fsynced: LevelDB has it in the OS at once (it survives a killed process); a ban
        # lost to a power cut is earned again at the peer's next misbehaviour
        self._store.write_raw(writes, sync=False)

    def ban(self, keys: list[str], *, reason: str, seconds: float | None = None) -> None:
        """Ban each key until ``seconds`` (default: the list's) from now; never shortens one."""
        deadline = time.monotonic() + (self.default_seconds if seconds is None else seconds)
        for key in keys:
            self._until[key] = max(deadline, self._until.get(key, 0.0))
            self.reasons[key] = reason
        self._keep(keys)

    def is_banned(self, key: str) -> bool:
        """True while the key's ban lasts (an expired ban is dropped here)."""
        deadline = self._until.get(key)
        if deadline is None:
            return False
        if deadline <= time.monotonic():
            del self._until[key]
            self.reasons.pop(key, None)
            self._keep([key])
            return False
        return True

    def unban(self, key: str) -> None:
        """Lift a ban now (the API)."""
        self._until.pop(key, None)
        self.reasons.pop(key, None)
        self._keep([key])

    def entries(self) -> dict[str, float]:
        """Key -> seconds left, for the API."""
        now = time.monotonic()
        return {k: round(v - now, 1) for k, v in self._until.items() if v > now}


class TokenBucket:
    """A rate limit: ``rate`` tokens a second, at most ``burst`` saved up.

    ``take`` spends a token if there is one. A refused request still runs the bucket into
    debt (``overdraft``), which refills at ``rate`` like the tokens: a peer that stops
    flooding recovers, one that keeps sending faster than ``rate`` sinks deeper, and the
    manager bans it past a bound."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    @property
    def overdraft(self) -> float:
        """Requests refused and not yet paid back by the refill."""
        return max(0.0, -self.tokens)

    def take(self, now: float | None = None) -> bool:
        """Spend a token (True), or refuse and go (further) into debt (False)."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        granted = self.tokens >= 1.0
        self.tokens -= 1.0
        return granted


def node_key(node_id: bytes) -> str:
    """The ban key of a node id."""
    return "id:" + node_id.hex()


def addr_key(host: str, port: int | None) -> str:
    """The ban key of an address (see `ban_key`)."""
    return "addr:" + ban_key(host, port)
