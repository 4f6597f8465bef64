"""Launcher pieces that need no node process: genesis and keys, metrics parsing, the table."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from consensus.genesis import load_genesis_config
from consensus.tx import public_key
from contracts.swarm import MAX_REQUEST_LAG, MAX_SETTLEMENT_LAG
from core.params import DEFAULT_SWARM_BEACON_DELAY, DEFAULT_SWARM_INCLUSION_WINDOW
from testnet.client import parse_metrics
from testnet.genesis import load_keys, new_keys, write_genesis
from testnet.launcher import (
    TestnetError,
    format_table,
    funded_wallet_hint,
    log_flags,
    miner_figures,
    prepare,
    watch,
)
from testnet.process import pid_alive
from tests.framework.util import wait_until


def test_keys_are_private_and_funded_in_a_loadable_genesis(tmp_path: Path) -> None:
    seeds = new_keys(tmp_path / "keys", 3)
    assert load_keys(tmp_path / "keys") == seeds
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    for path in (tmp_path / "keys").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    write_genesis(tmp_path / "genesis.json", seeds)
    config = load_genesis_config(tmp_path / "genesis.json")
    assert set(config.balances) == {public_key(s) for s in seeds}
    assert set(config.stakes) == {public_key(seeds[0])}
    assert config.params.min_difficulty
    # settlements are held for an inclusion window (an honest node's challenge can land),
    # well inside the 100-block settlement window so a voided round can settle again
    assert config.params.swarm_inclusion_window == DEFAULT_SWARM_INCLUSION_WINDOW
    assert 0 < DEFAULT_SWARM_INCLUSION_WINDOW < MAX_SETTLEMENT_LAG // 2
    # ties take the beacon k blocks above the request (nobody committing knows it): a
    # settlement waits for it, then for the window, and still lands inside the settlement
    # window, so a voided round can settle again; a round asked as late as a node allows
    # still has k - MAX_REQUEST_LAG blocks to commit before its beacon block is mined
    k = config.params.swarm_beacon_delay
    assert k == DEFAULT_SWARM_BEACON_DELAY > MAX_REQUEST_LAG
    assert k + 1 + config.params.swarm_inclusion_window < MAX_SETTLEMENT_LAG


def test_prepare_reuses_a_testnet_dir_and_refuses_a_foreign_one(tmp_path: Path) -> None:
    genesis = prepare(tmp_path / "net", 4, fresh=False)
    first = genesis.read_text()
    assert prepare(tmp_path / "net", 4, fresh=False).read_text() == first  # reused
    assert prepare(tmp_path / "net", 4, fresh=True).read_text() != first  # recreated
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(TestnetError):
        prepare(foreign, 4, fresh=True)
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_parse_metrics_sums_labels_and_skips_comments() -> None:
    text = ("# HELP pouwchain_height h\n# TYPE pouwchain_height gauge\npouwchain_height 12\n"
            'pouwchain_work_macs_total{kind="useful"} 30\n'
            'pouwchain_work_macs_total{kind="nonuseful"} 10 1700000000\n')
    assert parse_metrics(text) == {"pouwchain_height": 12.0, "pouwchain_work_macs_total": 40.0}


def test_miner_figures_and_table() -> None:
    status = {"mining": {"enabled": True, "tickets_per_s": 1500.0, "useful_macs": 3,
                         "nonuseful_macs": 1}}
    assert miner_figures(status, {}) == (1500.0, 0.75)
    disabled = {"mining": {"enabled": False}}
    assert miner_figures(disabled, {"pouwchain_tickets_per_second": 0.0}) == (None, None)
    metrics = {"pouwchain_tickets_per_second": 10.0, "pouwchain_useful_macs": 1.0,
               "pouwchain_nonuseful_macs": 3.0}
    assert miner_figures({}, metrics) == (10.0, 0.25)
    assert miner_figures({}, {"pouwchain_tickets_per_second": 5.0,
                              "pouwchain_useful_work_ratio": 0.5}) == (5.0, 0.5)
    rows: list[dict[str, Any]] = [
        {"node": "node-0", "role": "miner", "address": "127.0.0.1:1", "state": "ok",
         "height": 7, "peers": 2, "tip": "abcdef012345", "tickets_per_s": 1500.0,
         "useful_share": 0.75},
        {"node": "node-1", "role": "validator", "address": "127.0.0.1:2", "state": "stopped"}]
    table = format_table(rows)
    assert "abcdef012345" in table and "75%" in table and "1.5e+03" in table
    assert "stopped" in table.splitlines()[3]
    json.dumps(rows)


def test_funded_wallet_hint_log_flags_and_the_table_footer(tmp_path: Path) -> None:
    assert funded_wallet_hint(tmp_path) == ""  # no keys yet: nothing to hint
    new_keys(tmp_path / "keys", 12)
    hint = funded_wallet_hint(tmp_path)
    # account 1 (account 0 also funds the nodes' keys), not account-10 by name order
    assert f"pouwchain wallet import {tmp_path / 'keys' / 'account-1.json'} account-1" in hint
    assert "12 seed files" in hint and "--node {api}" in hint
    assert (log_flags(None), log_flags(True), log_flags(False)) == \
        ([], ["--log-json"], ["--log-text"])
    out = io.StringIO()
    draws = iter((False, False, True))
    watch(tmp_path, [], out=out, interval=0.0, should_stop=lambda: next(draws),
          footer="import a key")
    text = out.getvalue()
    assert text.count("tickets/s") == 2 and text.count("import a key") == 1  # not a tty


@pytest.mark.slow
def test_pid_alive_until_every_thread_has_exited() -> None:
    """A process whose main thread has exited shows its leader as a zombie while another
    thread still runs (and holds its sockets): it is alive until that thread ends too."""
    script = ("import ctypes, threading, time\n"
              "threading.Thread(target=time.sleep, args=(600,)).start()\n"
              "print('ready', flush=True)\n"
              "ctypes.CDLL(None).pthread_exit(None)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        leader = Path(f"/proc/{proc.pid}/stat")
        wait_until(lambda: leader.read_text().rsplit(")", 1)[1].split()[0] == "Z",
                   message="the main thread exited")
        assert pid_alive(proc.pid)  # its sleeping thread still runs
    finally:
        proc.kill()
        proc.wait()
    assert not pid_alive(proc.pid)
