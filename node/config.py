"""Node configuration: one dataclass, read from a TOML/JSON file and merged with CLI flags.

Precedence: built-in defaults < config file (``--config`` or ``datadir/node.toml``) <
explicit command-line flags. Unknown keys in a file are errors, so a typo never silently
falls back to a default. ``datadir/node.json`` is never read as configuration: it is the
running node's runtime file (pid, port, node_id, api), which a killed node leaves behind.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.encoding import MAX_U64
from node.chain.db import DEFAULT_CACHE_BYTES, DEFAULT_WRITE_BUFFER_BYTES
from node.chain.mempool import DEFAULT_MIN_FEE_PER_KB
from node.memory import (
    DEFAULT_MALLOC_ARENAS,
    DEFAULT_MMAP_THRESHOLD_KB,
    DEFAULT_TRIM_INTERVAL,
    MAX_MMAP_THRESHOLD_KB,
)
from pouw.backends import BACKEND_NAMES
from pouw.errors import ParamsError
from pouw.params import PouwParams
from swarm.messages import DEFAULT_ROUND_JUDGES

CONFIG_NAMES = ("node.toml",)  # looked up in the datadir when no --config is given
RUNTIME_FILE = "node.json"  # written by the running node, removed on a clean stop
DEFAULT_PORT = 7645  # `pouwchain node` and the CLIs' default http://127.0.0.1:7645
# self-generated mining work (m, k, n, r): ~1 ms per job on a CPU (node.mining.miner.MinerConfig)
DEFAULT_MINING_SHAPE = (64, 256, 64, 32)
# stake a swarm node bonds before registering (node.swarm.registration): well above the
# dev chain's min_node_stake, small next to a dev account's balance
DEFAULT_SWARM_STAKE = 10_000
MAX_SWARM_TEMPERATURE = 2.0  # swarm_temperature: 0 (greedy) to this
MAX_SYSTEM_PROMPT_BYTES = 2048  # swarm_system_prompt, UTF-8
LLM_BACKEND_KIND = "smollm2"  # the language-model backend (swarm.runtime.llm)
MAX_DB_MEMORY_MB = 4096  # db_cache_mb, db_write_buffer_mb: at most this many MiB each
MAX_MALLOC_ARENAS = 1024


class ConfigError(ValueError):
    """The configuration file or a flag is malformed."""


@dataclasses.dataclass(kw_only=True)
class NodeConfig:
    """Everything a node needs to start; p2p tunables have safe defaults for a LAN/testnet."""

    datadir: Path
    network: str = "dev"
    genesis_path: Path | None = None  # JSON/TOML genesis (consensus.genesis); None = built-in dev
    host: str = "127.0.0.1"
    # one aiohttp app: peers on ws /p2p, API on /api/v1/..., /metrics; 0 = any free port
    port: int = DEFAULT_PORT
    peers: list[str] = dataclasses.field(default_factory=list)  # seed addresses "host:port"
    mine: bool = False
    max_peers: int = 16
    log_level: str = "info"
    # node.log's format: JSON lines, text, or None: text when stderr is a terminal, else JSON;
    # stderr gets the log too when it is a terminal (None) or always/never (node.logging)
    log_json: bool | None = None
    log_stderr: bool | None = None
    # -- p2p tunables --------------------------------------------------------------------------
    target_outbound: int = 8  # the dialer keeps this many outbound peers when it knows addresses
    ping_interval: float = 15.0  # seconds between pings
    ping_timeout: float = 30.0  # a peer silent for this long is dropped
    handshake_timeout: float = 10.0
    request_timeout: float = 20.0  # getheaders / getdata answers
    ban_seconds: float = 3600.0  # REJECT-level misbehaviour
    # per-peer rate limits (token buckets, node.p2p.manager): frames a second and burst;
    # 0 = unlimited. Frames over the limit are dropped; a peer 4 bursts in debt is banned.
    # Transactions: an honest peer relays at most what it admits (~2,700/s with the journal,
    # bench/mempool_journal.py) and in bursts (bench/network.py: 5 blocks of 1,000), so the
    # bucket is big; it bounds what a flood of unpayable transactions costs in signature
    # checks (~60 us each: 1,000/s is ~6% of a core)
    peer_tx_rate: float = 1000.0
    peer_tx_burst: float = 10000.0
    peer_swarm_rate: float = 200.0
    peer_swarm_burst: float = 2000.0
    dial_interval: float = 2.0  # seconds between dialer rounds
    sync_batch: int = 64  # blocks per getdata request during sync
    sync_parallel: int = 8  # getdata requests in flight during sync
    max_orphans: int = 256
    discover: bool = True  # exchange addresses and dial what peers tell us
    # -- mempool policy (node.chain.mempool; relay policy, not consensus) ----------------------
    # least fee per 1000 canonical bytes (rounded up) a transaction must pay to be admitted
    # and relayed; below it the API answers 400 fee_too_low and peers' copies are dropped
    min_relay_fee_per_kb: int = DEFAULT_MIN_FEE_PER_KB
    # an admitted transaction's journal entry is in the OS before the API answers (it
    # survives a killed node); it is fsynced (survives a power cut) by a group commit this
    # many seconds later at most, or, with 0, before the answer (~5 ms per admission)
    mempool_fsync_interval: float = 0.1
    # LevelDB's block cache and write buffer, MiB (node.chain.db: bounds of its native memory)
    db_cache_mb: int = DEFAULT_CACHE_BYTES >> 20
    db_write_buffer_mb: int = DEFAULT_WRITE_BUFFER_BYTES >> 20
    # glibc malloc arenas of the `pouwchain node` process (node.memory); 0: glibc's default
    malloc_arenas: int = DEFAULT_MALLOC_ARENAS
    malloc_trim_interval: float = DEFAULT_TRIM_INTERVAL  # seconds between malloc_trim; 0: never
    # blocks of this many KiB or more get their own map, returned when freed; 0: glibc's default
    malloc_mmap_threshold_kb: int = DEFAULT_MMAP_THRESHOLD_KB
    # -- mining (read by node.mining.miner.MinerConfig.from_node_config) ----------------------
    miner_address: str | None = None  # coinbase public key (hex); None = the node identity's
    mining_shape: tuple[int, int, int, int] = DEFAULT_MINING_SHAPE  # self-generated work
    mining_backend: str = "auto"  # pouw backend of the miner and the job worker
    # torch CPU threads of the miner's and the job worker's GEMMs; None (0 in a file or flag):
    # torch's default, one per core
    mining_threads: int | None = 1
    mining_interval: float = 0.0  # seconds to pause between mining rounds
    # a dev chain (one round wins) paces itself to one block per this many seconds
    mining_block_interval: float = 3.0
    # -- swarm inference (node.swarm.service) ------------------------------------------------------
    # backend spec (swarm.runtime.factory, node.swarm.backend), e.g. "smollm2" (the shipped
    # SmolLM2-135M-Instruct, int8, its conversion cache in <datadir>/llm-cache) or
    # "builtin:arith-m"; None: answer and judge nothing (the node still takes client requests
    # and coordinates rounds)
    swarm_backend: str | None = None
    # a language-model backend's sampling temperature (None: the spec's, else 0 = greedy) and
    # system prompt (None: the model's default): nodes with one weights file answer apart.
    # Each round's sampling seed is drawn from (round id, node id).
    swarm_temperature: float | None = None
    swarm_system_prompt: str | None = None
    # stake, register and calibrate this node in the chain's swarm registry by itself
    # (node.swarm.registration), so its rounds draw from the registry and settle on chain;
    # needs swarm_backend (the model it registers and calibrates with)
    swarm_register: bool = False
    swarm_stake: int = DEFAULT_SWARM_STAKE  # bonded stake the node tops itself up to
    # rounds this node originates ask this many answerers and judges (at most the eligible);
    # the judge default is what the coalition bound needs (swarm.messages.DEFAULT_ROUND_JUDGES)
    swarm_answers: int = 4
    swarm_judges: int = DEFAULT_ROUND_JUDGES
    # a backup settler k (node.swarm.service) waits k times this many seconds for the origin
    swarm_settle_backoff: float = 10.0

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
        self._check_mining()
        self._check_swarm()
        self._check_policy()
        self._check_memory()

    def _check_memory(self) -> None:
        for name in ("db_cache_mb", "db_write_buffer_mb"):
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= MAX_DB_MEMORY_MB:
                raise ConfigError(f"{name} must be an integer from 1 to {MAX_DB_MEMORY_MB} (MiB)")
        if type(self.malloc_arenas) is not int or not 0 <= self.malloc_arenas <= MAX_MALLOC_ARENAS:
            raise ConfigError(f"malloc_arenas must be an integer from 0 to {MAX_MALLOC_ARENAS}")
        if type(self.malloc_mmap_threshold_kb) is not int or \
                not 0 <= self.malloc_mmap_threshold_kb <= MAX_MMAP_THRESHOLD_KB:
            raise ConfigError("malloc_mmap_threshold_kb must be an integer from 0 to "
                              f"{MAX_MMAP_THRESHOLD_KB} (KiB)")
        if type(self.malloc_trim_interval) not in (int, float) or \
                not 0 <= self.malloc_trim_interval <= 3600:
            raise ConfigError("malloc_trim_interval must be 0 to 3600 seconds")
        self.malloc_trim_interval = float(self.malloc_trim_interval)

    def _check_policy(self) -> None:
        if type(self.min_relay_fee_per_kb) is not int or \
                not 0 <= self.min_relay_fee_per_kb <= MAX_U64:
            raise ConfigError("min_relay_fee_per_kb must be a non-negative integer")
        if type(self.mempool_fsync_interval) not in (int, float) or \
                not 0 <= self.mempool_fsync_interval <= 60:
            raise ConfigError("mempool_fsync_interval must be 0 to 60 seconds")
        self.mempool_fsync_interval = float(self.mempool_fsync_interval)
        for name in ("peer_tx_rate", "peer_tx_burst", "peer_swarm_rate", "peer_swarm_burst"):
            value = getattr(self, name)
            if type(value) not in (int, float) or value < 0:
                raise ConfigError(f"{name} must be a non-negative number")
            setattr(self, name, float(value))
        for rate, burst in (("peer_tx_rate", "peer_tx_burst"),
                            ("peer_swarm_rate", "peer_swarm_burst")):
            if getattr(self, rate) > 0 and getattr(self, burst) < 1:
                raise ConfigError(f"{burst} must be at least 1 when {rate} is set")

    def _check_swarm(self) -> None:
        if type(self.swarm_register) is not bool:
            raise ConfigError("swarm_register must be true or false")
        if type(self.swarm_stake) is not int or not 0 < self.swarm_stake <= MAX_U64:
            raise ConfigError("swarm_stake must be a positive integer (u64)")
        for name in ("swarm_answers", "swarm_judges"):
            value = getattr(self, name)
            if type(value) is not int or not 1 <= value <= 64:
                raise ConfigError(f"{name} must be an integer from 1 to 64")
        if type(self.swarm_settle_backoff) not in (int, float) or \
                not 0 <= self.swarm_settle_backoff <= 3600:
            raise ConfigError("swarm_settle_backoff must be 0 to 3600 seconds")
        self._check_swarm_sampling()
        if self.swarm_register and not self.swarm_backend:
            raise ConfigError("swarm_register needs swarm_backend (the model the node "
                              "registers and calibrates with)")

    def _check_swarm_sampling(self) -> None:
        if self.swarm_temperature is not None:
            if type(self.swarm_temperature) not in (int, float) or \
                    not 0 <= self.swarm_temperature <= MAX_SWARM_TEMPERATURE:
                raise ConfigError(f"swarm_temperature must be a number from 0 to "
                                  f"{MAX_SWARM_TEMPERATURE:g}")
            self.swarm_temperature = float(self.swarm_temperature)
        if self.swarm_system_prompt is not None and (
                type(self.swarm_system_prompt) is not str or
                len(self.swarm_system_prompt.encode()) > MAX_SYSTEM_PROMPT_BYTES):
            raise ConfigError(f"swarm_system_prompt must be text of at most "
                              f"{MAX_SYSTEM_PROMPT_BYTES} bytes")
        if (self.swarm_temperature is not None or self.swarm_system_prompt is not None) and \
                not is_llm_spec(self.swarm_backend):
            raise ConfigError("swarm_temperature and swarm_system_prompt need a language-model "
                              "swarm_backend (smollm2)")

    def _check_mining(self) -> None:
        self._check_miner_address()
        self._check_mining_shape()
        if self.mining_backend not in BACKEND_NAMES:
            raise ConfigError(f"unknown mining_backend {self.mining_backend!r}; choose from "
                              f"{', '.join(BACKEND_NAMES)}")
        if self.mining_threads is not None:
            if type(self.mining_threads) is not int or self.mining_threads < 0:
                raise ConfigError("mining_threads must be a non-negative integer")
            if self.mining_threads == 0:
                self.mining_threads = None
        for name in ("mining_interval", "mining_block_interval"):
            value = getattr(self, name)
            if type(value) not in (int, float) or value < 0:
                raise ConfigError(f"{name} must be a non-negative number of seconds")
            setattr(self, name, float(value))

    def _check_miner_address(self) -> None:
        if self.miner_address is None:
            return
        text = str(self.miner_address).lower().removeprefix("0x")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigError("miner_address must be a 32-byte public key in hex")
        self.miner_address = text

    def _check_mining_shape(self) -> None:
        try:
            shape = tuple(int(x) for x in self.mining_shape)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"mining_shape must be [m, k, n, r]: {exc}") from exc
        if len(shape) != 4:
            raise ConfigError("mining_shape must be [m, k, n, r]")
        m, k, n, r = shape
        try:
            PouwParams(m=m, k=k, n=n, r=r).validate()
        except ParamsError as exc:
            raise ConfigError(f"mining_shape: {exc}") from exc
        self.mining_shape = (m, k, n, r)

    @property
    def node_json_path(self) -> Path:
        return self.datadir / RUNTIME_FILE

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
        """Defaults, then ``config_file`` or the datadir's node.toml, then flags."""
        raw: dict[str, Any] = {}
        path = Path(config_file) if config_file is not None else None
        if path is None:
            for name in CONFIG_NAMES:
                candidate = Path(datadir) / name
                if candidate.exists():
                    path = candidate
                    break
        if path is not None:
            if path.resolve() == (Path(datadir) / RUNTIME_FILE).resolve():
                raise ConfigError(f"{path}: {RUNTIME_FILE} is the running node's runtime file, "
                                  "not a config (use node.toml)")
            raw.update(read_config_file(path))
        raw["datadir"] = Path(datadir)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(raw)


def is_llm_spec(spec: str | None) -> bool:
    """True iff the backend spec names the language model (``smollm2`` or ``smollm2:...``)."""
    return bool(spec) and str(spec).partition(":")[0].strip() == LLM_BACKEND_KIND


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
