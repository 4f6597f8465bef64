"""Misbehaviour policy: REJECT (disconnect and ban for a time) versus IGNORE (drop quietly).

Following consensus-specs' gossip rules: input that is provably bad (invalid block, bad
signature, bad PoUW proof, malformed or oversized frame, failed handshake proof) costs the
sender its connection and a ban by node id and address; input that is merely useless
(duplicate, unknown parent, a transaction that no longer fits our pool) is dropped without
penalty, because honest peers send such things all the time.
"""

from __future__ import annotations

import enum
import ipaddress
import time
from dataclasses import dataclass

from core.errors import ConsensusError, EncodingError, HeaderError, TransactionError
from node.chain.mempool import MempoolError
from node.p2p.protocol import ProtocolError


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
_IGNORED_MEMPOOL = frozenset({"known", "nonce_gap", "underpriced_replacement", "sender_limit",
                              "pool_full", "invalid:tx.nonce", "invalid:tx.balance"})


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
    """Bans by node id and by address, each until a monotonic deadline."""

    default_seconds: float = 3600.0

    def __post_init__(self) -> None:
        self._until: dict[str, float] = {}
        self.reasons: dict[str, str] = {}

    def ban(self, keys: list[str], *, reason: str, seconds: float | None = None) -> None:
        """Ban each key until ``seconds`` (default: the list's) from now; never shortens one."""
        deadline = time.monotonic() + (self.default_seconds if seconds is None else seconds)
        for key in keys:
            self._until[key] = max(deadline, self._until.get(key, 0.0))
            self.reasons[key] = reason

    def is_banned(self, key: str) -> bool:
        """True while the key's ban lasts (an expired ban is dropped here)."""
        deadline = self._until.get(key)
        if deadline is None:
            return False
        if deadline <= time.monotonic():
            del self._until[key]
            self.reasons.pop(key, None)
            return False
        return True

    def unban(self, key: str) -> None:
        """Lift a ban now (the API)."""
        self._until.pop(key, None)
        self.reasons.pop(key, None)

    def entries(self) -> dict[str, float]:
        """Key -> seconds left, for the API."""
        now = time.monotonic()
        return {k: round(v - now, 1) for k, v in self._until.items() if v > now}


def node_key(node_id: bytes) -> str:
    """The ban key of a node id."""
    return "id:" + node_id.hex()


def addr_key(host: str, port: int | None) -> str:
    """The ban key of an address (see `ban_key`)."""
    return "addr:" + ban_key(host, port)
