"""Chain parameters: every number the consensus rules depend on, fixed at genesis."""

from __future__ import annotations

import dataclasses

from pouw import MAX_TARGET as MAX_TARGET  # the easiest target: defined once, by the PoUW layer

MEDIAN_TIME_SPAN = 11  # timestamps must exceed the median of this many ancestors
# ASERT halflife in target block times when the network does not say otherwise: 288 blocks,
# the ratio of aserti3-2d (2 days of 10-minute blocks).
DEFAULT_HALFLIFE_BLOCKS = 288
DEFAULT_SWARM_EPOCH_BLOCKS = 10
DEFAULT_FINALITY_EPOCH_BLOCKS = 10
# k, the swarm tie beacon's delay in blocks (docs/swarm.md §5.2a "Ties"): a round's tie seed is
# the block k above the height its request names, so k must outlast every commit of a round.
# The default phase timeouts let the last judgment commit 65 s after the draw (70 s with its
# reveal); the testnet launcher's two paced miners made a block every 1.65-1.8 s (measured):
# 40 blocks (120 s at the dev network's paced 3 s blocks, 400 s at the 10 s target). Every
# settlement lands at least k + 1 blocks after its request. It must exceed
# contracts.swarm.MAX_REQUEST_LAG, so a round asked as late as a node allows still has
# k - MAX_REQUEST_LAG blocks to commit before the beacon is mined.
DEFAULT_SWARM_BEACON_DELAY = 40
# W, blocks a swarm settlement is held before it pays out, in which any participant may prove
# it left out or misstated its signed round data (docs/swarm.md §7a); without it a settler can
# omit an honest node's opening and have it slashed as a no-show. A challenge needs the
# settlement's block to reach the participant (gossip: ~1 s), its watcher to find the claim
# (ms) and the challenge to be relayed and mined (the next block or two). 20 blocks (36-60 s
# at the dev network's paced 1.8-3 s blocks, 200 s at the 10 s target) leave room for a node
# that was briefly offline or behind, a few orphaned blocks and full blocks, while payouts wait
# minutes, not hours. k + 1 + W must stay under contracts.swarm.MAX_SETTLEMENT_LAG: a
# settlement lands k + 1 blocks after its request at the earliest and can be voided up to W
# blocks later, and the round must then still be able to settle again. Settlement lag + W +
# an epoch may exceed a network's unbonding delay: slashes are collected when the settlement is
# held (not when the window closes), so the delay still only needs lag + epoch.
DEFAULT_SWARM_INCLUSION_WINDOW = 20
BPS = 10_000  # basis points: shares in consensus are integers out of this


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChainParams:
    """Consensus parameters of one network (all integers: no floats in consensus)."""

    chain_id: int
    target_block_time: int  # seconds
    initial_target: int  # 256-bit target of the first mined block
    unbonding_delay: int  # blocks between begin_unstake and withdrawable
    min_difficulty: bool = False  # testnet escape hatch, consumed by the difficulty rule
    block_subsidy: int = 50_000_000
    max_block_size: int = 4_000_000  # bytes of the canonical block encoding
    max_future_block_time: int = 60  # seconds a timestamp may run ahead of the local clock
    min_node_stake: int = 1  # bonded stake needed to register and to stay in the swarm index
    max_unbonding_entries: int = 16  # bounds the per-account unbonding list
    block_version: int = 1
    # ASERT halflife, in target block times (see `asert_halflife` for seconds)
    asert_halflife_blocks: int = DEFAULT_HALFLIFE_BLOCKS
    # blocks per swarm epoch: selection and settlement read the candidate table as it was at
    # the start of the epoch (contracts.swarm.record_epoch_snapshot)
    swarm_epoch_blocks: int = DEFAULT_SWARM_EPOCH_BLOCKS
    # blocks a swarm settlement is held before it pays out, during which anyone may prove it
    # left out or misstated signed round data (contracts.swarm, docs/swarm.md §7a); 0: a
    # full settlement pays out at once and a data-root settlement is refused (no protection
    # against a settler's omission: for chains whose subject is not the window, such as most
    # tests')
    swarm_inclusion_window: int = DEFAULT_SWARM_INCLUSION_WINDOW
    # k: a round's tie seed comes from the block k blocks above the height its signed request
    # names (the beacon block, docs/swarm.md §5.2a "Ties"), so nobody knows it when answers
    # and judgments are committed as long as a round lasts fewer than k blocks; a settlement
    # waits for that block. 0: the beacon is the named block itself, which the client knows
    # when it signs (no protection against grinding: for chains whose subject is not the
    # beacon, such as most tests')
    swarm_beacon_delay: int = DEFAULT_SWARM_BEACON_DELAY
    # finality (docs/finality.md §1): blocks per finality epoch (the checkpoint is its first
    # block), the quorum a link needs (den * voted >= num * total stake of the epoch's set),
    # the bonded stake a validator needs to be in a set, the share of an offender's bond a
    # slashing takes and the share of that paid to the reporter (basis points), and how many
    # epochs behind the finalized checkpoint may fall before finality counts as stalled
    finality_epoch_blocks: int = DEFAULT_FINALITY_EPOCH_BLOCKS
    finality_quorum_numerator: int = 2
    finality_quorum_denominator: int = 3
    min_validator_stake: int = 1
    slash_share_bps: int = 1000
    reporter_reward_bps: int = 5000
    finality_stall_epochs: int = 3

    @property
    def asert_halflife(self) -> int:
        """The ASERT halflife in seconds: the schedule error that doubles/halves the target."""
        return self.asert_halflife_blocks * self.target_block_time

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "min_difficulty":
                if type(value) is not bool:
                    raise ValueError("min_difficulty must be a bool")
            elif type(value) is not int or value < 0:
                raise ValueError(f"{f.name} must be a non-negative int")
        if not 0 < self.initial_target <= MAX_TARGET:
            raise ValueError("initial_target must be in [1, 2**256 - 1]")
        if self.chain_id >= 2**64 or self.target_block_time == 0:
            raise ValueError("chain_id must fit u64 and target_block_time must be positive")
        if self.asert_halflife_blocks == 0:
            raise ValueError("asert_halflife_blocks must be positive")
        if self.swarm_epoch_blocks == 0:
            raise ValueError("swarm_epoch_blocks must be positive")
        self._check_finality()

    def _check_finality(self) -> None:
        if self.finality_epoch_blocks == 0:
            raise ValueError("finality_epoch_blocks must be positive")
        if not 0 < self.finality_quorum_numerator <= self.finality_quorum_denominator:
            raise ValueError("the finality quorum must be a fraction in (0, 1]")
        if self.slash_share_bps > BPS or self.reporter_reward_bps > BPS:
            raise ValueError("slash_share_bps and reporter_reward_bps are at most 10000")
        if self.min_validator_stake == 0:
            raise ValueError("min_validator_stake must be positive")
