"""Swarm node registry: staked accounts announce which models they serve.

Registration requires bonded stake so that spamming the registry costs capital; registering
again replaces the previous entry (the models list is a sorted set: one encoding).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, ClassVar

from consensus.encoding import VarBytes
from consensus.records import MAX_ENDPOINT, ModelIds, SwarmNode
from contracts.base import Payload, PayloadKind, TxContext, require

if TYPE_CHECKING:
    from consensus.state import State


@dataclasses.dataclass(frozen=True)
class RegisterSwarmNode(Payload):
    """Register (or update) the sender as a swarm node serving ``models``."""

    KIND_ID: ClassVar[int] = 4
    models: ModelIds
    endpoint: Annotated[bytes, VarBytes(MAX_ENDPOINT)] = b""


def apply_register_swarm_node(state: State, payload: RegisterSwarmNode, ctx: TxContext) -> None:
    """Registration rules, in order."""
    # at least one model must be announced
    require(len(payload.models) > 0, "register.no_models")
    # the sender must have at least the minimum bonded stake
    bonded = state.stake(ctx.sender).bonded
    require(bonded >= ctx.params.min_node_stake, "register.insufficient_stake")
    state.set_swarm_node(ctx.sender, SwarmNode(models=payload.models, endpoint=payload.endpoint))


REGISTER_SWARM_NODE = PayloadKind(RegisterSwarmNode, apply_register_swarm_node)
