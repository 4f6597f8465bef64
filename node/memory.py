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
  (`FreeMemoryReleaser`: ``malloc_trim(0)``, a few milliseconds in an executor thread).

Both are node.toml settings (``malloc_arenas``, ``malloc_trim_interval``); 0 turns each off.
Other C libraries: nothing is done.
"""

from __future__ import annotations

import ctypes
import os

from node.periodic import PeriodicWork

DEFAULT_MALLOC_ARENAS = 2  # node.toml malloc_arenas; 0 leaves glibc's default (8 per core)
DEFAULT_TRIM_INTERVAL = 30.0  # node.toml malloc_trim_interval, seconds; 0: never
_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


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
