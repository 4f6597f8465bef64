"""LevelDB storage (plyvel): clear open errors, atomic batches that read their own writes.

Everything the node persists goes through ``Database``. A change that must be all-or-nothing
(a block connect: block, undo data, state, tip) is built in a ``WriteBatch``: a dict overlay
over the database, so the consensus code can read what it just wrote, flushed by ``commit``
as ONE plyvel ``WriteBatch`` with ``sync=True``. LevelDB applies a write batch atomically,
also across a crash: after a restart either all of it is there or none of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import plyvel

# LevelDB's own memory: an LRU cache of uncompressed table
# blocks (filled by reads, up to this many bytes) and the memtable (writes are buffered up to
# this many bytes, then flushed to a table; two exist during a flush, and each freed memtable
# leaves holes in the malloc heap). Both fill as the database grows past them and then stay
# full, so each is a bound on RSS growth, not a cost per block. The node's hot state is cached
# decoded in Python (`core.state.RecordCache`), so the block cache only spares re-reading
# recent tables: LevelDB's own defaults, 8 MiB and 4 MiB, where the node used 64 + 16 MiB
# (a soak node's chain reaches 120 MB in an hour). node.toml: db_cache_mb, db_write_buffer_mb.
DEFAULT_CACHE_BYTES = 8 << 20
DEFAULT_WRITE_BUFFER_BYTES = 4 << 20


class DatabaseError(Exception):
    """A storage failure the node cannot recover from on its own."""


class DatabaseLockedError(DatabaseError):
    """Another process holds the data directory."""


class DatabaseCorruptionError(DatabaseError):
    """The files on disk are damaged."""


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class Database:
    """An open LevelDB directory; one process at a time (LevelDB's LOCK file)."""

    def __init__(self, path: str | os.PathLike[str], *, create_if_missing: bool = True,
                 paranoid_checks: bool = True,
                 lru_cache_size: int = DEFAULT_CACHE_BYTES,
                 write_buffer_size: int = DEFAULT_WRITE_BUFFER_BYTES) -> None:
        self.path = Path(path)
        if not create_if_missing and not (self.path / "CURRENT").exists():
            # plyvel would leave an empty directory behind on this failure: check first.
            raise DatabaseError(f"no database at {self.path}")
        try:
            self._db: Any = plyvel.DB(str(self.path), create_if_missing=create_if_missing,
                                      paranoid_checks=paranoid_checks,
                                      lru_cache_size=lru_cache_size,
                                      write_buffer_size=write_buffer_size)
        except plyvel.CorruptionError as exc:
            raise DatabaseCorruptionError(
                f"database at {self.path} is corrupted ({exc}); restore it from a backup or "
                "delete the directory and resync"
            ) from exc
        except plyvel.IOError as exc:
            if b"lock" in str(exc).encode() or "lock" in str(exc).lower():
                raise DatabaseLockedError(
                    f"data directory {self.path} is in use by another process "
                    "(is another node running with the same --datadir?)"
                ) from exc
            raise DatabaseError(f"cannot open database at {self.path}: {exc}") from exc
        except plyvel.Error as exc:
            raise DatabaseError(f"cannot open database at {self.path}: {exc}") from exc

    # -- reads -----------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        try:
            value: bytes | None = self._db.get(key)
        except plyvel.CorruptionError as exc:
            raise DatabaseCorruptionError(f"corrupted read in {self.path}: {exc}") from exc
        return value

    def iterate_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """All (key, value) pairs whose key starts with ``prefix``, in key order."""
        try:
            yield from self._db.iterator(prefix=prefix)
        except plyvel.CorruptionError as exc:
            raise DatabaseCorruptionError(f"corrupted read in {self.path}: {exc}") from exc

    # -- writes ----------------------------------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        """A single durable write; for anything related to others, use ``batch``."""
        self._db.put(key, value, sync=True)

    def delete(self, key: bytes) -> None:
        self._db.delete(key, sync=True)

    def batch(self) -> WriteBatch:
        """A new atomic batch over this database."""
        return WriteBatch(self)

    def write_raw(self, writes: dict[bytes, bytes | None], *, sync: bool = True) -> None:
        """Apply puts (value) and deletes (None) as one LevelDB write batch."""
        wb = self._db.write_batch(sync=sync)
        for key, value in writes.items():
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        wb.write()

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return bool(self._db.closed)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class WriteBatch:
    """Pending writes over a ``Database``; reads see them; ``commit`` applies them atomically.

    A batch belongs to one writer for a short time (one block connect): values it reads from
    the database are cached for its lifetime, so nothing else may write those keys meanwhile.

    Implements the consensus ``KeyValueStore`` protocol (``get``/``put``/``delete``). A batch is
    single-use: after ``commit`` or ``discard`` it refuses further work, so a half-used batch
    cannot be committed twice by mistake.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: dict[bytes, bytes | None] = {}
        # values read from the database during this batch: the state transition reads a key
        # and then writes it, so each stored key is fetched from LevelDB once per batch
        self._read: dict[bytes, bytes | None] = {}
        self._done = False

    def _check_open(self) -> None:
        if self._done:
            raise DatabaseError("write batch already committed or discarded")

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        pending = self._pending
        if key in pending:
            return pending[key]
        read = self._read
        if key in read:
            return read[key]
        value = read[key] = self._db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._check_open()
        self._pending[bytes(key)] = bytes(value)

    def delete(self, key: bytes) -> None:
        self._check_open()
        self._pending[bytes(key)] = None

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def pending(self) -> dict[bytes, bytes | None]:
        """The writes so far (key to value, None for a delete); read-only by convention."""
        return self._pending

    def iterate_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys under ``prefix`` as they will be after ``commit``, in key order."""
        self._check_open()
        end = _prefix_end(prefix)
        overlay = sorted(
            (k, v) for k, v in self._pending.items()
            if k.startswith(prefix) and (end is None or k < end)
        )
        i = 0
        for key, value in self._db.iterate_prefix(prefix):
            # Emit pending keys that sort before this stored key.
            while i < len(overlay) and overlay[i][0] < key:
                pending_key, pending_value = overlay[i]
                if pending_value is not None:
                    yield pending_key, pending_value
                i += 1
            # A pending write to the same key replaces (or deletes) the stored value.
            if i < len(overlay) and overlay[i][0] == key:
                pending_value = overlay[i][1]
                i += 1
                if pending_value is not None:
                    yield key, pending_value
                continue
            yield key, value
        for pending_key, pending_value in overlay[i:]:
            if pending_value is not None:
                yield pending_key, pending_value

    def commit(self, *, sync: bool = True) -> None:
        """Write everything as one LevelDB batch, then close the batch.

        ``sync=True`` (the default) makes it durable before returning. ``sync=False`` leaves
        it in the OS (it survives a killed process, not a power cut) until the next synced
        write, which carries it to disk with it: LevelDB's log is written in order.
        """
        self._check_open()
        self._db.write_raw(self._pending, sync=sync)
        self._done = True
        self._pending = {}
        self._read = {}

    def discard(self) -> None:
        """Drop the pending writes."""
        self._done = True
        self._pending = {}
        self._read = {}

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Commit on success, discard on an exception: the batch never half-applies."""
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.discard()


class ReadOnlyKV(Protocol):
    """Anything with point reads (a Database, a WriteBatch, a prefixed view)."""

    def get(self, key: bytes) -> bytes | None: ...


class Overlay:
    """A throwaway ``KeyValueStore`` over a read-only base: writes stay in memory.

    For dry runs (mempool admission, block templates) that must never touch the database.
    """

    def __init__(self, base: ReadOnlyKV) -> None:
        self._base = base
        self._writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._base.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._writes[bytes(key)] = bytes(value)

    def delete(self, key: bytes) -> None:
        self._writes[bytes(key)] = None


class NodeDatabase(Database):
    """The chain store's database with group commit for sync batches.

    Every chain-store batch is one atomic LevelDB write; normally each is fsynced. While a
    sync batch of many blocks is applied, the writes skip the fsync (they still reach the OS,
    so a killed process loses nothing, and LevelDB replays its log to a batch boundary after
    a power loss) and one synced write at the end makes the whole batch durable. At most one
    batch of blocks, which peers still have, can be lost by a machine crash; the store is
    consistent either way.
    """

    defer_sync = False

    def write_raw(self, writes: dict[bytes, bytes | None], *, sync: bool = True) -> None:
        super().write_raw(writes, sync=sync and not self.defer_sync)

    def flush(self) -> None:
        """Make every earlier write durable (an empty synced batch fsyncs LevelDB's log)."""
        super().write_raw({}, sync=True)
