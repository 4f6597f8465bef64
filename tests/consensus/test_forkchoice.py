"""Tests of the fork-choice block tree."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.forkchoice import NO_CHANGE, BlockTree, Reorg, TreeEntry

G = b"genesis"


def bid(i: int) -> bytes:
    return b"b%04d" % i


class Replayer:
    """Applies every returned reorg to a list, checking each step is well-formed."""

    def __init__(self, tree: BlockTree) -> None:
        self.tree = tree
        self.chain = [tree.genesis_id]

    def apply(self, reorg: Reorg) -> None:
        for block_id in reorg.old_canonical:
            assert self.chain[-1] == block_id, "disconnect must start at the tip"
            self.chain.pop()
        for block_id in reorg.new_canonical:
            assert self.tree.entry(block_id).parent_id == self.chain[-1], "connect out of order"
            self.chain.append(block_id)
        assert self.chain[-1] == self.tree.tip


def canonical_chain(tree: BlockTree) -> list[bytes]:
    tip = tree.entry(tree.tip)
    return [tree.ancestor(tip.block_id, h) for h in range(tip.height + 1)]


def test_longest_chain_and_reorg() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    assert tree.add(b"a1", parent_id=G, work=10) == Reorg((b"a1",), ())
    assert tree.add(b"a2", parent_id=b"a1", work=10) == Reorg((b"a2",), ())
    # Side chain with less work: no change.
    assert tree.add(b"b1", parent_id=G, work=15) == NO_CHANGE
    # Equal work (b1+b2 = 20 = a1+a2): the first seen (a2) keeps the tip.
    assert tree.add(b"b2", parent_id=b"b1", work=5) == NO_CHANGE
    assert tree.tip == b"a2"
    # More work: reorg; disconnect tip first, connect lowest first.
    assert tree.add(b"b3", parent_id=b"b2", work=1) == Reorg((b"b1", b"b2", b"b3"),
                                                              (b"a2", b"a1"))
    assert tree.entry(b"b3").height == 3
    assert tree.entry(b"b3").cumulative_work == 22
    # Duplicate: no change.
    assert tree.add(b"b3", parent_id=b"b2", work=1000) == NO_CHANGE
    assert tree.entry(b"b3").cumulative_work == 22


def test_orphans_wait_for_parent() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    assert tree.add(b"c", parent_id=b"b", work=1) == NO_CHANGE
    assert tree.add(b"b", parent_id=b"a", work=1) == NO_CHANGE
    assert tree.is_orphan(b"c")
    assert tree.orphan_count == 2
    assert tree.add(b"a", parent_id=G, work=1) == Reorg((b"a", b"b", b"c"), ())
    assert tree.orphan_count == 0
    assert tree.tip == b"c"


def test_orphan_pool_is_bounded() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1, max_orphans=3)
    for i in range(5):
        tree.add(bid(i), parent_id=b"missing%d" % i, work=1)
    assert tree.orphan_count == 3
    assert not tree.is_orphan(bid(0))
    assert not tree.is_orphan(bid(1))
    assert tree.is_orphan(bid(4))


def test_invalidate_moves_to_best_valid_and_blocks_descendants() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    replay = Replayer(tree)
    replay.apply(tree.add(b"a1", parent_id=G, work=1))
    replay.apply(tree.add(b"b1", parent_id=G, work=1))
    replay.apply(tree.add(b"b2", parent_id=b"b1", work=1))
    assert tree.tip == b"b2"
    reorg = tree.invalidate(b"b1")
    assert reorg == Reorg((b"a1",), (b"b2", b"b1"))
    replay.apply(reorg)
    # Children of invalid blocks are invalid on arrival, however heavy.
    assert tree.add(b"b3", parent_id=b"b2", work=100) == NO_CHANGE
    assert tree.is_invalid(b"b3")
    assert tree.tip == b"a1"
    with pytest.raises(ValueError):
        tree.invalidate(G)
    with pytest.raises(ValueError):
        tree.add(b"z", parent_id=G, work=0)


def test_restore_round_trip() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    tree.add(b"a1", parent_id=G, work=2)
    tree.add(b"b1", parent_id=G, work=2)
    tree.add(b"b2", parent_id=b"b1", work=2)
    tree.add(b"a2", parent_id=b"a1", work=2)
    tree.invalidate(b"b2")
    restored = BlockTree.restore(reversed(list(tree.entries())), invalid=[b"b2"])
    assert restored.tip == tree.tip == b"a2"
    assert restored.is_invalid(b"b2")
    # The restored tree continues the seen order: a tie goes to the older block.
    restored.add(b"c2", parent_id=b"b1", work=2)
    assert restored.tip == b"a2"
    bad = TreeEntry(block_id=b"x", parent_id=G, height=2, work=1, cumulative_work=2, seen=9)
    with pytest.raises(ValueError):
        BlockTree.restore([tree.entry(G), bad])


@st.composite
def block_sets(draw: st.DrawFn, *, unique_work: bool) -> list[tuple[bytes, bytes, int]]:
    n = draw(st.integers(min_value=1, max_value=40))
    blocks = []
    for i in range(1, n + 1):
        parent = G if i == 1 else draw(st.sampled_from([G] + [bid(j) for j in range(1, i)]))
        # Distinct powers of two make every path's total distinct: no ties anywhere.
        work = 2**i if unique_work else draw(st.integers(min_value=1, max_value=3))
        blocks.append((bid(i), parent, work))
    return blocks


def feed(blocks: list[tuple[bytes, bytes, int]]) -> BlockTree:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    replay = Replayer(tree)
    for block_id, parent_id, work in blocks:
        replay.apply(tree.add(block_id, parent_id=parent_id, work=work))
    assert replay.chain == canonical_chain(tree)
    return tree


@settings(max_examples=200)
@given(data=st.data(), blocks=block_sets(unique_work=True))
def test_any_order_ends_on_same_tip(data: st.DataObject,
                                    blocks: list[tuple[bytes, bytes, int]]) -> None:
    in_order = feed(blocks)
    shuffled = data.draw(st.permutations(blocks))
    any_order = feed(shuffled)
    assert any_order.tip == in_order.tip
    assert any_order.orphan_count == 0
    assert any_order.entry(any_order.tip).cumulative_work == max(
        e.cumulative_work for e in in_order.entries())


@settings(max_examples=200)
@given(data=st.data(), blocks=block_sets(unique_work=False))
def test_ties_go_to_first_seen_in_any_order(data: st.DataObject,
                                            blocks: list[tuple[bytes, bytes, int]]) -> None:
    shuffled = data.draw(st.permutations(blocks))
    tree = feed(shuffled)
    seen_order = {block_id: i for i, (block_id, _, _) in enumerate(shuffled)}
    best = max(tree.entries(),
               key=lambda e: (e.cumulative_work, -seen_order.get(e.block_id, -1)))
    assert tree.tip == best.block_id


@settings(max_examples=100)
@given(data=st.data(), blocks=block_sets(unique_work=False))
def test_invalidate_matches_recomputation(data: st.DataObject,
                                          blocks: list[tuple[bytes, bytes, int]]) -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    replay = Replayer(tree)
    for block_id, parent_id, work in blocks:
        replay.apply(tree.add(block_id, parent_id=parent_id, work=work))
    victim = data.draw(st.sampled_from([b for b, _, _ in blocks]))
    replay.apply(tree.invalidate(victim))
    assert victim not in canonical_chain(tree)
    valid = [e for e in tree.entries() if not tree.is_invalid(e.block_id)]
    best = max(valid, key=lambda e: (e.cumulative_work, -e.seen))
    assert tree.tip == best.block_id
