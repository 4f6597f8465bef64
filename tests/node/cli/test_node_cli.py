"""`pouwchain node` as a real process: config file, node.json, its log, clean SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consensus.genesis import dev_config
from node.chain.chainstore import ChainStore
from node.cli import node as cli_node
from node.client.http import DEFAULT_NODE_URL
from node.config import DEFAULT_PORT, ConfigError, NodeConfig
from node.mining.miner import MinerConfig
from testnet.client import request
from testnet.process import NodeStartError, stop_process, wait_ready
from tests.framework.util import ROOT, wait_until


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
    """The JSON object in ``path``, once it is written (whole)."""
    def load() -> dict[str, object] | None:
        try:
            data: dict[str, object] = json.loads(path.read_text())
            return data
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    result: dict[str, object] = wait_until(load, timeout, interval=0.05,
                                           message=f"{path} is written")
    return result


@pytest.mark.slow
def test_node_process_starts_and_stops_cleanly(tmp_path: Path) -> None:
    datadir = tmp_path / "n"
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "node", "--datadir", str(datadir), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        info = _wait_for(datadir / "node.json")
        assert info["pid"] == proc.pid and isinstance(info["port"], int) and info["port"] > 0
        assert info["api"] == f"http://127.0.0.1:{info['port']}"
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)  # a bound on a hung stop
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    # one log, datadir/node.log, JSON lines when stderr is not a terminal (nothing on stderr)
    assert not [line for line in stderr.decode().splitlines() if line.startswith("{")]
    file_events = [json.loads(line)["event"]
                   for line in (datadir / "node.log").read_text().splitlines()]
    assert "node.started" in file_events and "node.stopped" in file_events
    assert "node.signal_stop" in file_events
    assert not (datadir / "node.json").exists()
    # the store closed cleanly: it reopens (LevelDB lock released) on the same network
    store = ChainStore.open(datadir / "chain", genesis=dev_config())
    assert store.height == 0
    store.close()


# -- restart after a crash: node.json is the runtime file, never configuration ---------------


def _spawn_node(datadir: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "node.cli", "node", "--datadir", str(datadir), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)


def _ready(datadir: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    try:
        return wait_ready(datadir, proc)
    except NodeStartError:
        proc.kill()
        _, stderr = proc.communicate(timeout=30)
        raise AssertionError(stderr.decode()[-2000:]) from None


@pytest.mark.slow
def test_stale_node_json_is_not_config(tmp_path: Path) -> None:
    """A SIGKILLed node leaves node.json behind; the next start must not read it as config."""
    datadir = tmp_path / "n"
    datadir.mkdir()
    stale = {"pid": 999999, "port": 4567, "node_id": "ab" * 32, "api": "http://127.0.0.1:4567",
             "listen": "127.0.0.1:4567", "p2p": "ws://127.0.0.1:4567/p2p"}
    (datadir / "node.json").write_text(json.dumps(stale))
    config = NodeConfig.resolve(datadir=datadir)  # no config file: defaults
    assert config == NodeConfig(datadir=datadir)
    with pytest.raises(ConfigError, match="runtime file"):
        NodeConfig.resolve(datadir=datadir, config_file=datadir / "node.json")
    proc = _spawn_node(datadir, "--port", "0")
    try:
        info = _ready(datadir, proc)
        assert info["pid"] == proc.pid and info["port"] != 4567
    finally:
        assert stop_process(proc) == 0
    assert not (datadir / "node.json").exists()


@pytest.mark.slow
def test_restart_after_sigkill(tmp_path: Path) -> None:
    datadir = tmp_path / "n"  # no node.toml: nothing but node.json to mistake for a config
    first = _spawn_node(datadir, "--port", "0")
    try:
        info = _ready(datadir, first)
        token = (datadir / "api.token").read_text().strip()
        mined = request(str(info["api"]), "POST", "/api/v1/miner/generate", token=token,
                        body={"count": 2})
        assert mined["height"] == 2
    finally:
        first.kill()
        first.communicate(timeout=30)
    assert json.loads((datadir / "node.json").read_text())["pid"] == first.pid  # left behind
    second = _spawn_node(datadir, "--port", "0")
    try:
        info = _ready(datadir, second)
        assert info["pid"] == second.pid
        status = request(str(info["api"]), "GET", "/api/v1/status")
        assert status["height"] == 2  # the chain survived the kill
    finally:
        assert stop_process(second) == 0


# -- the default port ---------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_node.register(parser.add_subparsers())
    return parser.parse_args(["node", *argv])


def test_default_port_is_documented_and_shared_with_the_clients(tmp_path: Path) -> None:
    assert DEFAULT_PORT == 7645
    assert NodeConfig(datadir=tmp_path).port == DEFAULT_PORT
    assert cli_node.config_from_args(_parse("--datadir", str(tmp_path))).port == DEFAULT_PORT
    assert cli_node.config_from_args(
        _parse("--datadir", str(tmp_path), "--port", "0")).port == 0
    assert DEFAULT_NODE_URL == f"http://127.0.0.1:{DEFAULT_PORT}"
    api_md = (ROOT / "docs" / "api.md").read_text()
    assert f"default {DEFAULT_PORT}" in api_md


# -- mining settings ----------------------------------------------------------------------------


def test_mining_defaults_match_the_miner(tmp_path: Path) -> None:
    assert MinerConfig.from_node_config(NodeConfig(datadir=tmp_path)) == MinerConfig()


def test_mining_settings_from_file_and_flags(tmp_path: Path) -> None:
    address = "ab" * 32
    (tmp_path / "node.toml").write_text(
        f'miner_address = "0x{address.upper()}"\nmining_shape = [32, 128, 32, 16]\n'
        'mining_backend = "numpy"\nmining_threads = 3\nmining_interval = 1\n'
        "mining_block_interval = 0.5\n")
    config = NodeConfig.resolve(datadir=tmp_path)
    miner = MinerConfig.from_node_config(config)
    assert miner.address == bytes.fromhex(address) and miner.shape == (32, 128, 32, 16)
    assert miner.backend == "numpy" and miner.threads == 3
    assert miner.interval == 1.0 and miner.trivial_block_interval == 0.5
    flags = cli_node.config_from_args(_parse(
        "--datadir", str(tmp_path), "--mining-backend", "torch-cpu", "--mining-threads", "0",
        "--miner-address", "cd" * 32))
    assert flags.mining_backend == "torch-cpu" and flags.mining_threads is None
    assert flags.miner_address == "cd" * 32 and flags.mining_shape == (32, 128, 32, 16)
    assert MinerConfig.from_node_config(flags).threads is None
    for bad, match in [('miner_address = "abcd"', "miner_address"),
                       ("mining_shape = [1, 2, 3]", "mining_shape"),
                       ("mining_shape = [64, 256, 64, 3]", "mining_shape"),
                       ('mining_backend = "gpu"', "mining_backend"),
                       ("mining_threads = -1", "mining_threads"),
                       ('mining_interval = "x"', "mining_interval")]:
        (tmp_path / "bad.toml").write_text(bad + "\n")
        with pytest.raises(ConfigError, match=match):
            NodeConfig.resolve(datadir=tmp_path, config_file=tmp_path / "bad.toml")


@pytest.mark.slow
def test_node_process_mines_with_configured_settings(tmp_path: Path) -> None:
    datadir = tmp_path / "n"
    datadir.mkdir()
    address = "5a" * 32
    (datadir / "node.toml").write_text(
        f'mine = true\nminer_address = "{address}"\nmining_backend = "numpy"\n'
        "mining_threads = 2\nmining_shape = [32, 128, 32, 16]\nmining_block_interval = 0.2\n")
    proc = _spawn_node(datadir, "--port", "0")
    try:
        info = _ready(datadir, proc)
        api = str(info["api"])
        wait_until(lambda: request(api, "GET", "/api/v1/status")["height"] >= 2, 30,
                   interval=0.1, message="the configured miner mines")
        stats = request(api, "GET", "/api/v1/miner")
        assert stats["enabled"] and stats["address"] == address
        assert stats["backend"].startswith("numpy")
        block = request(api, "GET", "/api/v1/blocks/1")
        assert block["header"]["miner"] == address
        assert block["header"]["m"] in (0, 32) and block["header"]["k"] in (0, 128)
        assert request(api, "GET", f"/api/v1/accounts/{address}")["balance"] > 0
    finally:
        assert stop_process(proc) == 0
