"""`pouwchain testnet up --detach | status | down`, and the foreground table stopped by Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testnet import launcher
from testnet.launcher import load_state
from testnet.process import REPO_ROOT, pid_alive
from tests.framework.util import pouwchain, wait_until

pytestmark = pytest.mark.slow  # real node processes


def status_rows(directory: Path) -> list[dict[str, object]]:
    done = pouwchain("testnet", "status", "--dir", str(directory), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout.splitlines()[-1])
    return rows


# The swarm model does not matter here: the arithmetic model starts at once, where three
# language-model nodes converted, loaded and calibrated the model while the test waited for
# blocks (153 s of the suite's 1340 s under a busy core). The language-model testnet's parts
# are tested in test_testnet_swarm.py (its node.toml) and test_swarm_llm.py (its nodes).
SWARM_MODEL = ("--swarm-model", "arith")


def test_detached_testnet_up_status_down(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    try:
        done = pouwchain("testnet", "up", "--nodes", "3", "--dir", str(directory), "--detach",
                         *SWARM_MODEL)
        assert done.returncode == 0, done.stdout + done.stderr
        records = load_state(directory)
        assert [r.mine for r in records] == [True, False, False]  # half, at least one
        assert all(pid_alive(r.pid) for r in records)
        keys = sorted((directory / "keys").iterdir())
        assert keys and all(p.stat().st_mode & 0o077 == 0 for p in keys)

        # the ring is connected and the miner's blocks reach every node (polled in-process:
        # a CLI call per poll would cost a Python start-up each)
        def progressing() -> bool:
            rows = launcher.status_rows(load_state(directory))
            return all(r["state"] in ("ok", "syncing") and int(str(r["peers"])) >= 1
                       and int(str(r["height"])) >= 2 for r in rows)

        wait_until(progressing, 120, interval=1.0, message="testnet mines and relays")
        table = pouwchain("testnet", "status", "--dir", str(directory))
        assert table.returncode == 0 and table.stdout.count("node-") == 3, table.stdout
        assert [r["role"] for r in status_rows(directory)] == ["miner", "validator", "validator"]

        genesis = (directory / "genesis.json").read_text()
        done = pouwchain("testnet", "down", "--dir", str(directory))
        assert done.returncode == 0, done.stderr
        assert "3 node(s) stopped" in done.stdout
        assert not any(pid_alive(r.pid) for r in records)
        assert pouwchain("testnet", "status", "--dir", str(directory)).returncode == 2

        # up again on the same directory reuses the genesis and the chains
        done = pouwchain("testnet", "up", "--nodes", "3", "--dir", str(directory), "--detach",
                         *SWARM_MODEL)
        assert done.returncode == 0, done.stdout + done.stderr
        assert (directory / "genesis.json").read_text() == genesis
        rows = status_rows(directory)
        assert all(int(str(r["height"])) >= 2 for r in rows), rows
    finally:
        launcher.down(directory)


def test_foreground_testnet_shows_table_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    out = tmp_path / "launcher.out"
    with open(out, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "testnet.cli", "testnet", "up", "--nodes", "2", "--dir",
             str(directory), *SWARM_MODEL],
            cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: out.read_text().count("tickets/s") >= 2, 120, interval=0.5,
                   message="two status tables printed")
        records = load_state(directory)
        assert len(records) == 2 and all(pid_alive(r.pid) for r in records)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert not any(pid_alive(r.pid) for r in records)
        text = out.read_text()
        assert "node-1" in text and "stopped" in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        launcher.down(directory)
