"""Tests of the LevelDB wrapper on real directories."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.interfaces import KeyValueStore
from node.chain.db import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_WRITE_BUFFER_BYTES,
    Database,
    DatabaseCorruptionError,
    DatabaseError,
    DatabaseLockedError,
    WriteBatch,
)
from node.config import MAX_DB_MEMORY_MB, ConfigError, NodeConfig
from node.node import Node
from tests.framework.nodes import node_config
from tests.framework.util import ROOT


def test_batch_reads_its_own_writes_and_commits_atomically(tmp_path: Path) -> None:
    with Database(tmp_path / "db") as db:
        db.put(b"k1", b"old")
        db.put(b"k2", b"gone")
        batch = db.batch()
        batch.put(b"k1", b"new")
        batch.delete(b"k2")
        batch.put(b"k3", b"three")
        # The batch sees its writes; the database does not yet.
        assert batch.get(b"k1") == b"new"
        assert batch.get(b"k2") is None
        assert batch.get(b"k3") == b"three"
        assert db.get(b"k1") == b"old"
        assert db.get(b"k3") is None
        batch.commit()
        assert db.get(b"k1") == b"new"
        assert db.get(b"k2") is None
    with Database(tmp_path / "db") as db:
        assert db.get(b"k3") == b"three"
        assert db.get(b"k2") is None


def test_batch_is_single_use_and_discard_drops(tmp_path: Path) -> None:
    with Database(tmp_path / "db") as db:
        batch = db.batch()
        batch.put(b"a", b"1")
        batch.discard()
        assert db.get(b"a") is None
        with pytest.raises(DatabaseError):
            batch.put(b"a", b"2")
        with pytest.raises(DatabaseError):
            batch.commit()
        # Context manager: commit on success, discard on an exception.
        with db.batch() as ok:
            ok.put(b"b", b"1")
        assert db.get(b"b") == b"1"
        with pytest.raises(RuntimeError), db.batch() as failing:
            failing.put(b"c", b"1")
            raise RuntimeError("boom")
        assert db.get(b"c") is None


def test_batch_implements_consensus_kv_protocol(tmp_path: Path) -> None:
    with Database(tmp_path / "db") as db:
        kv: KeyValueStore = db.batch()
        kv.put(b"x", b"y")
        assert kv.get(b"x") == b"y"
        assert isinstance(kv, WriteBatch)


def test_prefix_iteration_merges_pending_writes(tmp_path: Path) -> None:
    with Database(tmp_path / "db") as db:
        for key in (b"a\x00", b"a\x01", b"a\x03", b"b\x00", b"a\xff\xff"):
            db.put(key, key)
        batch = db.batch()
        batch.put(b"a\x02", b"new")
        batch.delete(b"a\x01")
        batch.put(b"a\x03", b"changed")
        batch.put(b"b\x01", b"other prefix")
        assert list(batch.iterate_prefix(b"a")) == [
            (b"a\x00", b"a\x00"), (b"a\x02", b"new"), (b"a\x03", b"changed"),
            (b"a\xff\xff", b"a\xff\xff"),
        ]
        assert [k for k, _ in db.iterate_prefix(b"a")] == [b"a\x00", b"a\x01", b"a\x03",
                                                            b"a\xff\xff"]
        assert [k for k, _ in batch.iterate_prefix(b"\xff")] == []


ops = st.lists(st.tuples(st.sampled_from(["put", "delete"]),
                         st.binary(min_size=0, max_size=3), st.binary(max_size=4)),
               max_size=40)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
@given(before=ops, during=ops, prefix=st.binary(max_size=2))
def test_batch_behaves_like_a_dict_overlay(tmp_path: Path, before: list[tuple[str, bytes, bytes]],
                                           during: list[tuple[str, bytes, bytes]],
                                           prefix: bytes) -> None:

    path = tmp_path / "prop"
    shutil.rmtree(path, ignore_errors=True)
    model: dict[bytes, bytes] = {}
    with Database(path) as db:
        for op, key, value in before:
            if op == "put":
                db.put(key, value)
                model[key] = value
            else:
                db.delete(key)
                model.pop(key, None)
        committed = dict(model)
        batch = db.batch()
        for op, key, value in during:
            if op == "put":
                batch.put(key, value)
                model[key] = value
            else:
                batch.delete(key)
                model.pop(key, None)
            assert batch.get(key) == model.get(key)
        expected = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
        assert list(batch.iterate_prefix(prefix)) == expected
        assert dict(db.iterate_prefix(b"")) == committed
        batch.commit()
        assert dict(db.iterate_prefix(b"")) == model


@pytest.mark.slow
def test_locked_datadir_gives_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "db"
    Database(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from node.chain.db import Database
            db = Database({str(path)!r})
            print("open", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(DatabaseLockedError, match="in use by another process"):
            Database(path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # Once the holder is gone, the directory opens again.
    Database(path).close()


def test_corruption_gives_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with Database(path) as db:
        for i in range(1000):
            db.put(b"key%05d" % i, b"v" * 100)
    manifests = list(path.glob("MANIFEST-*"))
    assert manifests
    for manifest in manifests:
        manifest.write_bytes(b"\x00garbage" * 64)
    with pytest.raises(DatabaseCorruptionError, match="corrupted"):
        Database(path)


def test_missing_database_without_create(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="no database"):
        Database(tmp_path / "absent", create_if_missing=False)
    assert not (tmp_path / "absent").exists()


def _tables_after_writing(config: NodeConfig, megabytes: int) -> list[Path]:
    """The LevelDB table files of a node's chain after ``megabytes`` of fresh writes."""
    node = Node(config)
    try:
        for i in range(megabytes * 16):
            node.chain.db.put(b"soak/" + i.to_bytes(4, "big"), bytes([i % 251]) * 65536)
        return list((config.datadir / "chain").glob("*.ldb"))
    finally:
        node.close()


def test_node_toml_sizes_leveldb_memory(tmp_path: Path) -> None:
    """db_write_buffer_mb reaches LevelDB: 3 MiB of writes stay in a 64 MiB write buffer
    but overflow a 1 MiB one into a table file (side by side, same writes)."""
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "node.toml").write_text("db_cache_mb = 2\ndb_write_buffer_mb = 1\n")
    small = NodeConfig.resolve(datadir=tmp_path / "small", port=0)
    assert (small.db_cache_mb, small.db_write_buffer_mb) == (2, 1)
    roomy = node_config(tmp_path, "roomy", db_write_buffer_mb=64)
    assert _tables_after_writing(small, 3)
    assert not _tables_after_writing(roomy, 3)


def test_leveldb_memory_defaults_are_bounded(tmp_path: Path) -> None:
    config = NodeConfig(datadir=tmp_path)
    assert config.db_cache_mb << 20 == DEFAULT_CACHE_BYTES
    assert config.db_write_buffer_mb << 20 == DEFAULT_WRITE_BUFFER_BYTES
    assert DEFAULT_CACHE_BYTES + 2 * DEFAULT_WRITE_BUFFER_BYTES <= 16 << 20


@pytest.mark.parametrize("value", [0, -1, 1.5, "8", MAX_DB_MEMORY_MB + 1])
@pytest.mark.parametrize("name", ["db_cache_mb", "db_write_buffer_mb"])
def test_bad_leveldb_memory_settings_are_config_errors(tmp_path: Path, name: str,
                                                       value: Any) -> None:
    with pytest.raises(ConfigError, match=name):
        node_config(tmp_path, "n", **{name: value})
