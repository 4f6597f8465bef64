"""Launcher pieces that need no node process: genesis and keys, metrics parsing, the table."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from consensus.genesis import load_genesis_config
from consensus.tx import public_key
from contracts.swarm import MAX_SETTLEMENT_LAG
from testnet.client import parse_metrics
from testnet.genesis import TESTNET_INCLUSION_WINDOW, load_keys, new_keys, write_genesis
from testnet.launcher import TestnetError, format_table, miner_figures, prepare


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
    assert config.params.swarm_inclusion_window == TESTNET_INCLUSION_WINDOW
    assert 0 < TESTNET_INCLUSION_WINDOW < MAX_SETTLEMENT_LAG // 2


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
