"""glibc malloc arenas of a node process (`node.memory`), counted in fresh interpreters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from node.config import MAX_MALLOC_ARENAS, ConfigError
from node.memory import (
    DEFAULT_MALLOC_ARENAS,
    DEFAULT_MMAP_THRESHOLD_KB,
    DEFAULT_TRIM_INTERVAL,
    MAX_MMAP_THRESHOLD_KB,
    FreeMemoryReleaser,
)
from tests.framework.nodes import node_config
from tests.framework.util import ROOT, wait_for

# Eight threads alive at once, each allocating from malloc (1 KiB objects are above
# pymalloc's limit); then glibc's own report (malloc_info) counts the arenas.
_PROGRAM = textwrap.dedent("""
    import ctypes, sys, tempfile, threading
    from node.memory import limit_malloc_arenas
    limited = limit_malloc_arenas(int(sys.argv[1]))
    barrier = threading.Barrier(8)
    kept = []
    def work():
        barrier.wait()
        kept.append([bytes(1024) + bytes([i % 256]) for i in range(2000)])
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        handle = ctypes.c_void_p(libc.fopen(out.name.encode(), b"w"))
        libc.malloc_info(0, handle)
        libc.fclose(handle)
        arenas = open(out.name).read().count("<heap nr=")
    print(limited, arenas)
""")


GLIBC = hasattr(os, "confstr") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
only_glibc = pytest.mark.skipif(not GLIBC, reason="malloc arenas and malloc_trim are glibc's")

# 40,000 freed 1 KiB blocks (40 MB) below one still in use: free() cannot give them back (only
# the free top of a heap goes), malloc_trim can. RSS from /proc/self/statm, in MB.
_TRIM_PROGRAM = textwrap.dedent("""
    import os, sys
    from node.memory import release_free_memory
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    base = rss()
    held = [bytes(1024) + bytes([i % 256]) for i in range(40_000)]
    last = held[-1]
    del held
    before = rss()
    released = release_free_memory()
    print(released, before - base, before - rss())
""")


# A 1 MiB block is mapped on its own (over glibc's first threshold, 128 KiB); freeing it raises
# glibc's threshold to 1 MiB, so by default a second 1 MiB block comes from the heap. Counted
# by mallinfo2's hblks (blocks mapped on their own) beyond the interpreter's, with each held.
_MMAP_PROGRAM = textwrap.dedent("""
    import ctypes, sys
    from node.memory import fix_mmap_threshold
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = MallInfo2
    fixed = fix_mmap_threshold(int(sys.argv[1]))
    base = libc.mallinfo2().hblks  # the interpreter's own mapped blocks
    first = libc.malloc(1 << 20)
    mapped_first = libc.mallinfo2().hblks - base
    libc.free(first)
    second = libc.malloc(1 << 20)
    mapped_second = libc.mallinfo2().hblks - base
    libc.free(second)
    print(fixed, mapped_first, mapped_second)
""")


def _mapped_blocks(kib: int) -> tuple[bool, int, int]:
    done = subprocess.run([sys.executable, "-c", _MMAP_PROGRAM, str(kib)], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=120)
    fixed, first, second = done.stdout.split()
    return fixed == "True", int(first), int(second)


@pytest.mark.slow
@only_glibc
def test_a_fixed_mmap_threshold_keeps_mapping_large_blocks_after_one_is_freed() -> None:
    """Side by side: by default the second 1 MiB block is carved from the heap (glibc raised
    its threshold when the first was freed); with the node's fixed threshold it is mapped
    again, so its free gives it back to the system."""
    assert _mapped_blocks(0) == (False, 1, 0)
    assert _mapped_blocks(DEFAULT_MMAP_THRESHOLD_KB) == (True, 1, 1)


def test_bad_memory_settings_are_config_errors(tmp_path: Path) -> None:
    cases: list[tuple[str, Any]] = [
        ("malloc_arenas", -1), ("malloc_arenas", 1.5), ("malloc_arenas", "2"),
        ("malloc_arenas", MAX_MALLOC_ARENAS + 1), ("malloc_trim_interval", -1),
        ("malloc_trim_interval", "30"), ("malloc_trim_interval", 3601),
        ("malloc_mmap_threshold_kb", -1), ("malloc_mmap_threshold_kb", 256.0),
        ("malloc_mmap_threshold_kb", MAX_MMAP_THRESHOLD_KB + 1)]
    for name, value in cases:
        with pytest.raises(ConfigError, match=name):
            node_config(tmp_path, "n", **{name: value})
    config = node_config(tmp_path, "n")
    assert (config.malloc_arenas, config.malloc_trim_interval,
            config.malloc_mmap_threshold_kb) == \
        (DEFAULT_MALLOC_ARENAS, DEFAULT_TRIM_INTERVAL, DEFAULT_MMAP_THRESHOLD_KB)


@pytest.mark.slow
@only_glibc
def test_releasing_free_memory_lowers_rss() -> None:
    """40 MB freed under a live block stay resident after free() (RSS still up by them) and
    go back to the system with one trim."""
    done = subprocess.run([sys.executable, "-c", _TRIM_PROGRAM], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=120)
    released, resident_after_free, given_back = done.stdout.split()
    assert float(resident_after_free) > 30
    assert released == "True" and float(given_back) > 20


@only_glibc
async def test_the_releaser_trims_every_interval_until_stopped() -> None:
    releaser = FreeMemoryReleaser(interval=0.01)
    await releaser.start()
    try:
        await wait_for(lambda: releaser.trims >= 3, 30)
    finally:
        await releaser.stop()
    never = FreeMemoryReleaser(interval=0)
    await never.start()
    await never.stop()
    assert never.trims == 0


def _arenas(limit: int) -> tuple[bool, int]:
    done = subprocess.run([sys.executable, "-c", _PROGRAM, str(limit)], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=120)
    limited, arenas = done.stdout.split()
    return limited == "True", int(arenas)


@pytest.mark.slow
@only_glibc
def test_a_node_process_uses_at_most_its_malloc_arenas() -> None:
    """Side by side: the same eight busy threads make more than two arenas by default
    (0: glibc's own limit, 8 per core) and at most two with the node's limit."""
    default_limited, default_arenas = _arenas(0)
    limited, arenas = _arenas(2)
    assert not default_limited and default_arenas > 2
    assert limited and arenas <= 2
