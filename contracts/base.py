"""What a native contract is: a payload class plus a function applying it to the state.

Payload kinds are registered in ``contracts/__init__.py`` (kind id -> `PayloadKind`); adding a
kind is a new payload class, an apply function, and one registry line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from core.errors import TransactionError
from core.params import ChainParams
from core.state import State


class Payload:
    """Base of transaction payloads; ``KIND_ID`` is the wire tag of the kind."""

    KIND_ID: ClassVar[int]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TxContext:
    """What an apply function may know besides the payload: who, when, and the rules."""

    sender: bytes
    height: int
    params: ChainParams
    # id of the block the transaction's block builds on (b"": applied outside a block, e.g.
    # mempool admission; contracts that need it reject the transaction then)
    parent_id: bytes = b""


ApplyFn = Callable[["State", Any, TxContext], None]


@dataclasses.dataclass(frozen=True)
class PayloadKind:
    """Registry entry: the payload class and its state transition."""

    cls: type[Payload]
    apply: ApplyFn


def require(condition: bool, rule: str, message: str = "") -> None:
    """Raise `TransactionError` naming ``rule`` unless ``condition`` holds."""
    if not condition:
        raise TransactionError(rule, message)
