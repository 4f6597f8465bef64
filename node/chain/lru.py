"""A bounded set that forgets its oldest entries first (the node's seen caches)."""

from __future__ import annotations

from collections import OrderedDict

# Memory one entry of a full set holds, at most, for a 32-byte id: the OrderedDict's slot and
# link node (~105 B) and the id's bytes object (~65 B, often shared with the caller). A cache
# costs capacity x this once full; it fills at the rate of new ids, so a large capacity shows
# as RSS rising for hours (tests/node/chain/test_lru.py measures it).
ENTRY_BYTES = 192


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
