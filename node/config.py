"""Node configuration: one dataclass, read from a TOML/JSON file and merged with CLI flags.

Precedence: built-in defaults < config file (``--config`` or ``datadir/node.toml`` /
``datadir/node.json``) < explicit command-line flags. Unknown keys in a file are errors, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONFIG_NAMES = ("node.toml", "node.json")


class ConfigError(ValueError):
    """The configuration file or a flag is malformed."""


@dataclasses.dataclass(kw_only=True)
class NodeConfig:
    """Everything a node needs to start; p2p tunables have safe defaults for a LAN/testnet."""

    datadir: Path
    network: str = "dev"
    genesis_path: Path | None = None  # JSON/TOML genesis (consensus.genesis); None = built-in dev
    host: str = "127.0.0.1"
    port: int = 0  # one aiohttp app: peers on ws /p2p, API on /api/v1/..., /metrics
    peers: list[str] = dataclasses.field(default_factory=list)  # seed addresses "host:port"
    mine: bool = False
    max_peers: int = 16
    log_level: str = "info"
    log_json: bool = True
    # -- p2p tunables --------------------------------------------------------------------------
    target_outbound: int = 8  # the dialer keeps this many outbound peers when it knows addresses
    ping_interval: float = 15.0  # seconds between pings
    ping_timeout: float = 30.0  # a peer silent for this long is dropped
    handshake_timeout: float = 10.0
    request_timeout: float = 20.0  # getheaders / getdata answers
    ban_seconds: float = 3600.0  # REJECT-level misbehaviour
    dial_interval: float = 2.0  # seconds between dialer rounds
    sync_batch: int = 64  # blocks per getdata request during sync
    sync_parallel: int = 8  # getdata requests in flight during sync
    max_orphans: int = 256
    discover: bool = True  # exchange addresses and dial what peers tell us

    def __post_init__(self) -> None:
        self.datadir = Path(self.datadir)
        if self.genesis_path is not None:
            self.genesis_path = Path(self.genesis_path)
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port out of range: {self.port}")
        if self.max_peers < 1:
            raise ConfigError("max_peers must be at least 1")
        for address in self.peers:
            parse_address(address)

    @property
    def node_json_path(self) -> Path:
        return self.datadir / "node.json"

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> NodeConfig:
        """Read a config file; ``overrides`` (flags given on the command line) win."""
        raw = dict(read_config_file(Path(path)))
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> NodeConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        if "datadir" not in raw:
            raise ConfigError("datadir is required")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc

    @classmethod
    def resolve(cls, *, datadir: Path | str, config_file: Path | str | None = None,
                **overrides: Any) -> NodeConfig:
        """Defaults, then ``config_file`` or the datadir's node.toml/node.json, then flags."""
        raw: dict[str, Any] = {}
        path = Path(config_file) if config_file is not None else None
        if path is None:
            for name in CONFIG_NAMES:
                candidate = Path(datadir) / name
                if candidate.exists():
                    path = candidate
                    break
        if path is not None:
            raw.update(read_config_file(path))
        raw["datadir"] = Path(datadir)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(raw)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a ``.toml`` or ``.json`` config file into a flat mapping."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a table/object")
    return raw


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` -> (host, port); raises ConfigError on anything else."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"address must be host:port, got {address!r}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ConfigError(f"port out of range in {address!r}")
    return host.strip("[]"), port
