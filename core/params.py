"""Chain parameters: every number the consensus rules depend on, fixed at genesis."""

from __future__ import annotations

import dataclasses

from pouw import MAX_TARGET as MAX_TARGET  # the easiest target: defined once, by the PoUW layer

MEDIAN_TIME_SPAN = 11  # timestamps must exceed the median of this many ancestors
# ASERT halflife in target block times when the network does not say otherwise: 288 blocks,
# the ratio of aserti3-2d (2 days of 10-minute blocks).
DEFAULT_HALFLIFE_BLOCKS = 288
DEFAULT_SWARM_EPOCH_BLOCKS = 10


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
    # full settlement pays out at once and a data-root settlement is refused
    swarm_inclusion_window: int = 0

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
