"""Genesis configs (TOML, JSON, built-in dev) and the genesis block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensus.genesis import (
    DEV_BALANCE,
    build_genesis,
    dev_config,
    dev_seed,
    load_genesis_config,
)
from consensus.tx import public_key
from core.errors import GenesisError
from core.interfaces import MemoryKV
from core.records import Account, StakeRecord
from core.state import State, root_from_items

ALICE = "11" * 32
TOML = f"""
chain_id = 7
timestamp = 1700000000
target_block_time = 30
initial_target = "0x{'0f' + 'ff' * 31}"
unbonding_delay = 100
min_difficulty = false

[balances]
"{ALICE}" = 1000

[stakes]
"{ALICE}" = 50
"""


def test_toml_and_json_agree(tmp_path: Path) -> None:
    toml_path = tmp_path / "net.toml"
    toml_path.write_text(TOML)
    json_path = tmp_path / "net.json"
    json_path.write_text(json.dumps({
        "chain_id": 7, "timestamp": 1700000000, "target_block_time": 30,
        "initial_target": int("0f" + "ff" * 31, 16), "unbonding_delay": 100,
        "min_difficulty": False, "balances": {ALICE: 1000}, "stakes": {ALICE: 50},
    }))
    a, b = load_genesis_config(toml_path), load_genesis_config(json_path)
    assert a == b
    assert a.params.initial_target == 2**252 - 1
    ga, gb = build_genesis(a, State(MemoryKV())), build_genesis(b, State(MemoryKV()))
    assert ga == gb and ga.header.block_id() == gb.header.block_id()


def test_genesis_state(tmp_path: Path) -> None:
    path = tmp_path / "net.toml"
    path.write_text(TOML)
    kv = MemoryKV()
    state = State(kv)
    block = build_genesis(load_genesis_config(path), state)
    alice = bytes.fromhex(ALICE)
    assert state.account(alice) == Account(balance=1000)
    assert state.stake(alice) == StakeRecord(bonded=50)
    assert block.header.state_root == state.root() == root_from_items(kv.items())
    assert State(kv).root() == state.root()  # lanes persisted
    with pytest.raises(GenesisError):
        build_genesis(load_genesis_config(path), state)  # not on a non-empty state


def test_dev_config() -> None:
    config = dev_config()
    assert config.params.min_difficulty
    assert config.balances[public_key(dev_seed(0))] == DEV_BALANCE
    assert dev_config() == config
    assert dev_config(chain_id=99).params.chain_id == 99
    g1 = build_genesis(config, State(MemoryKV()))
    g2 = build_genesis(dev_config(chain_id=99), State(MemoryKV()))
    assert g1.header.block_id() != g2.header.block_id()


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"chain_id": -1}, "genesis.params"),
        ({"initial_target": 0}, "genesis.params"),
        ({"target_block_time": 1.5}, "genesis.field"),
        ({"unbonding_delay": "soon"}, "genesis.field"),
        ({"typo_field": 1}, "genesis.field"),
        ({"balances": {"abcd": 1}}, "genesis.address"),
        ({"balances": {"zz" * 32: 1}}, "genesis.address"),
        ({"min_difficulty": 1}, "genesis.params"),
    ],
)
def test_bad_configs(change: dict[str, object], rule: str) -> None:
    with pytest.raises(GenesisError) as info:
        dev_config(**change)
    assert info.value.rule == rule


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text("chain_id: 1")
    with pytest.raises(GenesisError, match=r"toml or \.json"):
        load_genesis_config(path)
