"""Native contracts: transaction payload kinds and their state transitions.

`PAYLOAD_KINDS` is the one registry (kind id -> payload class + apply function) that both
transaction decoding and the state transition use.
"""

from __future__ import annotations

from collections.abc import Mapping

from contracts.bank import TRANSFER, Transfer
from contracts.base import Payload, PayloadKind, TxContext
from contracts.escrow import (
    BEGIN_ESCROW_RELEASE,
    CLAIM_ESCROW_RELEASE,
    DEPOSIT_ESCROW,
    BeginEscrowRelease,
    ClaimEscrowRelease,
    DepositEscrow,
)
from contracts.finality import (
    FINALITY_VOTES,
    REGISTER_VALIDATOR,
    REPORT_VOTE_VIOLATION,
    FinalityVotes,
    RegisterValidator,
    ReportVoteViolation,
)
from contracts.jobs import JOB_CANCEL, JOB_RECEIPT, JOB_REQUEST, JobCancel, JobReceipt, JobRequest
from contracts.registry import (
    SUBMIT_CALIBRATION,
    RegisterSwarmNode,
    SubmitCalibration,
)
from contracts.staking import BEGIN_UNSTAKE, STAKE, WITHDRAW, BeginUnstake, Stake, Withdraw
from contracts.swarm import (
    CHALLENGE_SWARM_ROUND,
    POST_ROUND_LEAVES,
    REGISTER_SWARM_NODE,
    SETTLE_SWARM_ROOT,
    SETTLE_SWARM_ROUND,
    ChallengeSwarmRound,
    PostRoundLeaves,
    SettleSwarmRoot,
    SettleSwarmRound,
)


def _registry(kinds: tuple[PayloadKind, ...]) -> dict[int, PayloadKind]:
    """kind id -> kind; two kinds with one id is a programming error, never a silent drop."""
    registry: dict[int, PayloadKind] = {}
    for kind in kinds:
        kind_id = kind.cls.KIND_ID
        if kind_id in registry:
            raise ValueError(f"payload kind id {kind_id} is used by both "
                             f"{registry[kind_id].cls.__name__} and {kind.cls.__name__}")
        registry[kind_id] = kind
    return registry


PAYLOAD_KINDS: Mapping[int, PayloadKind] = _registry((
    TRANSFER, STAKE, BEGIN_UNSTAKE, WITHDRAW, REGISTER_SWARM_NODE, JOB_REQUEST, JOB_RECEIPT,
    JOB_CANCEL, SETTLE_SWARM_ROUND, SUBMIT_CALIBRATION, DEPOSIT_ESCROW, BEGIN_ESCROW_RELEASE,
    CLAIM_ESCROW_RELEASE, CHALLENGE_SWARM_ROUND, SETTLE_SWARM_ROOT, POST_ROUND_LEAVES,
    REGISTER_VALIDATOR, FINALITY_VOTES, REPORT_VOTE_VIOLATION))
PAYLOAD_CLASSES: Mapping[int, type[Payload]] = {k: v.cls for k, v in PAYLOAD_KINDS.items()}

__all__ = [
    "PAYLOAD_CLASSES",
    "PAYLOAD_KINDS",
    "BeginEscrowRelease",
    "BeginUnstake",
    "ChallengeSwarmRound",
    "ClaimEscrowRelease",
    "DepositEscrow",
    "FinalityVotes",
    "JobCancel",
    "JobReceipt",
    "JobRequest",
    "Payload",
    "PayloadKind",
    "PostRoundLeaves",
    "RegisterSwarmNode",
    "RegisterValidator",
    "ReportVoteViolation",
    "SettleSwarmRoot",
    "SettleSwarmRound",
    "Stake",
    "SubmitCalibration",
    "Transfer",
    "TxContext",
    "Withdraw",
]
