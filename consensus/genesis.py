"""Genesis: the network's parameters, initial allocations and block 0, from a config.

The genesis block has no certificate and no PoUW job (zero roots and shape): nothing was
mined, every node builds it from the same config, and its id is the network's identity
(peers compare it in the handshake). Validation never runs `check_certificate` at height 0.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from consensus.block import ZERO_HASH, Block, BlockHeader, transactions_root
from consensus.tx import public_key
from core.encoding import tagged_hash
from core.errors import GenesisError
from core.lthash import LtHash
from core.params import ChainParams
from core.records import Account, StakeRecord
from core.state import State

DEV_ACCOUNTS = 4
DEV_BALANCE = 10**12
DEV_STAKE = 10**9


def dev_seed(index: int) -> bytes:
    """Well-known Ed25519 seed of dev account ``index`` (public: dev networks only)."""
    return tagged_hash(b"pouw/devseed", index.to_bytes(4, "big"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenesisConfig:
    """Parameters, genesis time, and initial balances and bonded stakes (address -> amount)."""

    params: ChainParams
    timestamp: int
    balances: Mapping[bytes, int]
    stakes: Mapping[bytes, int]


def _address(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError as exc:
        raise GenesisError("genesis.address", f"not hex: {text!r}") from exc
    if len(raw) != 32:
        raise GenesisError("genesis.address", f"address must be 32 bytes: {text!r}")
    return raw


def _int(value: Any, name: str) -> int:
    """Ints, or hex/decimal strings for values TOML cannot hold (256-bit targets)."""
    if type(value) is str:
        try:
            return int(value, 0)
        except ValueError as exc:
            raise GenesisError("genesis.field", f"{name}: not an integer: {value!r}") from exc
    if type(value) is not int:
        raise GenesisError("genesis.field", f"{name} must be an integer")
    return value


def _amounts(raw: Any, name: str) -> dict[bytes, int]:
    if not isinstance(raw, Mapping):
        raise GenesisError("genesis.field", f"{name} must be a table of address -> amount")
    return {_address(k): _int(v, f"{name}[{k}]") for k, v in raw.items()}


def parse_genesis_config(raw: Mapping[str, Any]) -> GenesisConfig:
    """Build a config from a parsed JSON/TOML mapping; unknown keys are errors (typos)."""
    param_names = {f.name for f in dataclasses.fields(ChainParams)}
    known = param_names | {"timestamp", "balances", "stakes"}
    unknown = set(raw) - known
    if unknown:
        raise GenesisError("genesis.field", f"unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {}
    for name in param_names & set(raw):
        value = raw[name]
        values[name] = value if name == "min_difficulty" else _int(value, name)
    try:
        params = ChainParams(**values)
    except (TypeError, ValueError) as exc:
        raise GenesisError("genesis.params", str(exc)) from exc
    return GenesisConfig(
        params=params,
        timestamp=_int(raw.get("timestamp", 0), "timestamp"),
        balances=_amounts(raw.get("balances", {}), "balances"),
        stakes=_amounts(raw.get("stakes", {}), "stakes"),
    )


def load_genesis_config(path: str | Path) -> GenesisConfig:
    """Read a ``.toml`` or ``.json`` genesis config."""
    p = Path(path)
    if p.suffix == ".toml":
        raw = tomllib.loads(p.read_text())
    elif p.suffix == ".json":
        raw = json.loads(p.read_text())
    else:
        raise GenesisError("genesis.format", f"expected .toml or .json, got {p.name}")
    if not isinstance(raw, dict):
        raise GenesisError("genesis.format", "config must be a table/object")
    return parse_genesis_config(raw)


def dev_config(**overrides: Any) -> GenesisConfig:
    """The built-in ``dev`` network: every ticket wins, short blocks and unbonding."""
    raw: dict[str, Any] = {
        "chain_id": 1337,
        "timestamp": 1_700_000_000,
        "target_block_time": 10,
        "initial_target": 2**256 - 1,
        "unbonding_delay": 5,
        "min_difficulty": True,
        "block_subsidy": 50_000_000,
        "balances": {public_key(dev_seed(i)).hex(): DEV_BALANCE for i in range(DEV_ACCOUNTS)},
        "stakes": {public_key(dev_seed(0)).hex(): DEV_STAKE},
    }
    raw.update(overrides)
    return parse_genesis_config(raw)


def build_genesis(config: GenesisConfig, state: State) -> Block:
    """Write the initial allocations into the (empty) ``state`` and return block 0."""
    if state.root() != LtHash().root():
        raise GenesisError("genesis.state", "genesis must be built on an empty state")
    for address in sorted(config.balances):
        state.set_account(address, Account(balance=config.balances[address]))
    for address in sorted(config.stakes):
        state.set_stake(address, StakeRecord(bonded=config.stakes[address]))
    state.commit()
    params = config.params
    header = BlockHeader(
        version=params.block_version,
        chain_id=params.chain_id,
        height=0,
        parent_hash=ZERO_HASH,
        timestamp=config.timestamp,
        target=params.initial_target,
        tx_root=transactions_root(()),
        state_root=state.root(),
        miner=bytes(32),
        root_a=ZERO_HASH,
        root_b=ZERO_HASH,
        m=0,
        k=0,
        n=0,
        r=0,
        certificate=b"",
    )
    return Block(header=header, transactions=())

