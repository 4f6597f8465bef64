"""A bounded set that forgets its oldest entries first (the node's seen caches)."""

from __future__ import annotations

from collections import OrderedDict


class LruSet:
    """A bounded set that forgets the oldest entries first (seen caches)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def add(self, item: bytes) -> bool:
        """Add; True if it was new."""
        if item in self._items:
            self._items.move_to_end(item)
            return False
        self._items[item] = None
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return True

    def discard(self, item: bytes) -> None:
        self._items.pop(item, None)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)
