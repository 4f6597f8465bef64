"""Judging schedule: ring + chord pairs, both orders, ~3n per judge, fixed by the round id."""

from __future__ import annotations

from collections import Counter

import pytest

from swarm.schedule import judging_pairs, presentation_order, ring_order

ROUND = bytes(range(32))


@pytest.mark.parametrize("n", range(0, 20))
def test_pairs_cover_ring_and_chords_in_both_orders(n: int) -> None:
    pairs = judging_pairs(ROUND, n)
    ring = ring_order(ROUND, n)
    assert sorted(ring) == list(range(n))
    unordered = Counter(frozenset(p) for p in pairs)
    # every unordered pair exactly twice, once in each order, consecutively
    assert all(count == 2 for count in unordered.values())
    for k in range(0, len(pairs), 2):
        assert pairs[k] == pairs[k + 1][::-1]
    expected = {frozenset((ring[i], ring[(i + off) % n])) for off in (1, n // 2)
                for i in range(n) if ring[i] != ring[(i + off) % n]}
    assert set(unordered) == expected
    if n >= 4:
        # n ring pairs + n/2 distinct chords for even n (3n comparisons), n chords for odd n
        assert len(pairs) == (3 * n if n % 2 == 0 else 4 * n)


def test_graph_is_connected() -> None:
    for n in range(2, 40):
        pairs = judging_pairs(ROUND, n)
        reached = {0}
        frontier = [0]
        while frontier:
            node = frontier.pop()
            for a, b in pairs:
                if a == node and b not in reached:
                    reached.add(b)
                    frontier.append(b)
        assert reached == set(range(n))


def test_deterministic_and_round_dependent() -> None:
    assert judging_pairs(ROUND, 10) == judging_pairs(bytes(ROUND), 10)
    assert judging_pairs(ROUND, 10) != judging_pairs(bytes(32), 10)


def test_presentation_order_is_a_permutation_per_judge() -> None:
    first = presentation_order(ROUND, b"\x01" * 32, 30)
    second = presentation_order(ROUND, b"\x02" * 32, 30)
    assert sorted(first) == list(range(30)) == sorted(second)
    assert first != second
