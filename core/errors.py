"""Consensus error hierarchy.

Every error carries a ``rule`` name (e.g. ``"tx.nonce"``) so that test vectors, peers' ban
logic and logs can say exactly which consensus rule a block or transaction broke, without
parsing messages.
"""

from __future__ import annotations


class ConsensusError(Exception):
    """Base class: the input violates a consensus rule named by ``rule``."""

    family = "consensus"

    def __init__(self, rule: str, message: str = "") -> None:
        self.rule = rule
        self.message = message or rule
        super().__init__(f"[{rule}] {self.message}")


class EncodingError(ConsensusError, ValueError):
    """Bytes are not the canonical encoding of the expected object.

    Also a ValueError, as Python's own decoders raise: code that parses untrusted bytes
    (hex, JSON, then a canonical object) catches one type."""

    family = "encoding"

    def __init__(self, message: str, *, rule: str = "encoding") -> None:
        super().__init__(rule, message)


class TransactionError(ConsensusError):
    """A transaction is invalid (signature, nonce, balance, payload rules)."""

    family = "tx"


class HeaderError(ConsensusError):
    """A header breaks a contextual rule (parent, height, time, target, version)."""

    family = "header"


class CertificateRuleError(ConsensusError):
    """The PoUW certificate is undecodable, invalid, or not bound to this header."""

    family = "certificate"


class BodyError(ConsensusError):
    """The block body breaks a rule (size, transactions root, duplicates)."""

    family = "body"


class StateRootError(ConsensusError):
    """Applying the block does not yield the state root the header claims."""

    family = "state"


class ForkChoiceError(ConsensusError):
    """A block conflicts with finality: it is off the chain of the finalized checkpoint."""

    family = "forkchoice"


class GenesisError(ConsensusError):
    """A genesis configuration is malformed."""

    family = "genesis"
