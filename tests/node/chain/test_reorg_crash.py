"""A SIGKILL between a reorg and the mempool's update loses no accepted transaction.

A sync batch disconnects a block, and the node puts its transactions back in the pool (and
its journal) only after the whole batch. A real node process is killed in between (at a chain
store hook point); the restarted node must hold both the disconnected block's transaction
and the sender's pending next nonce, which the journal alone would drop as a nonce gap
(bench/chaos.py lost 4 of 8,778 accepted transfers this way before the write-ahead markers).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from node.builder import build_node
from node.chain.mempool import JOURNAL
from tests.framework.nodes import node_config
from tests.framework.util import ROOT, wait_until
from tests.node.chain.reorg_crash_child import build_scenario, save


def crash_during_reorg(tmp_path: Path, point: str, count: int) -> Path:
    """Run the child until it spins at ``point`` (``count``-th time) and SIGKILL it there."""
    datadir = tmp_path / "node"
    blocks, markers = tmp_path / "blocks", tmp_path / "markers"
    save(build_scenario(), blocks)
    markers.write_bytes(b"")
    child = subprocess.Popen([sys.executable, "-m", "tests.node.chain.reorg_crash_child",
                              str(datadir), str(blocks), str(markers), point, str(count)],
                             cwd=ROOT)
    try:
        def spinning() -> bool:
            assert child.poll() is None, "the child exited before its kill point"
            return b"spin\n" in markers.read_bytes()

        wait_until(spinning, 120, interval=0.01, message="the child reaches its kill point")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert markers.read_text().splitlines() == ["ready", "spin"]
    return datadir


@pytest.mark.slow
@pytest.mark.parametrize(("point", "count"), [
    ("disconnect:after_commit", 1),  # A's block is off the chain, B's not yet on
    ("connect:after_commit", 2),  # B is the tip, the pool not yet updated
])
def test_a_reorg_killed_before_the_mempool_update_loses_no_transaction(
        tmp_path: Path, point: str, count: int) -> None:
    scenario = build_scenario()
    datadir = crash_during_reorg(tmp_path, point, count)
    node = build_node(node_config(datadir.parent, datadir.name))
    try:
        # the store finished the reorg on open: B's tip
        assert node.chain.tip_id == scenario.b[-1].header.block_id()
        returned, pending = scenario.confirmed_on_a.id(), scenario.pending.id()
        # the disconnected block's transfer is back, and its successor is no gap
        assert [tx.id() for tx in node.mempool.pending_of(scenario.pending.sender)] == \
            [returned, pending]
        # both journaled, and the write-ahead markers are gone
        journaled = {key[len(JOURNAL):] for key, _ in node.chain.db.iterate_prefix(JOURNAL)}
        assert journaled == {returned, pending}
        assert node.chain.returning_blocks() == []
    finally:
        node.close()


def test_a_completed_reorg_returns_transactions_and_leaves_no_marker(tmp_path: Path) -> None:
    scenario = build_scenario()
    node = build_node(node_config(tmp_path, "node"))
    try:
        node._add_blocks(scenario.a)
        node._admit_tx(scenario.pending)
        assert node.chain.returning_blocks() == []
        update, added, error = node._add_blocks(scenario.b)
        assert (added, error) == (2, None)
        assert [b.header.block_id() for b in update.disconnected] == \
            [scenario.a[0].header.block_id()]
        assert [tx.id() for tx in node.mempool.pending_of(scenario.pending.sender)] == \
            [scenario.confirmed_on_a.id(), scenario.pending.id()]
        assert node.chain.returning_blocks() == []
    finally:
        node.close()
