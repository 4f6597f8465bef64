"""The chain store: blocks, the block tree, undo data, the state and the tip, in one LevelDB.

Crash safety comes from one rule: every change of the canonical chain is ONE atomic LevelDB
batch. ``connect_block`` writes the block (if new), its undo data, the state changes, the
height index and the new tip together; ``disconnect_block`` writes the restored state, the
removed index entry and the parent as tip together. A process killed at any point therefore
reopens on the previous or the new tip, never a mix. A reorg is a sequence of such batches:
a crash half way leaves a consistent (shorter) chain, and reopening resumes the reorg, because
the fork choice is rebuilt from the stored tree and the store moves to its best tip.

Throughput: a block's signatures are checked in a small thread pool (PyNaCl releases the
GIL) before its sequential state transition, which then skips that rule
(``signatures_verified``); if any signature fails, the transition checks them inline and
names the exact rule broken. A received block is stored at once without a sync of its own:
its connect batch's synced write makes both durable, so a block costs one fsync. The ASERT
parameters come from ``ChainParams`` (halflife included) unless a ``DifficultyParams`` is
passed explicitly.

Key layout::

    blk/<id>        canonical encoding of the Block
    hdr/<id>        canonical encoding of its header (cheap parent lookups)
    tree/<id>       msgpack [parent_id, height, work, cumulative_work, seen, timestamp,
                    justified] (justified: epoch of the post-state's last justified checkpoint,
                    rewritten when the block connects; older records have 6 fields)
    undo/<id>       BlockUndo of a connected block
    hgt/<u64 be>    block id of the canonical block at that height
    bad/<id>        marker: the block broke a consensus rule on connect
    ret/<id>        marker: a disconnected block whose transactions the mempool has not
                    yet taken back (see "Returning transactions" below)
    s/...           the consensus state (``consensus.state`` layout under this prefix)
    meta/tip        id of the tip the state corresponds to
    meta/genesis    id of the genesis block (which network this directory belongs to)
    meta/finalized  msgpack [epoch, height, id]: the last finalized checkpoint this node saw

Finality (docs/finality.md): the node keeps the newest finalized checkpoint any of its
canonical blocks proved (``finalized``; monotonic, written in the connect batch that proved
it, so a restart keeps it). The fork choice then only ever considers chains that contain it:
a block whose branch misses it is refused (`core.errors.ForkChoiceError`, rule
``forkchoice.conflicts_with_finalized``),
so neither sync nor a reorg can cross it. Among the chains that contain it, the one whose
post-state has the highest justified checkpoint wins, then the most work (`BlockTree`). The
store tells the tree each connected block's justified epoch; a side-branch block carrying a
``FinalityVotes`` aggregate is *evaluated* (replayed in a batch that is thrown away: undo to
the fork point, connect up to it) so a lighter chain that justified more can win. This is how
a node that was on the minority side of a partition adopts the majority's finalized chain.

Returning transactions: a disconnected block's transactions go back to the mempool (and its
journal) only after the whole sync batch, so a process killed in between would lose them, and
the journal's later nonces of the same senders would then be dropped as gaps (bench/chaos.py
measured 4 lost of 8,778 accepted this way). So ``disconnect_block`` writes ``ret/<id>`` in
the same batch that moves the tip; the node deletes the markers once the mempool has journaled
the update (`forget_returning`), and at start re-admits the transactions of every block still
marked (`returning_blocks`) together with the journal.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import msgpack

from consensus.block import Block, BlockHeader, work_of
from consensus.difficulty import Anchor, DifficultyParams, chain_difficulty, required_target
from consensus.finality import finality_status, finalized_block
from consensus.forkchoice import BlockTree, Reorg, TreeEntry
from consensus.genesis import GenesisConfig, build_genesis, dev_config, load_genesis_config
from consensus.tx import Transaction, signatures_valid
from consensus.validation import check_body, check_certificate, check_header, connect_block
from contracts.base import RECENT_BLOCK_COUNT
from contracts.finality import FinalityVotes
from core.errors import ConsensusError, ForkChoiceError, HeaderError
from core.interfaces import MemoryKV, PrefixedKV
from core.lthash import ElementCache
from core.params import MEDIAN_TIME_SPAN, ChainParams
from core.state import BlockUndo, RecordCache, State
from node.chain.db import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_WRITE_BUFFER_BYTES,
    Database,
    DatabaseError,
    NodeDatabase,
    WriteBatch,
)
from node.chain.lru import LruSet
from node.chain.mempool import Mempool, TipView

BLOCK = b"blk/"
HEADER = b"hdr/"
TREE = b"tree/"
UNDO = b"undo/"
HEIGHT = b"hgt/"
BAD = b"bad/"
RETURNING = b"ret/"
STATE = b"s/"
TIP_KEY = b"meta/tip"
GENESIS_KEY = b"meta/genesis"
FINALIZED_KEY = b"meta/finalized"
CONFLICTS_WITH_FINALIZED = "forkchoice.conflicts_with_finalized"  # the rule a peer is refused by

RECENT_BLOCKS = 16
# Signature checks of a block run in a thread pool before its sequential transition (PyNaCl
# releases the GIL while verifying); smaller blocks are checked inline by the transition.
DEFAULT_SIGNATURE_THREADS = 2
MIN_PARALLEL_SIGNATURES = 32

# Called at named points inside connect/disconnect (crash tests inject kills there).
Hook = Callable[["ChainStore", str], None]


class ChainStoreError(DatabaseError):
    """The store is inconsistent with its configuration (wrong network, missing data)."""


def finality_conflict(message: str) -> ForkChoiceError:
    """A block (or a peer's chain) does not contain our last finalized checkpoint."""
    return ForkChoiceError(CONFLICTS_WITH_FINALIZED, message)


@dataclass(frozen=True, slots=True)
class FinalizedCheckpoint:
    """The last finalized checkpoint this node knows: epoch, height and block id."""

    epoch: int
    height: int
    block_id: bytes

    def encode(self) -> bytes:
        return bytes(msgpack.packb([self.epoch, self.height, self.block_id], use_bin_type=True))

    @classmethod
    def decode(cls, raw: bytes) -> FinalizedCheckpoint:
        epoch, height, block_id = msgpack.unpackb(raw)
        return cls(epoch=int(epoch), height=int(height), block_id=bytes(block_id))


def _height_key(height: int) -> bytes:
    return HEIGHT + height.to_bytes(8, "big")


def default_difficulty(params: ChainParams) -> DifficultyParams:
    """The difficulty parameters the node derives from the chain parameters."""
    return chain_difficulty(params)


@dataclass
class ChainUpdate:
    """What one ``add_block`` changed: blocks connected and disconnected (in that order)."""

    connected: list[Block] = field(default_factory=list)
    disconnected: list[Block] = field(default_factory=list)
    invalid: list[bytes] = field(default_factory=list)

    def merge(self, other: ChainUpdate) -> None:
        self.connected.extend(other.connected)
        self.disconnected.extend(other.disconnected)
        self.invalid.extend(other.invalid)


@dataclass
class _Meta:
    """In-memory facts about a stored block the fork choice and header checks need."""

    timestamp: int


class ChainStore:
    """The node's chain: open it on a data directory, feed it blocks."""

    def __init__(self, db: Database, *, genesis: GenesisConfig,
                 difficulty: DifficultyParams | None = None, max_orphans: int = 256,
                 hook: Hook | None = None,
                 signature_threads: int = DEFAULT_SIGNATURE_THREADS) -> None:
        self.db = db
        self.config = genesis
        self.params = genesis.params
        self.difficulty = difficulty or default_difficulty(self.params)
        self.max_orphans = max_orphans
        self._hook = hook
        self.signature_threads = signature_threads
        self._pool: ThreadPoolExecutor | None = None
        # decoded state records shared by the per-block state views (see RecordCache)
        self._records = RecordCache()
        self._elements = ElementCache()  # LtHash elements of recently written pairs
        self._orphans: dict[bytes, Block] = {}
        # blocks recently received or connected: a reorg right after add_block needs no decode
        self._recent: OrderedDict[bytes, Block] = OrderedDict()
        genesis_block = build_genesis(genesis, State(MemoryKV()))
        self.genesis_id = genesis_block.header.block_id()
        self.genesis_header = genesis_block.header
        stored = db.get(GENESIS_KEY)
        if stored is None:
            self._init_genesis(genesis_block)
        elif stored != self.genesis_id:
            raise ChainStoreError(
                f"data directory {db.path} belongs to another network "
                f"(genesis {stored.hex()[:16]}, expected {self.genesis_id.hex()[:16]})")
        self._timestamps: dict[bytes, int] = {}
        raw_finalized = db.get(FINALIZED_KEY)
        self._finalized = FinalizedCheckpoint(epoch=0, height=0, block_id=self.genesis_id) \
            if raw_finalized is None else FinalizedCheckpoint.decode(raw_finalized)
        self.tree = self._load_tree()
        tip = db.get(TIP_KEY)
        if tip is None or tip not in self.tree:
            raise ChainStoreError("stored tip is missing from the block tree")
        self._tip: tuple[bytes, BlockHeader] = (tip, self._header(tip))

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, genesis: GenesisConfig,
             difficulty: DifficultyParams | None = None, hook: Hook | None = None,
             signature_threads: int = DEFAULT_SIGNATURE_THREADS) -> ChainStore:
        """Open (or create) a store and finish any reorg a crash interrupted."""
        db = Database(path)
        store: ChainStore | None = None
        try:
            store = cls(db, genesis=genesis, difficulty=difficulty, hook=hook,
                        signature_threads=signature_threads)
            store.resume()
        except BaseException:
            if store is not None:
                store.close()
            db.close()
            raise
        return store

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.db.close()

    def _fire(self, point: str) -> None:
        if self._hook is not None:
            self._hook(self, point)

    # -- setup -------------------------------------------------------------------------------

    def _init_genesis(self, block: Block) -> None:
        batch = self.db.batch()
        state = self._state(batch)
        build_genesis(self.config, state)
        block_id = block.header.block_id()
        work = work_of(block.header.target)
        self._put_block(batch, block, TreeEntry(block_id=block_id, parent_id=None, height=0,
                                                work=work, cumulative_work=work, seen=0))
        batch.put(_height_key(0), block_id)
        batch.put(TIP_KEY, block_id)
        batch.put(GENESIS_KEY, block_id)
        batch.commit()

    def _load_tree(self) -> BlockTree:
        entries = []
        for key, value in self.db.iterate_prefix(TREE):
            block_id = key[len(TREE):]
            parent, height, work, cumulative, seen, timestamp, *rest = msgpack.unpackb(value)
            entries.append(TreeEntry(block_id=block_id, parent_id=parent or None, height=height,
                                     work=int.from_bytes(work, "big"),
                                     cumulative_work=int.from_bytes(cumulative, "big"),
                                     seen=seen, justified=int(rest[0]) if rest else 0))
            self._timestamps[block_id] = timestamp
        invalid = [key[len(BAD):] for key, _ in self.db.iterate_prefix(BAD)]
        return BlockTree.restore(entries, invalid=invalid, max_orphans=self.max_orphans,
                                 finalized=self._finalized.block_id)

    def _put_block(self, batch: WriteBatch, block: Block, entry: TreeEntry) -> None:
        """Stage a block and its tree entry (idempotent: same bytes for the same id)."""
        batch.put(BLOCK + entry.block_id, block.encode())
        batch.put(HEADER + entry.block_id, block.header.encode())
        self._put_tree_record(batch, entry, block.header.timestamp)

    @staticmethod
    def _put_tree_record(batch: WriteBatch, entry: TreeEntry, timestamp: int) -> None:
        record = [entry.parent_id or b"", entry.height, _u256(entry.work),
                  _u256(entry.cumulative_work), entry.seen, timestamp, entry.justified]
        batch.put(TREE + entry.block_id, msgpack.packb(record, use_bin_type=True))

    # -- reads -------------------------------------------------------------------------------

    # The tip is one tuple, replaced whole by the chain thread, so a reader on another thread
    # never sees a new id beside an old header (or height).
    @property
    def tip_id(self) -> bytes:
        return self._tip[0]

    @property
    def tip_header(self) -> BlockHeader:
        return self._tip[1]

    @property
    def height(self) -> int:
        return int(self._tip[1].height)

    def state_view(self) -> PrefixedKV:
        """The tip state for reads (do not write through it: use a batch)."""
        return PrefixedKV(self.db, STATE)

    def tip_view(self) -> TipView:
        """What the mempool checks transactions against: tip state and next height."""
        return TipView(state_kv=self.state_view(), height=self.height + 1, parent_id=self.tip_id,
                       recent_block_ids=self.recent_block_ids(self.tip_id))

    def state_root(self) -> bytes:
        return State(self.state_view()).root()

    def get_block(self, block_id: bytes) -> Block | None:
        raw = self.db.get(BLOCK + block_id)
        return None if raw is None else Block.decode(raw)

    def _block(self, block_id: bytes) -> Block:
        block = self._recent.get(block_id) or self.get_block(block_id)
        if block is None:
            raise ChainStoreError(f"block {block_id.hex()} missing")
        return block

    def _remember(self, block_id: bytes, block: Block) -> None:
        self._recent[block_id] = block
        self._recent.move_to_end(block_id)
        while len(self._recent) > RECENT_BLOCKS:
            self._recent.popitem(last=False)

    def _header(self, block_id: bytes) -> BlockHeader:
        cached = self._recent.get(block_id)
        if cached is not None:
            return cached.header
        raw = self.db.get(HEADER + block_id)
        if raw is None:
            raise ChainStoreError(f"header {block_id.hex()} missing")
        return BlockHeader.decode(raw)

    def block_id_at(self, height: int) -> bytes | None:
        """Id of the canonical block at ``height`` (None above the tip)."""
        return self.db.get(_height_key(height))

    def has_block(self, block_id: bytes) -> bool:
        return block_id in self.tree or block_id in self._orphans

    @property
    def finalized(self) -> FinalizedCheckpoint:
        """The last finalized checkpoint this node knows (genesis until one is finalized)."""
        return self._finalized

    def set_finalized(self, checkpoint: FinalizedCheckpoint,
                      batch: WriteBatch | None = None) -> bool:
        """Move our finalized checkpoint forward to ``checkpoint`` (a canonical block);
        False (nothing written) if it is not newer. With ``batch`` the write joins it (the
        connect that proved it), else it is written and synced at once."""
        if checkpoint.height <= self._finalized.height:
            return False
        # only a block of our canonical chain can be finalized by it
        if self.block_id_at(checkpoint.height) != checkpoint.block_id:
            raise ChainStoreError(f"finalized checkpoint {checkpoint.block_id.hex()[:16]} is "
                                  f"not our block at height {checkpoint.height}")
        if batch is None:
            self.db.put(FINALIZED_KEY, checkpoint.encode())
        else:
            batch.put(FINALIZED_KEY, checkpoint.encode())
        self._finalized = checkpoint
        self.tree.finalize(checkpoint.block_id)
        return True

    def check_finality(self, *, parent_id: bytes, height: int) -> None:
        """Raise `ForkChoiceError` unless a block at ``height`` on ``parent_id`` keeps our
        finalized checkpoint in its chain (the fork choice never looks at other chains)."""
        final = self._finalized
        # a new block at or below the finalized height forks below the checkpoint
        if height <= final.height:
            raise finality_conflict(f"block at height {height} forks below the finalized "
                                   f"checkpoint at height {final.height}")
        # its branch must pass through the finalized block
        if parent_id in self.tree and not self.tree.descends_from_finalized(parent_id):
            raise finality_conflict(f"branch misses the finalized checkpoint "
                                   f"{final.block_id.hex()[:16]} at height {final.height}")

    def expected_target(self, *, parent_id: bytes, timestamp: int) -> int:
        """The target the difficulty rule requires of a child of ``parent_id``."""
        parent = self.tree.entry(parent_id)
        anchor = Anchor(height=0,
                        parent_time=self.genesis_header.timestamp - self.params.target_block_time,
                        target=self.genesis_header.target)
        return required_target(params=self.difficulty, anchor=anchor, parent_height=parent.height,
                               parent_time=self._timestamps[parent_id], block_time=timestamp)

    def recent_block_ids(self, parent_id: bytes,
                         count: int = RECENT_BLOCK_COUNT) -> tuple[bytes, ...]:
        """Ids of the last ``count`` blocks ending at ``parent_id``, newest first: what the
        transition of a child of ``parent_id`` is given (calibration seeds, swarm beacons)."""
        ids: list[bytes] = []
        entry: TreeEntry | None = self.tree.entry(parent_id)
        while entry is not None and len(ids) < count:
            ids.append(entry.block_id)
            entry = None if entry.parent_id is None else self.tree.entry(entry.parent_id)
        return tuple(ids)

    def recent_timestamps(self, parent_id: bytes) -> list[int]:
        """Timestamps of the last MEDIAN_TIME_SPAN blocks ending at ``parent_id``, oldest first."""
        stamps: list[int] = []
        entry: TreeEntry | None = self.tree.entry(parent_id)
        while entry is not None and len(stamps) < MEDIAN_TIME_SPAN:
            stamps.append(self._timestamps[entry.block_id])
            entry = None if entry.parent_id is None else self.tree.entry(entry.parent_id)
        stamps.reverse()
        return stamps

    # -- receiving blocks ------------------------------------------------------------------------

    def add_block(self, block: Block, *, now: int) -> ChainUpdate:
        """Check a block's header, body and certificate, store it, and follow the fork choice.

        A block with an unknown parent waits in a bounded orphan pool. Raises a
        `ConsensusError` for a block that breaks a context rule (it is not stored).
        """
        update = ChainUpdate()
        pending = [block]
        first = True
        while pending:
            current = pending.pop()
            try:
                update.merge(self._add_one(current, now=now))
            except ConsensusError:
                if first:
                    raise
            first = False
            children = [b for b in self._orphans.values()
                        if b.header.parent_hash == current.header.block_id()]
            for child in children:
                del self._orphans[child.header.block_id()]
            pending.extend(children)
        return update

    def _add_one(self, block: Block, *, now: int) -> ChainUpdate:
        header = block.header
        block_id = header.block_id()
        # a known block changes nothing
        if block_id in self.tree or block_id in self._orphans:
            return ChainUpdate()
        parent_id = header.parent_hash
        # an unknown parent: hold the block until the parent arrives
        if parent_id not in self.tree:
            self._orphans[block_id] = block
            while len(self._orphans) > self.max_orphans:
                del self._orphans[next(iter(self._orphans))]
            return ChainUpdate()
        # a child of an invalid block is invalid
        if self.tree.is_invalid(parent_id):
            raise HeaderError("header.parent_invalid", parent_id.hex())
        parent = self._header(parent_id)
        check_header(header, parent=parent, recent_timestamps=self.recent_timestamps(parent_id),
                     now=now,
                     expected_target=self.expected_target(parent_id=parent_id,
                                                          timestamp=header.timestamp),
                     params=self.params)
        check_body(block, params=self.params)
        check_certificate(header)
        # the chain must contain the last finalized checkpoint; checked after the proof, since
        # a refusal costs its sender nothing (it may be honest, from the other side of a
        # partition) while a forged proof gets it banned
        self.check_finality(parent_id=parent_id, height=self.tree.entry(parent_id).height + 1)
        work = work_of(header.target)
        self.tree.add(block_id, parent_id=parent_id, work=work)
        self._timestamps[block_id] = header.timestamp
        self._remember(block_id, block)
        # Store the block before connecting it (readers on other threads serve it from the
        # database meanwhile). Not synced on its own: if it becomes the tip, its connect
        # batch's synced write carries it to disk; otherwise the next synced write does, and
        # a block lost in a power cut before that is simply fetched again.
        batch = self.db.batch()
        self._put_block(batch, block, self.tree.entry(block_id))
        batch.commit(sync=False)
        if self.tree.tip != block_id and _carries_votes(block):
            self.evaluate_branch(block_id)
        return self.resume()

    def evaluate_branch(self, block_id: bytes) -> None:
        """Learn the justified epochs of a side branch up to ``block_id`` without moving the
        tip: undo our blocks down to the fork point and connect the branch in ONE batch that
        is thrown away, telling the fork choice each block's justified epoch (it may then
        prefer the branch; `resume` walks there for real). Stops quietly at a block that
        breaks a rule: the real connect marks it invalid if the fork choice ever picks it."""
        reorg = self.tree.path(self.tip_id, block_id)
        batch = self.db.batch()
        try:
            state = State(PrefixedKV(batch, STATE), records=self._records)  # own LtHash cache
            for old_id in reorg.old_canonical:
                raw_undo = self.db.get(UNDO + old_id)
                if raw_undo is None:
                    raise ChainStoreError(f"undo data of {old_id.hex()} missing")
                state.apply_undo(BlockUndo.decode(raw_undo))
            for new_id in reorg.new_canonical:
                block = self._block(new_id)
                try:
                    connect_block(state, block, params=self.params,
                                  signatures_verified=self.verify_signatures(block.transactions),
                                  recent_block_ids=self.recent_block_ids(block.header.parent_hash))
                except ConsensusError:
                    return
                self.tree.set_justified(new_id, _justified_epoch(state))
        finally:
            batch.discard()

    def resume(self) -> ChainUpdate:
        """Move the stored tip to the fork choice's best valid tip, block by block.

        A block that fails the state transition is marked invalid (stored) and the store moves
        to the next best tip.
        """
        update = ChainUpdate()
        while self.tip_id != self.tree.tip:
            update.merge(self.walk_to(self.tree.tip))
        return update

    def walk_to(self, block_id: bytes) -> ChainUpdate:
        """Disconnect down to the fork point, then connect up to ``block_id``.

        Each step is one atomic batch. Stops early at a block that fails the state transition
        (marked invalid, reported in ``invalid``).
        """
        update = ChainUpdate()
        reorg = self.tree.path(self.tip_id, block_id)
        # a reorg never disconnects the finalized checkpoint (the fork choice's guard)
        if reorg.old_canonical and \
                self.tree.entry(reorg.old_canonical[-1]).height <= self._finalized.height:
            raise finality_conflict(f"reorg to {block_id.hex()[:16]} would cross the finalized "
                                   f"checkpoint at height {self._finalized.height}")
        for old_id in reorg.old_canonical:
            update.disconnected.append(self.disconnect_block(old_id))
        for new_id in reorg.new_canonical:
            block = self._block(new_id)
            try:
                self.connect_block(block)
            except ConsensusError:
                self._mark_invalid(new_id)
                update.invalid.append(new_id)
                break
            update.connected.append(block)
        return update

    def _mark_invalid(self, block_id: bytes) -> Reorg:
        with self.db.batch() as batch:
            # a block that was to be stored by its connect is stored with its marker
            if self.db.get(TREE + block_id) is None:
                self._put_block(batch, self._block(block_id), self.tree.entry(block_id))
            batch.put(BAD + block_id, b"")
        return self.tree.invalidate(block_id)

    # -- the two atomic chain operations ---------------------------------------------------------

    def _state(self, batch: WriteBatch) -> State:
        return State(PrefixedKV(batch, STATE), records=self._records, elements=self._elements)

    def verify_signatures(self, transactions: Sequence[Transaction]) -> bool:
        """Check every signature in the thread pool; False if any fails or none was checked.

        True lets the transition skip the signature rule (``signatures_verified``). On False
        the transition checks signatures inline, in rule order, and reports the exact rule
        that fails: the pool only ever speeds up a valid block.
        """
        threads = self.signature_threads
        if threads < 2 or len(transactions) < MIN_PARALLEL_SIGNATURES:
            return False
        if self._pool is None:
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="sigcheck")
        chunk = -(-len(transactions) // threads)
        futures = [self._pool.submit(signatures_valid, transactions[i:i + chunk])
                   for i in range(0, len(transactions), chunk)]
        return all([future.result() for future in futures])

    def connect_block(self, block: Block) -> BlockUndo:
        """Apply a child of the tip: ONE batch with block, undo, state, height index and tip."""
        header = block.header
        block_id = header.block_id()
        # only a child of the tip can be connected
        if header.parent_hash != self.tip_id:
            raise ChainStoreError("connect_block: not a child of the tip")
        self._fire("connect:begin")
        verified = self.verify_signatures(block.transactions)
        batch = self.db.batch()
        state = self._state(batch)
        undo = connect_block(state, block, params=self.params, signatures_verified=verified,
                             recent_block_ids=self.recent_block_ids(header.parent_hash))
        self._fire("connect:state_applied")
        if block_id not in self.tree:
            work = work_of(header.target)
            self.tree.add(block_id, parent_id=header.parent_hash, work=work)
            self._timestamps[block_id] = header.timestamp
        # the fork choice learns the justified epoch of the post-state; the tree record keeps it
        self.tree.set_justified(block_id, _justified_epoch(state))
        if self.db.get(TREE + block_id) is None:  # a block received through add_block is stored
            self._put_block(batch, block, self.tree.entry(block_id))
        else:
            self._put_tree_record(batch, self.tree.entry(block_id), header.timestamp)
        batch.put(UNDO + block_id, undo.encode())
        batch.put(_height_key(header.height), block_id)
        batch.put(TIP_KEY, block_id)
        proved = self._proved_finalized(state, header)
        if proved is not None:
            batch.put(FINALIZED_KEY, proved.encode())
        self._fire("connect:before_commit")
        batch.commit()
        if proved is not None:
            self._finalized = proved
            self.tree.finalize(proved.block_id)  # the fork choice's root moves with it
        self._fire("connect:after_commit")
        self._tip = (block_id, header)
        self._remember(block_id, block)
        return undo

    def _proved_finalized(self, state: State, header: BlockHeader) -> FinalizedCheckpoint | None:
        """The finalized checkpoint the state after ``header`` proves, if newer than ours
        (its block is on this chain: the state records only its own chain's checkpoints)."""
        status = finality_status(state)
        root = finalized_block(status)
        if status is None or root is None:
            return None
        epoch = status.finalized.epoch
        height = epoch * self.params.finality_epoch_blocks
        if height <= self._finalized.height or height > header.height:
            return None
        return FinalizedCheckpoint(epoch=epoch, height=height, block_id=root)

    def disconnect_block(self, block_id: bytes | None = None) -> Block:
        """Undo the tip: ONE batch with restored state, height index removal and the parent."""
        block_id = self.tip_id if block_id is None else block_id
        # only the tip can be disconnected, and never genesis
        if block_id != self.tip_id or block_id == self.genesis_id:
            raise ChainStoreError("disconnect_block: not the tip, or genesis")
        self._fire("disconnect:begin")
        block = self._block(block_id)
        raw_undo = self.db.get(UNDO + block_id)
        if raw_undo is None:
            raise ChainStoreError(f"undo data of {block_id.hex()} missing")
        undo = BlockUndo.decode(raw_undo)
        parent = self._header(block.header.parent_hash)
        batch = self.db.batch()
        state = self._state(batch)
        state.apply_undo(undo)
        self._fire("disconnect:state_applied")
        # the restored state must be exactly the parent's post-state
        if state.root() != parent.state_root:
            raise ChainStoreError("undo data does not restore the parent's state root")
        batch.delete(UNDO + block_id)
        batch.delete(_height_key(block.header.height))
        batch.put(TIP_KEY, parent.block_id())
        batch.put(RETURNING + block_id, b"")  # its transactions are owed to the mempool
        self._fire("disconnect:before_commit")
        batch.commit()
        self._fire("disconnect:after_commit")
        self._tip = (parent.block_id(), parent)
        return block

    def returning_blocks(self) -> list[Block]:
        """Disconnected blocks whose transactions the mempool has not yet taken back (a crash
        came between the reorg and the mempool's update), lowest first."""
        blocks = [self._block(key[len(RETURNING):])
                  for key, _ in self.db.iterate_prefix(RETURNING)]
        return sorted(blocks, key=lambda block: block.header.height)

    def forget_returning(self, block_ids: Iterable[bytes]) -> None:
        """The mempool has journaled these blocks' returning transactions: drop the markers
        (written after the journal, in the same database, so never before it)."""
        writes: dict[bytes, bytes | None] = {RETURNING + block_id: None for block_id in block_ids}
        if writes:
            self.db.write_raw(writes, sync=False)

    def canonical_ids(self) -> list[bytes]:
        """Ids of the canonical chain from genesis to the tip (from the height index)."""
        ids = []
        for height in range(self.height + 1):
            block_id = self.block_id_at(height)
            if block_id is None:
                raise ChainStoreError(f"height index missing at {height}")
            ids.append(block_id)
        return ids


def _justified_epoch(state: State) -> int:
    """Epoch of the last justified checkpoint in ``state`` (0 before finality starts)."""
    status = finality_status(state)
    return 0 if status is None else int(status.last_justified.epoch)


def _carries_votes(block: Block) -> bool:
    """Whether a block carries a ``FinalityVotes`` aggregate (only those, and the anchor the
    fork point already has, can justify a checkpoint)."""
    return any(isinstance(tx.payload, FinalityVotes) for tx in block.transactions)


def _u256(value: int) -> bytes:
    return value.to_bytes(32, "big")


def update_mempool(mempool: Mempool, update: ChainUpdate, *, tip: TipView, now: int) -> None:
    """Replay a chain update on the mempool.

    Transactions of the newly connected blocks leave the pool (with whatever they made
    invalid); transactions of disconnected blocks that the new chain did not include go back
    in, if they are still valid against the new tip.
    """
    confirmed = [tx for block in update.connected for tx in block.transactions]
    confirmed_ids = {tx.id() for tx in confirmed}
    returning = [tx for block in update.disconnected for tx in block.transactions
                 if tx.id() not in confirmed_ids]
    # each sender's nonces must ascend (stable sort keeps block order otherwise)
    returning.sort(key=lambda tx: tx.nonce)
    mempool.apply_chain_update(confirmed, returning, tip=tip, now=now)


# transaction ids whose signatures the mempool checked, remembered by the node's store: twice
# the mempool's max_total (5,120), ~2 MiB at lru.ENTRY_BYTES. An id forgotten before its block
# arrives only costs that signature's check again.
VERIFIED_TXS_REMEMBERED = 10_240


class NodeChainStore(ChainStore):
    """The chain store, skipping signatures the mempool already verified.

    A relayed block mostly carries transactions every node admitted (and so verified) a
    moment earlier; checking them again is most of a block's validation cost. A transaction
    id hashes the *signed* encoding, so a remembered id vouches for exactly that signature.
    """

    def __init__(self, db: Database, *, genesis: GenesisConfig) -> None:
        super().__init__(db, genesis=genesis)
        self.verified_txs = LruSet(VERIFIED_TXS_REMEMBERED)

    def verify_signatures(self, transactions: Sequence[Transaction]) -> bool:
        rest = [tx for tx in transactions if tx.id() not in self.verified_txs]
        if not transactions or len(rest) == len(transactions):
            return super().verify_signatures(transactions)
        if len(rest) >= MIN_PARALLEL_SIGNATURES:
            return super().verify_signatures(rest)
        return signatures_valid(rest)


def open_chain(path: Path, *, genesis: GenesisConfig, cache_bytes: int = DEFAULT_CACHE_BYTES,
               write_buffer_bytes: int = DEFAULT_WRITE_BUFFER_BYTES,
               ) -> tuple[NodeChainStore, NodeDatabase]:
    """`ChainStore.open` over a `NodeDatabase` (finishes any reorg a crash interrupted);
    ``cache_bytes``/``write_buffer_bytes``: LevelDB's memory bounds (`node.chain.db`)."""
    db = NodeDatabase(path, lru_cache_size=cache_bytes, write_buffer_size=write_buffer_bytes)
    try:
        store = NodeChainStore(db, genesis=genesis)
        store.resume()
    except BaseException:
        db.close()
        raise
    return store, db


def load_genesis(genesis_path: Path | None) -> GenesisConfig:
    """The genesis config at ``genesis_path`` (TOML/JSON), or the built-in dev chain's."""
    return dev_config() if genesis_path is None else load_genesis_config(genesis_path)
