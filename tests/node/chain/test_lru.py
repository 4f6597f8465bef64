"""The node's seen caches (`LruSet`): bounded in entries and in bytes (issue 12's soak)."""

from __future__ import annotations

import hashlib
import tracemalloc

import pytest

from node.chain.chainstore import VERIFIED_TXS_REMEMBERED
from node.chain.lru import ENTRY_BYTES, LruSet
from node.finality.service import SEEN_VOTES
from node.p2p.manager import SEEN_TXS
from node.p2p.peer import KNOWN_CACHE
from node.swarm.service import MAX_SEEN


def _ids(count: int, salt: bytes = b"") -> list[bytes]:
    return [hashlib.sha256(salt + i.to_bytes(8, "big")).digest() for i in range(count)]


def test_a_full_set_forgets_its_oldest_entries_first() -> None:
    cache = LruSet(3)
    for item in _ids(5):
        assert cache.add(item)
    assert len(cache) == 3
    first, second, *rest = _ids(5)
    assert first not in cache and second not in cache
    assert all(item in cache for item in rest)


def test_adding_a_known_entry_keeps_it_longest() -> None:
    a, b, c, d = _ids(4)
    cache = LruSet(3)
    for item in (a, b, c):
        cache.add(item)
    assert not cache.add(a)  # known: not new, and now the newest
    cache.add(d)
    assert a in cache and b not in cache


def test_discard_forgets_an_entry() -> None:
    (a,) = _ids(1)
    cache = LruSet(2)
    cache.add(a)
    cache.discard(a)
    cache.discard(a)  # absent: no error
    assert a not in cache and len(cache) == 0


@pytest.mark.parametrize("capacity", [KNOWN_CACHE, SEEN_TXS, VERIFIED_TXS_REMEMBERED,
                                      SEEN_VOTES, MAX_SEEN])
def test_a_full_node_cache_holds_at_most_entry_bytes_per_entry(capacity: int) -> None:
    """Filled with twice its capacity of 32-byte ids (each a fresh bytes object, the worst
    case), a node cache holds ``capacity`` entries and at most ``ENTRY_BYTES`` each."""
    ids = _ids(2 * capacity, salt=b"lru")
    tracemalloc.start()
    try:
        cache = LruSet(capacity)
        for item in ids:
            cache.add(bytes(item))  # a copy: the cache keeps its own object alive
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cache) == capacity
    assert held <= capacity * ENTRY_BYTES, f"{held / capacity:.0f} B per entry"
