"""Crash safety: SIGKILL a real child process inside block connect/disconnect, then reopen.

The child (``tests/node/chain/crash_child.py``) walks a chain store back and forth between two
branches; every hook point is logged before it runs. Two kinds of kill:

* deterministic: the child spins at a chosen hook point (e.g. after the state changes are
  staged but before the batch is written) and the parent kills it there; the log proves where
  it died and tells the exact tip the store must reopen on;
* random: the parent kills after a random delay; the log says which step was running.

After each kill the parent reopens the same directory (no resume) and checks the stored tip,
height index, undo data and full state against the known state of that block: previous or
new tip, never a mix. Then it reopens normally (resume) and checks the store reaches the
best tip. Crashes accumulate on one directory, like Bitcoin Core's feature_dbcrash.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.chain.chainstore import HEIGHT, STATE, UNDO, ChainStore
from node.chain.db import Database
from tests.framework.util import ROOT, wait_until
from tests.node.chain.crash_child import Branches, build_branches, save_blocks

POINTS = [f"{op}:{step}" for op in ("connect", "disconnect")
          for step in ("begin", "state_applied", "before_commit", "after_commit")]


@pytest.fixture(scope="module")
def branches(tmp_path_factory: pytest.TempPathFactory) -> Branches:
    built = build_branches()
    save_blocks(built, blocks_file(tmp_path_factory.getbasetemp()))
    return built


def blocks_file(base: Path) -> Path:
    return base / "crash_blocks.msgpack"


def run_child(datadir: Path, markers: Path, mode: str, *, delay: float | None) -> list[str]:
    """Start the child, kill it with SIGKILL (at the spin point or after ``delay``)."""
    markers.write_bytes(b"")
    blocks = blocks_file(datadir.parent.parent)
    child = subprocess.Popen([sys.executable, "-m", "tests.node.chain.crash_child", str(datadir),
                              str(markers), mode, str(blocks)], cwd=ROOT)
    try:
        want = b"spin\n" if delay is None else b"ready\n"

        def reached() -> bool:
            assert child.poll() is None, "child exited early"
            return want in markers.read_bytes()

        wait_until(reached, 60, interval=0.005, message="the child reaches its kill point")
        if delay is not None:
            time.sleep(delay)  # the kill lands at a random moment: the point of this mode
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return markers.read_text().splitlines()


def last_step(lines: list[str]) -> tuple[str, bytes]:
    """The last hook point logged and the tip the store had then."""
    for line in reversed(lines):
        parts = line.split()
        if len(parts) == 3:
            return parts[0], bytes.fromhex(parts[2])
    raise AssertionError("no hook point logged")


def check_consistent(datadir: Path, branches: Branches) -> tuple[bytes, ChainStore]:
    """Reopen without resuming; the stored chain must be exactly one known block's chain."""
    store = ChainStore(Database(datadir), genesis=branches.base.config)
    tip = store.tip_id
    assert tip in branches.states, "tip is not a block any branch produced"
    canonical = [store.tree.ancestor(tip, h) for h in range(store.tree.entry(tip).height + 1)]
    # height index: exactly the tip's ancestry, nothing above it
    heights = dict(store.db.iterate_prefix(HEIGHT))
    assert sorted(heights.values()) == sorted(canonical)
    assert store.canonical_ids() == canonical
    # undo data: exactly for the connected blocks above genesis
    undo_ids = {key[len(UNDO):] for key, _ in store.db.iterate_prefix(UNDO)}
    assert undo_ids == set(canonical[1:])
    # state: byte for byte the state after the tip block
    state = {key[len(STATE):]: value for key, value in store.db.iterate_prefix(STATE)}
    assert state == branches.states[tip]
    assert store.state_root() == store.get_block(tip).header.state_root  # type: ignore[union-attr]
    return tip, store


def expected_tip(point: str, logged_tip: bytes, store: ChainStore) -> set[bytes]:
    """Tips allowed after a kill at ``point`` while the store's tip was ``logged_tip``."""
    if point in ("connect:after_commit",):
        children = {e.block_id for e in store.tree.entries() if e.parent_id == logged_tip}
        return children
    if point == "disconnect:after_commit":
        parent = store.tree.entry(logged_tip).parent_id
        assert parent is not None
        return {parent}
    return {logged_tip}


@pytest.mark.slow
def test_sigkill_at_every_hook_point(tmp_path: Path, branches: Branches) -> None:
    datadir = tmp_path / "db"
    markers = tmp_path / "markers"
    best = branches.b[-1].header.block_id()
    for point in POINTS:
        for occurrence in (1, 4):
            lines = run_child(datadir, markers, f"spin:{point}:{occurrence}", delay=None)
            assert lines[-1] == "spin"
            logged_point, logged_tip = last_step(lines)
            assert logged_point == point
            tip, store = check_consistent(datadir, branches)
            allowed = expected_tip(point, logged_tip, store)
            assert tip in allowed, f"{point}#{occurrence}: unexpected tip"
            store.close()
            resumed = ChainStore.open(datadir, genesis=branches.base.config)
            # resuming reaches the best known block (B's tip once B has been seen)
            assert resumed.tip_id == resumed.tree.tip
            assert resumed.state_root() == branches.base.state.root() or resumed.tip_id in (
                branches.states)
            resumed.close()
    final = ChainStore.open(datadir, genesis=branches.base.config)
    assert final.tip_id == best
    final.close()


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path: Path, branches: Branches) -> None:
    """Random kills, repeated until kills provably landed inside the atomic write.

    A kill whose last logged step is ``before_commit`` hit the process while the batch was
    being written (or about to be): the store must reopen on the previous tip or, if LevelDB
    finished the write, on the new one, never a mix. The test keeps killing (bounded) until
    at least two such kills happened in connect and two in disconnect, and asserts it.
    """
    datadir = tmp_path / "db"
    markers = tmp_path / "markers"
    rng = random.Random(1234)
    landed: dict[str, int] = {}
    in_write = {"connect": 0, "disconnect": 0}
    outcomes = {"old tip": 0, "new tip": 0}
    kills = 0
    while kills < 16 or (min(in_write.values()) < 2 and kills < 96):
        kills += 1
        lines = run_child(datadir, markers, "loop", delay=rng.uniform(0.0, 0.2))
        point, logged_tip = last_step(lines)
        landed[point] = landed.get(point, 0) + 1
        tip, store = check_consistent(datadir, branches)
        if point.endswith("before_commit"):
            # killed inside the atomic write: previous tip, or the write completed
            after = expected_tip(point.replace("before", "after"), logged_tip, store)
            assert tip in after | {logged_tip}
            in_write[point.split(":")[0]] += 1
            outcomes["old tip" if tip == logged_tip else "new tip"] += 1
        elif not point.endswith("after_commit"):
            assert tip == logged_tip
        store.close()
    print(f"{kills} random kills by last logged step:", dict(sorted(landed.items())),
          "; killed inside the write:", in_write, "reopened on:", outcomes)
    # The kills really landed mid-write, in both operations.
    assert min(in_write.values()) >= 2, f"too few kills inside a write: {in_write}"
    resumed = ChainStore.open(datadir, genesis=branches.base.config)
    assert resumed.tip_id == branches.b[-1].header.block_id()
    resumed.close()
