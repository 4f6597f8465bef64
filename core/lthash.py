"""LtHash: a homomorphic multiset hash for an incrementally updated state root.

Each (key, value) pair is expanded with SHAKE-256 into 1024 lanes of 16 bits; the state's hash
is the lane-wise sum mod 2**16 over all pairs. Inserting adds a pair's vector, deleting
subtracts it, updating does both, so a block costs O(keys touched), never O(state size), and
the result is independent of the order of operations. The root is BLAKE2b-256 of the lanes.

Why this is secure enough: finding two different multisets with the same lane sum is a
short-vector (SIS) problem in a lattice of dimension 1024 over Z_(2^16) (Bellare–Micciancio
1997, "A new paradigm for collision-free hashing"; the parameters follow Facebook's LtHash,
Lewi et al. 2019, ~200-bit security). A single additive sum mod 2**256 ("AdHash" with a small
modulus) is NOT: it is one linear equation, and Wagner's generalized birthday attack finds
colliding sets in subexponential time, so a miner could forge a state with the same root.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from core.encoding import tagged_hash

LANES = 1024
LANE_BYTES = 2 * LANES
_DOMAIN = b"pouwchain/lthash/v1\x00"

Lanes = npt.NDArray[np.uint16]


def element_bytes(key: bytes, value: bytes) -> bytes:
    """SHAKE-256 expansion of one pair; the key length prefix makes (key, value) unambiguous."""
    data = _DOMAIN + len(key).to_bytes(4, "big") + key + value
    return hashlib.shake_256(data).digest(LANE_BYTES)


def element(key: bytes, value: bytes) -> Lanes:
    """The lane vector of one pair (little-endian 16-bit lanes)."""
    return np.frombuffer(element_bytes(key, value), dtype="<u2").astype(np.uint16)


def lane_sum(pairs: Iterable[tuple[bytes, bytes]]) -> Lanes:
    """Lane-wise sum mod 2**16 of many pairs' vectors, in one numpy reduction.

    Each lane is summed in 64 bits (no overflow below 2**48 pairs) and reduced mod 2**16 by
    the unsigned narrowing cast, which is exactly the wrap-around of repeated uint16 adds.
    """
    return sum_elements([element_bytes(key, value) for key, value in pairs])


def sum_elements(elements: Sequence[bytes]) -> Lanes:
    """`lane_sum` of pairs whose `element_bytes` are already known."""
    data = b"".join(elements)
    if not data:
        return np.zeros(LANES, dtype=np.uint16)
    rows = np.frombuffer(data, dtype="<u2").reshape(-1, LANES)
    total: Lanes = rows.sum(axis=0, dtype=np.uint64).astype(np.uint16)
    return total


# Elements an `ElementCache` keeps (the chain store's, across blocks). What for: a key the
# last blocks wrote, changed again, needs the element of its old value to remove it; the
# blocks seen most are small (the soak's write ~10-30 keys), a 1,000-transfer block
# (bench/chain_validate.py) ~2,000, so 4,096 hold two such blocks' writes (the bench loses
# no speed). An entry holds ~2.3 KiB (the 2 KiB element, key, value; tracemalloc in
# tests/core/test_fastpaths.py), so ~9 MiB full: at 16,384 it filled over hours of new keys
# to ~36 MiB (issue 12's soak). Forgetting costs one SHAKE-256 expansion (`element_bytes`)
# when an older key changes again.
ELEMENT_CACHE_ENTRIES = 1 << 12


class ElementCache:
    """Recently computed `element_bytes`, by key, valid only for the value they were made of.

    A key updated in one block has its new pair's element computed (to add it); when the next
    block changes the key again, that element is needed again (to remove it). Keeping the
    last element per key saves that second SHAKE expansion. Bounded: ``ELEMENT_CACHE_ENTRIES``.
    """

    def __init__(self, max_entries: int = ELEMENT_CACHE_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()  # oldest first

    def element(self, key: bytes, value: bytes) -> bytes:
        """The pair's element: from the cache if it holds this exact value, else computed."""
        hit = self._entries.get(key)
        if hit is not None and hit[0] == value:
            return hit[1]
        return element_bytes(key, value)

    def computed(self, key: bytes, value: bytes) -> bytes:
        """Compute the pair's element and remember it for the key."""
        data = element_bytes(key, value)
        entries = self._entries
        entries.pop(key, None)
        entries[key] = (value, data)
        if len(entries) > self.max_entries:
            entries.popitem(last=False)  # least recently computed
        return data

    def __len__(self) -> int:
        return len(self._entries)


class LtHash:
    """A mutable lane vector with add/remove of (key, value) pairs."""

    def __init__(self, lanes: bytes | None = None) -> None:
        if lanes is None:
            self.lanes: Lanes = np.zeros(LANES, dtype=np.uint16)
        else:
            if len(lanes) != LANE_BYTES:
                raise ValueError(f"lane vector must be {LANE_BYTES} bytes")
            self.lanes = np.frombuffer(lanes, dtype="<u2").astype(np.uint16)

    def add(self, key: bytes, value: bytes) -> None:
        self.lanes += element(key, value)  # uint16 arithmetic wraps mod 2**16

    def remove(self, key: bytes, value: bytes) -> None:
        self.lanes -= element(key, value)

    def update(self, *, add: Iterable[tuple[bytes, bytes]] = (),
               remove: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """Add and remove many pairs at once (vectorised; same result as one at a time)."""
        self.lanes += lane_sum(add)
        self.lanes -= lane_sum(remove)

    def update_elements(self, *, add: Sequence[bytes] = (), remove: Sequence[bytes] = ()) -> None:
        """`update` with the pairs' `element_bytes` given (e.g. from an `ElementCache`)."""
        self.lanes += sum_elements(add)
        self.lanes -= sum_elements(remove)

    def to_bytes(self) -> bytes:
        return self.lanes.astype("<u2").tobytes()

    def root(self) -> bytes:
        return tagged_hash(b"pouw/stateroot", self.to_bytes())

    def copy(self) -> LtHash:
        return LtHash(self.to_bytes())
