"""State records: the canonical values stored under state keys.

Absent and default are the same thing (a zero account is deleted, not stored), so two nodes
that reach the same balances always hold the same key set and hence the same state root.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

from core.encoding import U64, Canonical, FixedBytes, ListOf, Nested, VarBytes

MAX_UNBONDING_LIST = 256  # encoding bound; the consensus limit is ChainParams.max_unbonding_entries
MAX_MODELS = 64
MAX_ENDPOINT = 128

# a set of 32-byte model ids: sorted and unique so it has one encoding
ModelIds = Annotated[
    tuple[bytes, ...], ListOf(FixedBytes(32), MAX_MODELS, strictly_increasing=True)
]


@dataclasses.dataclass(frozen=True)
class Account(Canonical):
    """Spendable balance and the next expected transaction nonce."""

    TAG: ClassVar[bytes] = b"pouw/account"
    MEMOISE: ClassVar[bool] = False  # state records: encoded once per write
    balance: U64 = 0
    nonce: U64 = 0

    def is_empty(self) -> bool:
        """The zero account: stored as absent."""
        return self.balance == 0 and self.nonce == 0

    def with_balance(self, balance: int) -> Account:
        """This account with another balance (``dataclasses.replace``, without its overhead)."""
        return Account(balance=balance, nonce=self.nonce)


@dataclasses.dataclass(frozen=True, order=True)
class Unbonding(Canonical):
    """Stake leaving the bond; withdrawable from ``release_height`` on."""

    TAG: ClassVar[bytes] = b"pouw/unbonding"
    MEMOISE: ClassVar[bool] = False  # state records: encoded once per write
    release_height: U64
    amount: U64


@dataclasses.dataclass(frozen=True)
class StakeRecord(Canonical):
    """Bonded stake plus pending unbonding entries (in creation order)."""

    TAG: ClassVar[bytes] = b"pouw/stake"
    MEMOISE: ClassVar[bool] = False  # state records: encoded once per write
    bonded: U64 = 0
    unbonding: Annotated[tuple[Unbonding, ...], ListOf(Nested(Unbonding), MAX_UNBONDING_LIST)] = ()

    def is_empty(self) -> bool:
        return self.bonded == 0 and not self.unbonding


@dataclasses.dataclass(frozen=True)
class SwarmNode(Canonical):
    """A registered swarm node: which models it serves and where (endpoint may be empty)."""

    TAG: ClassVar[bytes] = b"pouw/swarmnode"
    MEMOISE: ClassVar[bool] = False  # state records: encoded once per write
    models: ModelIds
    endpoint: Annotated[bytes, VarBytes(MAX_ENDPOINT)] = b""


@dataclasses.dataclass(frozen=True)
class Reputation(Canonical):
    """Integer reputation of a node (no floats in consensus)."""

    TAG: ClassVar[bytes] = b"pouw/reputation"
    MEMOISE: ClassVar[bool] = False  # state records: encoded once per write
    score: U64 = 0
