"""`pouwchain node` as a real process: config file, node.json, JSON logs, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consensus.genesis import dev_config
from node.chainstore import ChainStore
from node.config import ConfigError, NodeConfig


def test_config_file_and_flag_precedence(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text('max_peers = 3\nport = 4100\npeers = ["10.0.0.1:1"]\n')
    config = NodeConfig.resolve(datadir=tmp_path, port=4200, peers=None)
    assert config.max_peers == 3 and config.port == 4200 and config.peers == ["10.0.0.1:1"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"mine": True, "log_json": False}))
    config = NodeConfig.resolve(datadir=tmp_path, config_file=other)
    assert config.mine and not config.log_json and config.max_peers == 16
    (tmp_path / "bad.toml").write_text("max_peerz = 3\n")
    with pytest.raises(ConfigError, match="max_peerz"):
        NodeConfig.resolve(datadir=tmp_path, config_file=tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="host:port"):
        NodeConfig(datadir=tmp_path, peers=["nocolon"])
    loaded = NodeConfig.load(other, datadir=str(tmp_path))
    assert loaded.datadir == tmp_path and loaded.mine


def _wait_for(path: Path, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            try:
                data: dict[str, object] = json.loads(path.read_text())
                return data
            except json.JSONDecodeError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_node_process_starts_and_stops_cleanly(tmp_path: Path) -> None:
    datadir = tmp_path / "n"
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "node", "--datadir", str(datadir), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2])
    try:
        info = _wait_for(datadir / "node.json")
        assert info["pid"] == proc.pid and isinstance(info["port"], int) and info["port"] > 0
        assert info["api"] == f"http://127.0.0.1:{info['port']}"
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    # structured logs: JSON lines on stderr and in datadir/node.log
    events = [json.loads(line)["event"] for line in stderr.decode().splitlines()
              if line.startswith("{")]
    assert "node.started" in events and "node.stopped" in events
    file_events = [json.loads(line)["event"]
                   for line in (datadir / "node.log").read_text().splitlines()]
    assert "node.signal_stop" in file_events
    assert not (datadir / "node.json").exists()
    # the store closed cleanly: it reopens (LevelDB lock released) on the same network
    store = ChainStore.open(datadir / "chain", genesis=dev_config())
    assert store.height == 0
    store.close()
