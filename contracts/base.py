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


#: How many recent block ids the chain store gives a transition (`TxContext.recent_block_ids`):
#: enough for a calibration's seed window (`contracts.registry.CALIBRATION_WINDOW`) and for a
#: swarm settlement's beacon block, at most `contracts.swarm.MAX_SETTLEMENT_LAG` blocks back.
RECENT_BLOCK_COUNT = 128


@dataclasses.dataclass(frozen=True, kw_only=True)
class TxContext:
    """What an apply function may know besides the payload: who, when, and the rules."""

    sender: bytes
    height: int
    params: ChainParams
    # id of the block the transaction's block builds on (b"": applied outside a block;
    # contracts that need it reject the transaction then)
    parent_id: bytes = b""
    # ids of the chain's most recent blocks, newest first: the parent, its parent, ... (the
    # chain store gives `RECENT_BLOCK_COUNT` of them, fewer near genesis; empty: the parent
    # alone, see `recent_ids`)
    recent_block_ids: tuple[bytes, ...] = ()

    def recent_ids(self) -> tuple[bytes, ...]:
        """The recent block ids, newest first: those given, else the parent alone (none
        outside a block)."""
        if self.recent_block_ids:
            return self.recent_block_ids
        return (self.parent_id,) if self.parent_id else ()

    def block_id_at(self, height: int) -> bytes | None:
        """The id of this chain's block at ``height`` (an ancestor of the block being built,
        whose parent is at ``self.height - 1``) if it is one of the recent ids, else None."""
        back = self.height - 1 - height
        recent = self.recent_ids()
        return recent[back] if 0 <= back < len(recent) else None


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
