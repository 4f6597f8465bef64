"""Fresh dev genesis files with funded keys, for local networks and functional tests.

A new network gets its own genesis (a fresh timestamp makes its genesis id unique, so nodes
of two local testnets never mistake each other for peers). The timestamp lies in the past so
that fast block generation on the dev chain (timestamps climbing past the median of the last
11) stays within the future-time bound for thousands of blocks.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consensus.genesis import DEV_BALANCE, DEV_STAKE, parse_genesis_config
from consensus.tx import public_key
from core.params import DEFAULT_SWARM_BEACON_DELAY, DEFAULT_SWARM_INCLUSION_WINDOW, MAX_TARGET

DEV_CHAIN_ID = 1337
GENESIS_AGE = 7 * 24 * 3600  # seconds the genesis timestamp lies in the past
# bonded stake a swarm node needs to register and to stay in the registry index (nodes below
# it are evicted at the next epoch start): the most the node's default swarm stake (10 000)
# allows while a 5% no-show slash does not evict; ChainParams keeps 1 for unit-test chains
TESTNET_MIN_NODE_STAKE = 5_000
TESTNET_UNBONDING_DELAY = 120
# blocks per finality epoch (docs/finality.md §1): at the launcher's paced ~3 s blocks a
# checkpoint every ~12 s, finalized about two epochs later
TESTNET_FINALITY_EPOCH_BLOCKS = 4


def genesis_dict(
    seeds: Sequence[bytes],
    *,
    timestamp: int | None = None,
    balance: int = DEV_BALANCE,
    stake: int = DEV_STAKE,
    **params: Any,
) -> dict[str, Any]:
    """A dev-network genesis (every ticket wins) funding each seed's address.

    The first seed also gets bonded stake, like the built-in dev network's first account.
    """
    if timestamp is None:
        timestamp = int(time.time()) - GENESIS_AGE
    raw: dict[str, Any] = {
        "chain_id": DEV_CHAIN_ID,
        "timestamp": timestamp,
        "target_block_time": 10,
        "initial_target": hex(MAX_TARGET),
        # longer than the swarm settlement window (100 blocks) plus an epoch, so a node that
        # misbehaves in a round cannot unbond and withdraw before its slash lands
        "unbonding_delay": TESTNET_UNBONDING_DELAY,
        "min_difficulty": True,
        "block_subsidy": 50_000_000,
        "min_node_stake": TESTNET_MIN_NODE_STAKE,
        # W, the inclusion window (an honest node's challenge can land before pay):
        # ChainParams' default (core.params.DEFAULT_SWARM_INCLUSION_WINDOW), named in the file
        "swarm_inclusion_window": DEFAULT_SWARM_INCLUSION_WINDOW,
        # k, the swarm tie beacon's delay: ChainParams' default, sized for this launcher's
        # paced blocks (core.params.DEFAULT_SWARM_BEACON_DELAY), named in the file. With the
        # window a settlement still lands well inside the 100-block settlement window.
        "swarm_beacon_delay": DEFAULT_SWARM_BEACON_DELAY,
        "finality_epoch_blocks": TESTNET_FINALITY_EPOCH_BLOCKS,
        "balances": {public_key(seed).hex(): balance for seed in seeds},
        "stakes": {public_key(seeds[0]).hex(): stake} if seeds else {},
    }
    raw.update(params)
    parse_genesis_config(raw)  # fail here, not in every node, if the config is invalid
    return raw


def write_genesis(path: Path, seeds: Sequence[bytes], **kwargs: Any) -> dict[str, Any]:
    """Write a genesis JSON file (see `genesis_dict`) and return its contents."""
    raw = genesis_dict(seeds, **kwargs)
    path.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    return raw


def write_private(path: Path, text: str) -> None:
    """Create a file readable only by its owner (0600) before any secret is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def new_keys(directory: Path, count: int) -> list[bytes]:
    """Generate ``count`` random Ed25519 seeds, stored as ``account-<i>.json`` (0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    seeds = []
    for i in range(count):
        seed = os.urandom(32)
        seeds.append(seed)
        record = {"index": i, "address": public_key(seed).hex(), "seed": seed.hex()}
        write_private(directory / f"account-{i}.json", json.dumps(record) + "\n")
    return seeds


def node_seed(datadir: Path) -> bytes:
    """The identity seed of the node in ``datadir`` (``node.key``: 32 raw bytes, 0600, the
    format `node.node.load_or_create_identity` reads), created if missing, so the launcher
    can fund the node's address before the node first starts."""
    path = datadir / "node.key"
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != 32:
            raise ValueError(f"{path} is not a 32-byte key")
        return seed
    datadir.mkdir(parents=True, exist_ok=True)
    seed = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(seed)
    return seed


def validator_key(datadir: Path) -> None:
    """Give the node in ``datadir`` a BLS validator key (``validator.key``: a random 32-byte
    seed, 0600, what `node.finality.keys` loads) unless it has one: once its identity has
    bonded stake the node registers the key and votes (dev networks: keys in clear)."""
    path = datadir / "validator.key"
    if path.exists():
        return
    datadir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))


def funded_addresses(path: Path) -> set[bytes]:
    """The addresses a genesis file gives a balance to."""
    raw = json.loads(path.read_text())
    return {bytes.fromhex(str(a)) for a, amount in dict(raw.get("balances", {})).items()
            if int(amount) > 0}


def load_keys(directory: Path) -> list[bytes]:
    """Seeds written by `new_keys`, in index order."""
    records = [json.loads(p.read_text()) for p in directory.glob("account-*.json")]
    records.sort(key=lambda r: int(r["index"]))
    return [bytes.fromhex(str(r["seed"])) for r in records]
