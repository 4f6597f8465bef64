"""Fork choice: a block tree where the highest justified checkpoint, then the most cumulative
work, wins, above the finalized block.

Pure bookkeeping, no I/O and no clock: the tree knows each block's parent, height and
cumulative work, holds orphans until their parent arrives, and answers every insertion with
the reorg it causes as ``(new_canonical, old_canonical)`` (py-evm style):

* ``new_canonical``: block ids to connect, lowest first (fork point excluded);
* ``old_canonical``: block ids to disconnect, old tip first.

Order (docs/finality.md §8): a block's *justified epoch* (the epoch of the last justified
checkpoint in its post-state, as in Gasper's fork choice from the justified checkpoint) counts
first, then cumulative work. The tree cannot execute blocks: a new block inherits its parent's
justified epoch (a lower bound: justification only grows along a chain) until the chain store,
which executed it, reports the real one with `set_justified`. Tie rule: among blocks of equal
justified epoch and cumulative work the one *seen first* wins, where "seen" is the order of
``add`` calls (an orphan is seen when it arrives, not when its parent does). The tip is
therefore always the maximum of ``(justified, cumulative_work, -seen)`` over all valid blocks
descending from the finalized block, whatever order the blocks came in.

Finality (docs/finality.md §8): the tree keeps a *finalized* block (genesis at first) and the
most-work rule applies only among its descendants. `add` refuses a block off the finalized
chain with `ForkChoiceError` (``forkchoice.conflicts_with_finalized``), so sync and reorgs
never cross it; `finalize` only moves it forward along the chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import NamedTuple

from core.errors import ForkChoiceError

BlockId = bytes


class Reorg(NamedTuple):
    """The effect of an insertion on the canonical chain."""

    new_canonical: tuple[BlockId, ...]
    old_canonical: tuple[BlockId, ...]


NO_CHANGE = Reorg((), ())


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeEntry:
    """What the tree knows of one block."""

    block_id: BlockId
    parent_id: BlockId | None
    height: int
    work: int
    cumulative_work: int
    seen: int
    justified: int = 0  # epoch of the last justified checkpoint in its post-state (a bound)


@dataclass(frozen=True, slots=True)
class _Orphan:
    block_id: BlockId
    parent_id: BlockId
    work: int
    seen: int


def _key(entry: TreeEntry) -> tuple[int, int, int]:
    """Sort key of the fork choice: higher justified epoch, then more work, then seen first."""
    return entry.justified, entry.cumulative_work, -entry.seen


class BlockTree:
    """All known blocks, the best tip, the orphans waiting for a parent."""

    def __init__(self, *, genesis_id: BlockId, genesis_work: int, max_orphans: int = 1024) -> None:
        # Work must be positive, or a chain could grow without gaining weight.
        if genesis_work <= 0:
            raise ValueError("work must be positive")
        genesis = TreeEntry(block_id=genesis_id, parent_id=None, height=0, work=genesis_work,
                            cumulative_work=genesis_work, seen=0)
        self.genesis_id = genesis_id
        self.max_orphans = max_orphans
        self._entries: dict[BlockId, TreeEntry] = {genesis_id: genesis}
        self._children: dict[BlockId, list[BlockId]] = {genesis_id: []}
        self._invalid: set[BlockId] = set()
        self._orphans: dict[BlockId, _Orphan] = {}
        self._orphans_by_parent: dict[BlockId, list[BlockId]] = {}
        self._next_seen = 1
        self._tip = genesis
        self._finalized = genesis

    # -- queries -------------------------------------------------------------------------------

    @property
    def tip(self) -> BlockId:
        """Id of the best valid block."""
        return self._tip.block_id

    @property
    def tip_entry(self) -> TreeEntry:
        return self._tip

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, block_id: BlockId) -> TreeEntry:
        """The tree entry of a connected block (KeyError when unknown)."""
        return self._entries[block_id]

    def entries(self) -> Iterable[TreeEntry]:
        return self._entries.values()

    @property
    def finalized(self) -> BlockId:
        """Id of the finalized block: every block the tree accepts descends from it."""
        return self._finalized.block_id

    def descends_from_finalized(self, block_id: BlockId) -> bool:
        """Whether a connected block is the finalized block or one of its descendants."""
        return self._descends(self._entries[block_id], self._finalized)

    def _descends(self, entry: TreeEntry, ancestor: TreeEntry) -> bool:
        if entry.height < ancestor.height:
            return False
        return self.ancestor(entry.block_id, ancestor.height) == ancestor.block_id

    def is_orphan(self, block_id: BlockId) -> bool:
        return block_id in self._orphans

    def is_invalid(self, block_id: BlockId) -> bool:
        return block_id in self._invalid

    @property
    def orphan_count(self) -> int:
        return len(self._orphans)

    def ancestor(self, block_id: BlockId, height: int) -> BlockId:
        """The ancestor of ``block_id`` at ``height`` (the block itself at its own height)."""
        entry = self._entries[block_id]
        if not 0 <= height <= entry.height:
            raise ValueError("height out of range")
        while entry.height > height:
            assert entry.parent_id is not None
            entry = self._entries[entry.parent_id]
        return entry.block_id

    def path(self, from_id: BlockId, to_id: BlockId) -> Reorg:
        """The reorg that moves the canonical tip from ``from_id`` to ``to_id``."""
        old = self._entries[from_id]
        new = self._entries[to_id]
        disconnect: list[BlockId] = []
        connect: list[BlockId] = []
        while old.height > new.height:
            disconnect.append(old.block_id)
            old = self._parent(old)
        while new.height > old.height:
            connect.append(new.block_id)
            new = self._parent(new)
        while old.block_id != new.block_id:
            disconnect.append(old.block_id)
            connect.append(new.block_id)
            old = self._parent(old)
            new = self._parent(new)
        connect.reverse()
        return Reorg(tuple(connect), tuple(disconnect))

    def _parent(self, entry: TreeEntry) -> TreeEntry:
        assert entry.parent_id is not None, "walked past genesis"
        return self._entries[entry.parent_id]

    # -- updates -------------------------------------------------------------------------------

    def add(self, block_id: BlockId, *, parent_id: BlockId, work: int) -> Reorg:
        """Insert a block; return the reorg it causes (empty for a side chain or an orphan).

        A block whose parent is unknown is held as an orphan and connected when the parent
        arrives; the orphan pool is bounded by ``max_orphans`` (oldest dropped first). A block
        already known, or a descendant of an invalid block, changes nothing. A block whose
        parent is known but off the finalized chain raises `ForkChoiceError`
        (``forkchoice.conflicts_with_finalized``) and is not added.
        """
        # Work must be positive, or a chain could grow without gaining weight.
        if work <= 0:
            raise ValueError("work must be positive")
        # A known block (connected or orphan) is a duplicate: first seen wins.
        if block_id in self._entries or block_id in self._orphans:
            return NO_CHANGE
        # A block must descend from the finalized block: no reorg crosses finality.
        parent = self._entries.get(parent_id)
        if parent is not None and not self._descends(parent, self._finalized):
            raise ForkChoiceError(
                "forkchoice.conflicts_with_finalized",
                f"block {block_id.hex()} is off the chain of the finalized block "
                f"{self._finalized.block_id.hex()} (height {self._finalized.height})")
        seen = self._next_seen
        self._next_seen += 1
        # Unknown parent: hold until it arrives.
        if parent_id not in self._entries:
            self._hold_orphan(_Orphan(block_id, parent_id, work, seen))
            return NO_CHANGE
        old_tip = self._tip
        self._attach(block_id, parent_id, work, seen)
        return self.path(old_tip.block_id, self._tip.block_id)

    def _hold_orphan(self, orphan: _Orphan) -> None:
        self._orphans[orphan.block_id] = orphan
        self._orphans_by_parent.setdefault(orphan.parent_id, []).append(orphan.block_id)
        while len(self._orphans) > self.max_orphans:
            oldest = min(self._orphans.values(), key=lambda o: o.seen)
            self._drop_orphan(oldest)

    def _drop_orphan(self, orphan: _Orphan) -> None:
        del self._orphans[orphan.block_id]
        siblings = self._orphans_by_parent[orphan.parent_id]
        siblings.remove(orphan.block_id)
        if not siblings:
            del self._orphans_by_parent[orphan.parent_id]

    def _attach(self, block_id: BlockId, parent_id: BlockId, work: int, seen: int) -> None:
        """Connect a block and, transitively, every orphan waiting for it."""
        pending = [(block_id, parent_id, work, seen)]
        while pending:
            bid, pid, w, s = pending.pop()
            parent = self._entries[pid]
            entry = TreeEntry(block_id=bid, parent_id=pid, height=parent.height + 1, work=w,
                              cumulative_work=parent.cumulative_work + w, seen=s,
                              justified=parent.justified)
            self._entries[bid] = entry
            self._children[bid] = []
            self._children[pid].append(bid)
            # A descendant of an invalid block is invalid.
            if pid in self._invalid:
                self._invalid.add(bid)
            elif _key(entry) > _key(self._tip):
                self._tip = entry
            for child_id in list(self._orphans_by_parent.get(bid, ())):
                orphan = self._orphans[child_id]
                self._drop_orphan(orphan)
                pending.append((orphan.block_id, orphan.parent_id, orphan.work, orphan.seen))

    def set_justified(self, block_id: BlockId, epoch: int) -> Reorg:
        """Record the justified epoch of a block's post-state (the chain store executed it);
        return the reorg to the new best tip.

        Descendants that only inherited a lower bound are raised with it. A lower value than
        the one known changes nothing (justification never shrinks along a chain)."""
        entry = self._entries[block_id]
        if epoch <= entry.justified:
            return NO_CHANGE
        old_tip = self._tip
        best = self._tip
        stack = [block_id]
        while stack:
            current = self._entries[stack.pop()]
            if current.justified >= epoch:
                continue  # its subtree already knows as much
            raised = replace(current, justified=epoch)
            self._entries[raised.block_id] = raised
            if raised.block_id == best.block_id:
                best = raised
            if raised.block_id not in self._invalid and self._descends(raised, self._finalized) \
                    and _key(raised) > _key(best):
                best = raised
            stack.extend(self._children[raised.block_id])
        if self._finalized.block_id in self._entries:
            self._finalized = self._entries[self._finalized.block_id]
        self._tip = best
        return self.path(old_tip.block_id, best.block_id)

    def invalidate(self, block_id: BlockId) -> Reorg:
        """Mark a block and its descendants invalid; return the reorg to the best valid tip."""
        # Genesis is valid by definition.
        if block_id == self.genesis_id:
            raise ValueError("cannot invalidate genesis")
        # The finalized block and its ancestors stay valid (finality is never undone).
        if self._descends(self._finalized, self._entries[block_id]):
            raise ValueError("cannot invalidate the finalized block or its ancestors")
        old_tip = self._tip
        stack = [block_id]
        while stack:
            bid = stack.pop()
            self._invalid.add(bid)
            stack.extend(self._children[bid])
        if old_tip.block_id in self._invalid:
            self._tip = self._best_descendant(self._finalized)
        return self.path(old_tip.block_id, self._tip.block_id)

    def finalize(self, block_id: BlockId) -> Reorg:
        """Move the finalized block forward to ``block_id``; return the reorg to the best tip
        among its descendants (a heavier chain off it stops counting).

        A block at or below the finalized height on the finalized chain changes nothing (a
        reorg onto a branch whose state has finalized less); a block off the finalized chain
        or an invalid one raises `ForkChoiceError` (``forkchoice.finality_conflict``): two
        conflicting finalized blocks mean the validators broke the protocol.
        """
        entry = self._entries[block_id]
        # The new finalized block must be on the finalized chain, either side of it.
        on_chain = (self._descends(entry, self._finalized)
                    or self._descends(self._finalized, entry))
        if not on_chain or block_id in self._invalid:
            raise ForkChoiceError("forkchoice.finality_conflict",
                                  f"{block_id.hex()} conflicts with the finalized block "
                                  f"{self._finalized.block_id.hex()}")
        if entry.height <= self._finalized.height:
            return NO_CHANGE
        old_tip = self._tip
        self._finalized = entry
        self._tip = self._best_descendant(entry)
        return self.path(old_tip.block_id, self._tip.block_id)

    def _best_descendant(self, root: TreeEntry) -> TreeEntry:
        """The fork choice's tip among the valid descendants of ``root`` (itself included)."""
        best = root
        stack = [root.block_id]
        while stack:
            entry = self._entries[stack.pop()]
            if entry.block_id in self._invalid:
                continue  # its descendants are invalid too
            if _key(entry) > _key(best):
                best = entry
            stack.extend(self._children[entry.block_id])
        return best

    # -- persistence -----------------------------------------------------------------------------

    @classmethod
    def restore(cls, entries: Iterable[TreeEntry], *, invalid: Iterable[BlockId] = (),
                max_orphans: int = 1024, finalized: BlockId | None = None) -> BlockTree:
        """Rebuild a tree from stored entries (any order), keeping their ``seen`` numbers;
        ``finalized``: the finalized block (None: genesis)."""
        ordered = sorted(entries, key=lambda e: (e.height, e.seen))
        # The tree must contain exactly one root, at height 0.
        if not ordered or ordered[0].height != 0 or ordered[0].parent_id is not None:
            raise ValueError("no genesis entry")
        genesis = ordered[0]
        tree = cls(genesis_id=genesis.block_id, genesis_work=genesis.work,
                   max_orphans=max_orphans)
        tree._entries[genesis.block_id] = genesis
        tree._tip = genesis
        for e in ordered[1:]:
            # Entries must hang off a known parent with consistent height and work.
            if e.parent_id not in tree._entries:
                raise ValueError("entry without parent")
            parent = tree._entries[e.parent_id]
            inconsistent_work = e.cumulative_work != parent.cumulative_work + e.work
            if e.height != parent.height + 1 or inconsistent_work:
                raise ValueError("inconsistent entry")
            tree._entries[e.block_id] = e
            tree._children[e.block_id] = []
            tree._children[e.parent_id].append(e.block_id)
        for bid in invalid:
            if bid in tree._entries:
                stack = [bid]
                while stack:
                    b = stack.pop()
                    tree._invalid.add(b)
                    stack.extend(tree._children[b])
        if finalized is not None:
            # The finalized block must be a stored, valid block.
            if finalized not in tree._entries or finalized in tree._invalid:
                raise ValueError("finalized block unknown or invalid")
            tree._finalized = tree._entries[finalized]
        tree._tip = tree._best_descendant(tree._finalized)
        tree._next_seen = max(e.seen for e in ordered) + 1
        return tree
