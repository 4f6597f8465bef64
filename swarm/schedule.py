"""The judging schedule: which ordered pairs of answers every judge compares.

Answers are first placed on a ring in an order derived from the round id (so nobody chooses
their neighbours by choosing a node id), then each position ``i`` is compared with its
neighbour ``i + 1`` and with the opposite position ``i + ⌊n/2⌋`` (mod n), each pair in both
orders so a judge's bias toward the first (or second) answer shown cancels. That gives
about 3n comparisons per judge: n ring pairs + n/2 distinct chords, twice (4n for odd n,
where the n chords are all distinct). The ring keeps the
comparison graph connected; the chords halve its diameter.

Every judge gets the same pairs in the same canonical order, and a judgment is simply one
outcome per pair in that order; the order in which a node *shows* pairs to its model is its
own business (`presentation_order` offers a per-judge shuffle).
"""

from __future__ import annotations

from core.encoding import tagged_hash

SCHEDULE_TAG = b"pouw/swschedule"
PRESENT_TAG = b"pouw/swpresent"


def ring_order(round_id: bytes, n: int) -> tuple[int, ...]:
    """A permutation of answer indices 0..n-1 fixed by the round id (keyed hash sort)."""
    return tuple(sorted(range(n), key=lambda i: (
        tagged_hash(SCHEDULE_TAG, round_id + i.to_bytes(4, "big")), i)))


def judging_pairs(round_id: bytes, n: int) -> tuple[tuple[int, int], ...]:
    """Ordered (first, second) answer-index pairs every judge compares, canonical order.

    Each unordered pair appears exactly twice, once in each order, consecutively.
    """
    if n < 0:
        raise ValueError("n must be non-negative")
    ring = ring_order(round_id, n)
    seen: set[tuple[int, int]] = set()
    pairs: list[tuple[int, int]] = []
    for offset in (1, n // 2):
        for pos in range(n):
            a, b = ring[pos], ring[(pos + offset) % n]
            key = (min(a, b), max(a, b))
            if a == b or key in seen:
                continue
            seen.add(key)
            pairs.append((a, b))
            pairs.append((b, a))
    return tuple(pairs)


def presentation_order(round_id: bytes, judge: bytes, count: int) -> tuple[int, ...]:
    """A per-judge order of showing the ``count`` scheduled pairs (indices into the schedule).

    Spreads the two orders of one pair apart, so a judge cannot simply copy its first verdict.
    """
    return tuple(sorted(range(count), key=lambda i: (
        tagged_hash(PRESENT_TAG, round_id + judge + i.to_bytes(4, "big")), i)))
