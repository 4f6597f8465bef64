"""A node service that runs one blocking piece of work every few seconds, off the event loop.

The mempool journal's group commit (`node.chain.mempool.JournalFlusher`) and the malloc trim
(`node.memory.FreeMemoryReleaser`) are both this: a loop that sleeps, runs the work in an
executor thread (so a slow fsync or trim never stalls the loop), and stops when the node
stops, optionally running the work one last time (the journal's final fsync).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class PeriodicWork:
    """``work()`` every ``interval`` seconds from `start` until `stop` (0: never); with
    ``final`` once more at `stop`, after the loop has ended."""

    def __init__(self, work: Callable[[], object], *, interval: float,
                 final: bool = False) -> None:
        self.work = work
        self.interval = interval
        self.final = final
        self.runs = 0  # how many times the loop ran the work (the final run not included)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            await loop.run_in_executor(None, self.work)
            self.runs += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.final:
            await asyncio.get_running_loop().run_in_executor(None, self.work)
