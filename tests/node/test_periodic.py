"""`PeriodicWork`: the loop behind the journal's group commit and the malloc trim."""

from __future__ import annotations

import asyncio
import threading

from node.periodic import PeriodicWork


class Counter:
    """Work that counts its runs and the threads it ran on, and wakes a waiter at ``wake``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, wake: int) -> None:
        self.loop = loop
        self.wake = wake
        self.count = 0
        self.threads: set[int] = set()
        self.reached = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.threads.add(threading.get_ident())
        if self.count == self.wake:
            self.loop.call_soon_threadsafe(self.reached.set)


async def test_the_work_runs_repeatedly_off_the_loop_until_stopped() -> None:
    work = Counter(asyncio.get_running_loop(), wake=3)
    periodic = PeriodicWork(work, interval=0.001)
    await periodic.start()
    await asyncio.wait_for(work.reached.wait(), 60)
    await periodic.stop()
    stopped_at = work.count
    assert stopped_at >= 3 and periodic.runs == stopped_at
    assert threading.get_ident() not in work.threads  # executor threads, never the loop's
    await asyncio.sleep(0.01)
    assert work.count == stopped_at  # nothing runs after stop


async def test_final_work_runs_once_at_stop_even_if_the_loop_never_ran() -> None:
    work = Counter(asyncio.get_running_loop(), wake=1)
    periodic = PeriodicWork(work, interval=3600.0, final=True)
    await periodic.start()
    await periodic.stop()
    assert (work.count, periodic.runs) == (1, 0)


async def test_interval_zero_never_runs_the_loop() -> None:
    work = Counter(asyncio.get_running_loop(), wake=1)
    periodic = PeriodicWork(work, interval=0)
    await periodic.start()
    await periodic.stop()
    assert work.count == 0
