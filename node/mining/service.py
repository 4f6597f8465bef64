"""The node's mining services as one unit: the job service (always) and the miner.

`node.builder` makes one for a node; anything with the `MiningHost` slice of a node (the
tests' in-process host too) can have one. `start` runs the job worker and, when the config
mines, the continuous miner; `stop` joins both threads. The miner exists either way, so
``POST /api/v1/miner/generate`` works on a node that does not mine (like Bitcoin's).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from node.mining.jobs import JobService, JobsNode
from node.mining.miner import Miner, MinerConfig, MinerNode, MiningSettings, stop_all


class MiningHost(MinerNode, JobsNode, Protocol):
    """What the miner and the job service need of the node."""


@dataclass(frozen=True, kw_only=True)
class MiningService:
    """The job service and the miner of one node, started and stopped together."""

    jobs: JobService
    miner: Miner
    mine: bool  # mine continuously from start (config.mine)

    @classmethod
    def create(cls, host: MiningHost, settings: MiningSettings, *,
               clock: Callable[[], float] = time.time) -> MiningService:
        jobs = JobService(host, backend=settings.mining_backend or "auto",
                          threads=settings.mining_threads)
        miner = Miner(host, jobs=jobs, config=MinerConfig.from_node_config(settings),
                      clock=clock)
        return cls(jobs=jobs, miner=miner, mine=bool(settings.mine))

    @property
    def active_miner(self) -> Miner | None:
        """The miner if the node mines continuously (what ``node.miner`` holds), else None."""
        return self.miner if self.mine else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.jobs.start(loop)
        if self.mine:
            self.miner.start(loop, continuous=True)

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, stop_all, self.miner, self.jobs)
