"""glibc malloc settings for a long-running node process (issue 12's soak).

glibc gives each new thread its own malloc arena, up to 8 per core, and memory freed in an
arena stays mapped in it for later use: only the free space at the very top of a heap goes
back to the system. A node's threads (the chain thread, the signature pool, LevelDB's
compactor, the executors) allocate and free in turn, so each arena keeps its high-water mark
resident and the free holes between live blocks grow. On a 2-core soak node (bench/chaos.py)
16 arenas held 30-60 MB of free memory after ten minutes, still growing, while the memory in
use stayed near 100-120 MB; one ``malloc_trim`` gave 22 MB back at once. So the node:

* caps the arenas at 2 when it starts (`limit_malloc_arenas`; glibc's MALLOC_ARENA_MAX,
  which must be set before the process starts, does the same), and
* returns free pages inside the heaps to the system every ``malloc_trim_interval`` seconds
  (`FreeMemoryReleaser`: ``malloc_trim(0)``, a few milliseconds in an executor thread), and
* fixes the size from which malloc maps a block on its own (`fix_mmap_threshold`,
  ``malloc_mmap_threshold_kb``). glibc starts at 128 KiB but raises the threshold to the
  size of every mapped block that is freed, up to 32 MiB; a node frees large buffers all the
  time (block and message bytes, the miner's matrices), so after minutes every large buffer
  is carved from the heaps instead, and the holes it leaves between live blocks are what
  grows. A fixed threshold maps them again, and ``free`` gives them straight back.

All are node.toml settings (``malloc_arenas``, ``malloc_trim_interval``,
``malloc_mmap_threshold_kb``); 0 turns each off.
Other C libraries: nothing is done.
"""

from __future__ import annotations

import ctypes
import os

from node.periodic import PeriodicWork

DEFAULT_MALLOC_ARENAS = 2  # node.toml malloc_arenas; 0 leaves glibc's default (8 per core)
DEFAULT_TRIM_INTERVAL = 30.0  # node.toml malloc_trim_interval, seconds; 0: never
# node.toml malloc_mmap_threshold_kb; 0 leaves glibc's dynamic threshold (128 KiB to 32 MiB)
DEFAULT_MMAP_THRESHOLD_KB = 256
MAX_MMAP_THRESHOLD_KB = 32 * 1024  # glibc's own ceiling on 64-bit (HEAP_MAX_SIZE / 2)
_M_MMAP_THRESHOLD = -3  # mallopt parameters (malloc.h)
_M_ARENA_MAX = -8


def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (mallopt's arena limit is glibc's)."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return None
    return ctypes.CDLL(None) if version and version.startswith("glibc") else None


def limit_malloc_arenas(arenas: int = DEFAULT_MALLOC_ARENAS) -> bool:
    """Let glibc's malloc use at most ``arenas`` arenas from now on; True if it took effect.

    Call it before the process starts threads: arenas made before the limit stay (glibc fixes
    the limit when it next needs a new arena). 0 or a non-glibc C library: nothing is done.
    """
    libc = _glibc() if arenas > 0 else None
    if libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def fix_mmap_threshold(kib: int = DEFAULT_MMAP_THRESHOLD_KB) -> bool:
    """Have glibc's malloc map every block of ``kib`` KiB or more on its own, for good (a
    fixed threshold turns off glibc's raising of it); True if it took effect. 0 or a non-glibc
    C library: nothing is done."""
    libc = _glibc() if kib > 0 else None
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, kib * 1024))


def release_free_memory() -> bool:
    """Give the free pages of every malloc arena back to the system (``malloc_trim(0)``);
    True if glibc released any. Safe from any thread: glibc locks each arena in turn."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


class FreeMemoryReleaser(PeriodicWork):
    """A node service: `release_free_memory` every ``interval`` seconds, off the event loop
    (nothing on another C library)."""

    def __init__(self, *, interval: float = DEFAULT_TRIM_INTERVAL) -> None:
        super().__init__(release_free_memory, interval=interval if _glibc() is not None else 0)

    @property
    def trims(self) -> int:
        """How many trims have run."""
        return self.runs
