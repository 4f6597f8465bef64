"""`pouwchain testnet up` from the client's side (issue 13): it says how to get a funded
wallet and that wallet is funded, it passes the log format to every node, and `testnet down`
returns only once every node process has exited (its ports free at once)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from consensus.tx import public_key
from testnet import launcher
from testnet.launcher import load_state
from testnet.process import HOST, pid_alive
from tests.framework.util import pouwchain

pytestmark = pytest.mark.slow  # real node processes


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def test_up_hints_a_funded_wallet_passes_the_log_format_and_down_waits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "net"
    data = tmp_path / "data"
    monkeypatch.setenv("POUWCHAIN_PASSWORD", "pw")
    try:
        done = pouwchain("testnet", "up", "--nodes", "2", "--swarm-model", "arith", "--dir",
                         str(directory), "--detach", "--log-text")
        assert done.returncode == 0, done.stdout + done.stderr
        records = load_state(directory)
        seed_file = directory / "keys" / "account-1.json"
        hint = f"pouwchain wallet import {seed_file} account-1"
        assert hint in done.stdout
        assert f"pouwchain wallet balance --wallet account-1 --node {records[0].api}" \
            in done.stdout

        # the hint works: the imported key holds the genesis funds
        done = pouwchain("wallet", "import", str(seed_file), "account-1", "--kdf", "fast",
                         "--datadir", str(data))
        assert done.returncode == 0, done.stderr
        done = pouwchain("wallet", "balance", "--wallet", "account-1", "--datadir",
                         str(data), "--node", records[0].api, "--json")
        assert done.returncode == 0, done.stderr
        account = json.loads(done.stdout)
        address = json.loads(seed_file.read_text())["address"]
        assert account["address"] == address == \
            public_key(bytes.fromhex(json.loads(seed_file.read_text())["seed"])).hex()
        assert account["balance"] > 0

        # --log-text reached every node: node.log is text, not JSON lines
        for rec in records:
            lines = (Path(rec.datadir) / "node.log").read_text().splitlines()
            assert lines and not any(line.startswith("{") for line in lines), lines[:3]

        ports = [rec.port for rec in records]
        pids = [rec.pid for rec in records]
        done = pouwchain("testnet", "down", "--dir", str(directory), timeout=120)
        assert done.returncode == 0 and "2 node(s) stopped" in done.stdout, done.stderr
        # at once, no waiting: every process (all its threads) is gone and its port is free
        assert not any(pid_alive(pid) for pid in pids)
        assert all(port_is_free(port) for port in ports)
    finally:
        launcher.down(directory)
