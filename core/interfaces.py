"""Interfaces between the pure consensus core and the storage the node provides.

The state transition only needs point reads and writes, so it runs unchanged over a dict
(tests, block templates) and over a LevelDB write batch whose reads see pending writes (node).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class KeyValueStore(Protocol):
    """Point read/write access; reads must observe this store's own earlier writes."""

    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...


class MemoryKV:
    """In-memory `KeyValueStore` (tests, dry runs); iterable so roots can be recomputed."""

    def __init__(self, data: dict[bytes, bytes] | None = None) -> None:
        self.data: dict[bytes, bytes] = dict(data or {})

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[bytes(key)] = bytes(value)

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(self.data.items()))


class PrefixedKV:
    """View of ``base`` under a key prefix, so state can share a database with blocks."""

    def __init__(self, base: KeyValueStore, prefix: bytes) -> None:
        self.base = base
        self.prefix = prefix

    def get(self, key: bytes) -> bytes | None:
        return self.base.get(self.prefix + key)

    def put(self, key: bytes, value: bytes) -> None:
        self.base.put(self.prefix + key, value)

    def delete(self, key: bytes) -> None:
        self.base.delete(self.prefix + key)
