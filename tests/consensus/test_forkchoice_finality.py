"""Fork choice above the finalized block: most work counts only among its descendants, a
block off its chain is refused with a reason, and finality only moves forward."""

from __future__ import annotations

import pytest

from consensus.forkchoice import NO_CHANGE, BlockTree, Reorg
from core.errors import ForkChoiceError

G = b"genesis"


def add_branch(tree: BlockTree, prefix: str, parent: bytes, length: int, *, work: int = 1
          ) -> list[bytes]:
    """Add ``length`` blocks named ``<prefix><i>`` on ``parent``; return their ids."""
    ids = []
    for i in range(length):
        block_id = f"{prefix}{i}".encode()
        tree.add(block_id, parent_id=parent, work=work)
        ids.append(block_id)
        parent = block_id
    return ids


def test_a_heavier_branch_off_the_finalized_block_stops_counting() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    a = add_branch(tree, "a", G, 3)  # a0 a1 a2
    b = add_branch(tree, "b", a[0], 5)  # heavier, forks after a0
    assert tree.tip == b[-1]
    reorg = tree.finalize(a[1])  # a1 is off the b branch
    assert tree.finalized == a[1]
    assert tree.tip == a[-1]
    assert reorg == Reorg(new_canonical=(a[1], a[2]), old_canonical=tuple(reversed(b)))
    assert tree.descends_from_finalized(a[2]) and not tree.descends_from_finalized(b[-1])


def test_a_block_off_the_finalized_chain_is_refused_with_a_reason() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    a = add_branch(tree, "a", G, 4)
    tree.finalize(a[2])
    size = len(tree)
    for parent in (G, a[0], a[1]):  # siblings of the finalized chain, below the finalized height
        with pytest.raises(ForkChoiceError) as refused:
            tree.add(b"x" + parent, parent_id=parent, work=100)
        assert refused.value.rule == "forkchoice.conflicts_with_finalized"
    assert len(tree) == size and tree.tip == a[-1]
    # a long private chain built before finality and delivered afterwards is refused too
    with pytest.raises(ForkChoiceError):
        tree.add(b"p0", parent_id=a[1], work=10**6)
    # extending the finalized block itself, or its descendants, is fine
    assert tree.add(b"c0", parent_id=a[2], work=10) == Reorg((b"c0",), (a[3],))


def test_orphans_attach_above_the_finalized_block() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    a = add_branch(tree, "a", G, 3)
    tree.finalize(a[2])
    assert tree.add(b"o1", parent_id=b"o0", work=1) == NO_CHANGE  # orphan: parent unknown
    assert tree.add(b"o0", parent_id=a[2], work=1) == Reorg((b"o0", b"o1"), ())


def test_finality_moves_only_forward_and_a_conflict_is_an_error() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    a = add_branch(tree, "a", G, 4)
    b = add_branch(tree, "b", a[0], 2)
    assert tree.finalize(a[2]) == NO_CHANGE  # a is already the best chain
    assert tree.finalize(a[1]) == NO_CHANGE and tree.finalized == a[2]  # older: ignored
    assert tree.finalize(a[2]) == NO_CHANGE
    with pytest.raises(ForkChoiceError) as conflict:
        tree.finalize(b[1])
    assert conflict.value.rule == "forkchoice.finality_conflict"
    assert tree.finalized == a[2]
    with pytest.raises(ValueError):
        tree.invalidate(a[1])  # an ancestor of the finalized block
    assert not tree.is_invalid(a[1])


def test_invalidating_the_tip_falls_back_to_the_best_eligible_block() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    a = add_branch(tree, "a", G, 3)  # work 3
    b = add_branch(tree, "b", G, 2, work=2)  # work 4
    assert tree.tip == b[-1]
    tree.finalize(a[0])
    assert tree.tip == a[-1]
    reorg = tree.invalidate(a[2])
    assert tree.tip == a[1]  # not b1, though b1 has more work: b is off the finalized chain
    assert reorg == Reorg((), (a[2],))


def test_restore_keeps_the_finalized_block() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    a = add_branch(tree, "a", G, 2)
    b = add_branch(tree, "b", G, 3)
    tree.finalize(a[1])
    restored = BlockTree.restore(tree.entries(), finalized=tree.finalized)
    assert restored.finalized == a[1] and restored.tip == a[-1]
    assert BlockTree.restore(tree.entries()).tip == b[-1]  # without it: most work overall
    with pytest.raises(ForkChoiceError):
        restored.add(b"b9", parent_id=b[-1], work=1)
    with pytest.raises(ValueError):
        BlockTree.restore(tree.entries(), finalized=b"unknown")


def test_a_lighter_chain_with_a_higher_justified_checkpoint_wins() -> None:
    """Gasper's order: the justified epoch of a block's post-state first, then work. The
    minority side of a partition (heavier, nothing justified) gives way to the majority."""
    tree = BlockTree(genesis_id=G, genesis_work=1)
    shared = add_branch(tree, "s", G, 2)
    tree.set_justified(shared[-1], 1)  # both sides start from the same justified checkpoint
    heavy = add_branch(tree, "h", shared[-1], 6, work=5)  # the minority's mining, epoch 1
    assert tree.tip == heavy[-1] and tree.entry(heavy[-1]).justified == 1  # inherited bound
    light = add_branch(tree, "l", shared[-1], 3)  # the majority: less work
    assert tree.tip == heavy[-1]  # unknown justified epoch: only the bound from the fork point
    reorg = tree.set_justified(light[1], 2)  # executing l1 showed a later justified checkpoint
    assert tree.tip == light[-1]  # l2 inherits 2 from l1: the whole lighter chain wins
    assert tree.entry(light[2]).justified == 2 and tree.entry(light[0]).justified == 1
    assert reorg == Reorg(new_canonical=tuple(light), old_canonical=tuple(reversed(heavy)))
    # more work on the minority's side changes nothing while it justifies less
    assert tree.add(b"h6", parent_id=heavy[-1], work=1000) == NO_CHANGE
    # a lower report never lowers a block's epoch (justification only grows along a chain)
    assert tree.set_justified(light[2], 1) == NO_CHANGE and tree.tip == light[-1]
    # the order survives a restore
    restored = BlockTree.restore(list(tree.entries()))
    assert restored.tip == light[-1] and restored.entry(light[2]).justified == 2


def test_equal_justified_epochs_fall_back_to_work_then_first_seen() -> None:
    tree = BlockTree(genesis_id=G, genesis_work=1)
    a = add_branch(tree, "a", G, 2)
    b = add_branch(tree, "b", G, 3)
    assert tree.tip == b[-1]  # no justification anywhere: most work
    tree.set_justified(a[-1], 3)
    assert tree.tip == a[-1]
    assert tree.set_justified(b[-1], 3) == Reorg(tuple(b), tuple(reversed(a)))  # tie: work
    c = add_branch(tree, "c", G, 3)
    tree.set_justified(c[-1], 3)
    assert tree.tip == b[-1]  # tie on epoch and work: seen first
    # the justified epoch never lifts a branch off the finalized chain
    tree.finalize(b[0])
    assert tree.set_justified(a[-1], 9) == NO_CHANGE and tree.tip == b[-1]
