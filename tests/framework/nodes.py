"""Test nodes, in process and as real processes: the one node harness of the test suite.

In process (real aiohttp servers on 127.0.0.1, real LevelDB, one event loop with the test):

* `node_config`, `start_node` (the bare p2p node, or ``services=True`` for everything
  ``pouwchain node`` wires), `wired`, `preload`, `swarm_service`.
* `LiveNode`: a started wired node plus an in-memory chain twin that mines blocks for it.
* `ApiTestNode`: the API over a real ChainStore and Mempool, for the few tests that must *set*
  what a real node derives from its network (syncing, a peer book accepting any
  ``host:port``, miner counters); `serve` puts an app on a socket.
* `Host`: the slice of the node the miner and job service use, with the chain store's rules.

Real processes (Bitcoin Core's test_framework: `TestNode` is a ``pouwchain node`` process
with its own datadir and port; `TestNetwork` wires them with `connect`, `disconnect`,
`split_network`, `join_network` and waits for agreement with `sync_blocks`,
`sync_mempools`). Nothing is mocked there: the only way in is the network and the API.

Process nodes run with peer discovery off and, unless started with seed peers, without the
automatic dialer (``node.toml``: ``target_outbound = 0``), so the topology is exactly what the
test asked for and a split network stays split until `join_network` (like Bitcoin Core's
``-connect=0``). A node started with seeds dials them (and redials them) on its own.

Waiting is `tests.framework.util` (`wait_for` in process, `wait_until` for processes); a peer
that speaks the wire protocol by hand is `tests.framework.rawpeer.RawPeer`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import nacl.signing
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from consensus.block import Block, BlockHeader
from consensus.genesis import GenesisConfig, dev_config, dev_seed
from consensus.tx import Transaction, public_key
from node.api.chain import API_KEY, Api, register_routes
from node.api.server import ConnectionGate
from node.builder import build_mining, build_node
from node.chain.chainstore import ChainStore, ChainUpdate, update_mempool
from node.chain.mempool import Mempool
from node.config import NodeConfig
from node.mining.service import MiningService
from node.node import Node
from node.swarm.service import SwarmService
from testnet.client import ApiError, parse_metrics, request
from testnet.genesis import write_genesis
from testnet.process import (
    HOST,
    free_port,
    node_command,
    read_node_json,
    read_token,
    spawn,
    stop_process,
    wait_ready,
)
from tests.framework.chain import NOW, Chain, extend, new_chain
from tests.framework.util import DEFAULT_TIMEOUT, wait_until

#: A bound on a node that never serves, not a timing claim: a start is mostly imports (12.8 s
#: of 13.4 s at load 7: torch, py_ecc, aiohttp), and at load ~20 under nice 10 it passed the
#: 60 s default (steward, 10:25: every multi-process test of a run failed at node start).
START_TIMEOUT = 120.0

# ------------------------------------------------------------------------------ in process

def node_config(tmp_path: Path, name: str, *, dev_key: int | None = None,
                **overrides: Any) -> NodeConfig:
    """A loopback config in ``tmp_path/name`` (any port, no discovery, quick dials); with
    ``dev_key`` the node's identity is funded dev account ``dev_key`` (its node.key)."""
    if dev_key is not None:
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        (tmp_path / name / "node.key").write_bytes(dev_seed(dev_key))
    values: dict[str, Any] = {"datadir": tmp_path / name, "port": 0, "ping_interval": 5.0,
                              "dial_interval": 0.2, "discover": False, "log_json": False}
    values.update(overrides)
    return NodeConfig(**values)


def wired(config: NodeConfig, **options: Any) -> Node:
    """A real node with every service wired as ``pouwchain node`` wires it (not started);
    ``options`` go to `node.builder.build_node` (``swarm_backend``, ``swarm_options``,
    ``clock``)."""
    return build_node(config, **options)


async def start_node(tmp_path: Path, name: str, *, services: bool = False,
                     **overrides: Any) -> Node:
    """A started node in ``tmp_path/name``: the bare p2p node, or with ``services`` every
    service ``pouwchain node`` wires (miner, jobs, swarm)."""
    config = node_config(tmp_path, name, **overrides)
    node = wired(config) if services else Node(config)
    await node.start()
    return node


async def connect_all(nodes: Sequence[Node]) -> None:
    """Every node dials every later one (a full mesh)."""
    for i, node in enumerate(nodes):
        for other in nodes[i + 1:]:
            await node.peers.connect(other.listen_address)


def swarm_service(node: Node) -> SwarmService:
    """The swarm service wired on ``node`` (by `wired`)."""
    assert node.swarm is not None, "the node has no swarm service: build it with wired()"
    return node.swarm


def preload(node: Node, blocks: list[Block], *, now: int = NOW) -> None:
    """Put blocks straight into a node's store (before it has peers)."""
    for block in blocks:
        node.chain.add_block(block, now=now)


@dataclasses.dataclass
class ApiConfig:
    datadir: Path
    network: str = "dev"


class PeerBook:
    """Connected peers by node id; ``connect`` accepts ``host:port`` and refuses the rest."""

    def __init__(self) -> None:
        self.peers: dict[bytes, str] = {}

    def info(self) -> list[dict[str, Any]]:
        return [{"node_id": k.hex(), "address": v} for k, v in self.peers.items()]

    async def connect(self, address: str) -> bytes:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"bad peer address {address!r}")
        node_id = bytes([len(self.peers) + 1]) * 32
        self.peers[node_id] = address
        return node_id

    def disconnect(self, node_id: bytes) -> bool:
        return self.peers.pop(node_id, None) is not None


class MinerStats:
    """Counters in the shape the miner reports."""

    def __init__(self, **stats: float) -> None:
        self.values = stats

    def stats(self) -> dict[str, float]:
        return dict(self.values)


class SwarmStats:
    """The swarm service's model counters, in the shape `SwarmService.inference_stats` gives."""

    def __init__(self, **stats: int) -> None:
        self.values = stats

    def inference_stats(self) -> dict[str, int]:
        return dict(self.values)


class ApiTestNode:
    """A node's chain, mempool and API on one aiohttp app."""

    def __init__(self, datadir: Path) -> None:
        datadir.mkdir(parents=True, exist_ok=True)
        self.sim: Chain = new_chain()
        self.config = ApiConfig(datadir=datadir)
        self.chain = ChainStore.open(datadir / "chain", genesis=self.sim.config)
        self.mempool = Mempool(params=self.sim.params)
        self.peers = PeerBook()
        self.miner: MinerStats | None = None
        self.swarm: SwarmStats | None = None
        self.http_gate: ConnectionGate | None = None  # served by aiohttp's test server
        self.syncing = False
        self.sync_progress = 1.0
        self.best_peer_height = 0
        self.blocks_received = 0
        self.app = web.Application(client_max_size=4 << 20)
        self.api: Api = register_routes(self.app, self)

    def status(self) -> dict[str, object]:
        """The node's own facts, as ``Node.status`` gives them (the API merges these)."""
        return {"best_peer_height": self.best_peer_height, "listen": "127.0.0.1:0"}

    async def submit_transaction(self, tx: Transaction, *, origin: object = None) -> bytes:
        return self.mempool.add(tx, tip=self.chain.tip_view(), now=int(time.time()))

    async def call_chain(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)  # one thread here: inline

    def mine(self, txs: Sequence[Transaction] = (), *, seed: int = 0) -> Block:
        """Mine a block with ``txs`` on the in-memory twin and connect it to the store."""
        block = extend(self.sim, txs, seed=seed)
        update = self.chain.add_block(block, now=NOW)
        update_mempool(self.mempool, update, tip=self.chain.tip_view(), now=int(time.time()))
        return block

    def close(self) -> None:
        self.chain.close()


async def serve(app: web.Application) -> TestClient[web.Request, web.Application]:
    """Serve ``app`` on 127.0.0.1 (a real socket) and return a client for it."""
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


class LiveNode:
    """A started real node and the chain twin that mines for it."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.sim: Chain = new_chain(node.genesis)
        self.url = f"http://127.0.0.1:{node.port}"

    @classmethod
    async def start(cls, datadir: Path, **overrides: Any) -> LiveNode:
        values: dict[str, Any] = {"datadir": datadir, "port": 0, "discover": False,
                                  "log_json": False, "dial_interval": 0.2}
        values.update(overrides)
        node = wired(NodeConfig(**values))
        await node.start()
        return cls(node)

    async def stop(self) -> None:
        await self.node.stop()

    @property
    def chain(self) -> ChainStore:
        return self.node.chain

    @property
    def mempool(self) -> Mempool:
        return self.node.mempool

    @property
    def config(self) -> NodeConfig:
        return self.node.config

    @property
    def api(self) -> Api:
        return self.node.app[API_KEY]

    @property
    def miner(self) -> Any:
        return self.node.miner

    @miner.setter
    def miner(self, value: Any) -> None:
        self.node.miner = value

    async def mine(self, txs: Sequence[Transaction] = (), *, seed: int = 0) -> Block:
        """Mine the next block on the twin and submit it like a peer would."""
        block = extend(self.sim, txs, seed=seed)
        await self.node.submit_block(block)
        assert self.node.chain.tip_id == block.header.block_id()
        return block

    def session(self) -> aiohttp.ClientSession:
        """An HTTP session whose relative paths go to this node."""
        return aiohttp.ClientSession(base_url=self.url)


IDENTITY_SEED = dev_seed(3)  # a funded dev account, so receipts can pay fees


@dataclasses.dataclass
class HostConfig:
    datadir: Path
    mine: bool = False
    mining_shape: tuple[int, int, int, int] | None = None
    mining_backend: str | None = None
    miner_address: str | None = None
    mining_interval: float | None = None
    mining_block_interval: float | None = None
    mining_threads: int | None = 1


class Host:
    """Chain + mempool + identity + tip listeners; ``clock`` is the node's time."""

    def __init__(self, datadir: Path, *, genesis: GenesisConfig | None = None,
                 mine: bool = False, clock: Callable[[], float] = time.time,
                 **config: Any) -> None:
        self.config = HostConfig(datadir=datadir, mine=mine, **config)
        self.clock = clock
        self.chain = ChainStore.open(datadir / "chain", genesis=genesis or dev_config())
        self.mempool = Mempool(params=self.chain.params)
        self.identity = nacl.signing.SigningKey(IDENTITY_SEED)
        self.app = web.Application()
        self.route_hooks: list[Callable[[web.Application, Any], None]] = []
        self.tip_listeners: list[Callable[[BlockHeader], None]] = []
        self.miner: Any = None
        self.jobs: Any = None
        self.received: list[Block] = []

    def add_route_hook(self, fn: Callable[[web.Application, Any], None]) -> None:
        self.route_hooks.append(fn)
        fn(self.app, self)

    def add_tip_listener(self, cb: Callable[[BlockHeader], None]) -> None:
        self.tip_listeners.append(cb)

    async def call_chain(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)  # one thread here: inline

    async def attach_mining(self) -> MiningService:
        """The job service and miner as node.builder wires them (routes on ``app``),
        started; stopped with the app or `close`."""
        mining = build_mining(self, self.config, app=self.app, clock=self.clock)
        self.jobs, self.miner = mining.jobs, mining.active_miner
        await mining.start()
        self.app.on_cleanup.append(lambda _app: mining.stop())
        return mining

    async def submit_block(self, block: Block, *, origin: Any = None) -> ChainUpdate:
        before = self.chain.tip_id
        update = self.chain.add_block(block, now=int(self.clock()))
        self.received.append(block)
        update_mempool(self.mempool, update, tip=self.chain.tip_view(), now=int(self.clock()))
        if self.chain.tip_id != before:
            for cb in self.tip_listeners:
                cb(self.chain.tip_header)
        return update

    async def submit_transaction(self, tx: Transaction, *, origin: Any = None) -> bytes:
        return self.mempool.add(tx, tip=self.chain.tip_view(), now=int(self.clock()))

    def close(self) -> None:
        if self.miner is not None:
            self.miner.stop()
        if self.jobs is not None:
            self.jobs.stop()
        self.chain.close()


# --------------------------------------------------------------------------- processes

FUNDED = 8  # dev_seed(0..7) are funded in every test network's genesis
GENERATE_CAP = 1000  # blocks per POST /api/v1/miner/generate

def address_of(index: int) -> str:
    """Hex address of funded dev account ``index``."""
    return public_key(dev_seed(index)).hex()


class TestNode:
    """One node process: start, stop, restart, and its API and logs."""

    __test__ = False  # not a pytest test class

    def __init__(self, index: int, basedir: Path, genesis: Path, *, mine: bool = False,
                 config: dict[str, Any] | None = None) -> None:
        self.index = index
        self.datadir = basedir / f"node{index}"
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.genesis = genesis
        self.mine = mine
        self.port = free_port()  # kept across restarts, so peers can redial the same address
        self.config = {"discover": False, **(config or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.exit_codes: list[int | None] = []

    def __repr__(self) -> str:
        return f"node{self.index}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return str(self.info.get("api") or f"http://{self.address}")

    @property
    def node_id(self) -> str:
        return str(self.info["node_id"])

    @property
    def log_path(self) -> Path:
        return self.datadir / "node.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _write_config(self, *, dial: bool) -> None:
        config = dict(self.config)
        if not dial:
            config.setdefault("target_outbound", 0)
        lines = [f"{k} = {json.dumps(v)}" for k, v in config.items()]
        (self.datadir / "node.toml").write_text("\n".join(lines) + "\n")

    def start(self, *, peers: Sequence[TestNode] = (), extra_args: Sequence[str] = (),
              timeout: float = START_TIMEOUT) -> None:
        """Launch the process and wait until it serves its API (its own node.json)."""
        self.launch(peers=peers, extra_args=extra_args)
        self.wait_started(timeout)

    def launch(self, *, peers: Sequence[TestNode] = (), extra_args: Sequence[str] = ()) -> None:
        """Start the process without waiting (several nodes then start in parallel)."""
        assert not self.running, f"{self} already running"
        self._write_config(dial=bool(peers))
        cmd = node_command(self.datadir, self.port, mine=self.mine, genesis=self.genesis,
                           peers=[p.address for p in peers], extra=extra_args)
        self.proc = spawn(cmd, self.datadir.parent / f"node{self.index}.out")

    def wait_started(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is not None, f"{self} was not launched"
        self.info = wait_ready(self.datadir, self.proc, timeout)

    def stop(self, timeout: float = 120.0) -> int | None:
        """SIGTERM and wait for a clean exit (SIGKILL after ``timeout``); the exit code.

        ``timeout`` bounds a hung stop and is no timing claim: callers assert the code is 0,
        so a SIGKILL after a slow but clean stop on a loaded machine would fail them."""
        if self.proc is None:
            return None
        code = stop_process(self.proc, timeout)
        self.exit_codes.append(code)
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, for recovery tests."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, **kwargs: Any) -> None:
        code = self.stop()
        assert code == 0, f"{self} exited with {code} on SIGTERM"
        self.start(**kwargs)

    # ------------------------------------------------------------------------------- API

    def api(self, method: str, path: str, *, auth: bool = True, timeout: float = 30.0,
            **body: Any) -> Any:
        """Call the API (with the datadir's token); keyword arguments form the JSON body."""
        token = read_token(self.datadir) if auth else None
        return request(self.url, method, path, token=token, body=body or None, timeout=timeout)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.api("GET", "/api/v1/status", auth=False)
        return result

    def height(self) -> int:
        return int(self.status()["height"])

    def tip(self) -> str:
        return str(self.status()["tip"])

    def block(self, ref: int | str) -> dict[str, Any]:
        result: dict[str, Any] = self.api("GET", f"/api/v1/blocks/{ref}", auth=False)
        return result

    def account(self, address: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api("GET", f"/api/v1/accounts/{address}", auth=False)
        return result

    def balance(self, address: str) -> int:
        return int(self.account(address)["balance"])

    def peers(self) -> list[dict[str, Any]]:
        result = self.api("GET", "/api/v1/peers", auth=False)
        items = result.get("peers", result) if isinstance(result, dict) else result
        assert isinstance(items, list), result
        return items

    def peer_ids(self) -> set[str]:
        return {str(p.get("node_id")) for p in self.peers()}

    def mempool(self) -> list[str]:
        result = self.api("GET", "/api/v1/mempool", auth=False)
        items = result.get("txs", result) if isinstance(result, dict) else result
        assert isinstance(items, list), result
        return sorted(str(t.get("id") if isinstance(t, dict) else t) for t in items)

    def metrics(self) -> dict[str, float]:
        return parse_metrics(request(self.url, "GET", "/metrics", raw=True))

    def send_tx(self, tx: Transaction) -> str:
        """POST a signed transaction (canonical bytes, hex); its id."""
        result = self.api("POST", "/api/v1/txs", auth=False, tx=tx.encode().hex())
        return str(result.get("id", tx.id().hex())) if isinstance(result, dict) else tx.id().hex()

    # ------------------------------------------------------------------------------ logs

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far (across restarts)."""
        events = []
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        for line in text.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                events.append(item)
        return events

    def wait_for_log(self, predicate: Callable[[dict[str, Any]], bool],
                     timeout: float = DEFAULT_TIMEOUT, message: str = "") -> dict[str, Any]:
        """Wait for a log event matching ``predicate``; the first match."""
        def find() -> dict[str, Any] | None:
            return next((e for e in self.log_events() if predicate(e)), None)
        result: dict[str, Any] = wait_until(find, timeout, interval=0.1,
                                            message=message or f"{self} log event")
        return result

    def log_tail(self, lines: int = 60) -> str:
        """The end of node.log, and whatever the process printed that is not a log line
        (tracebacks, startup errors)."""
        out = []
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"==> {self.log_path} <==\n" + "\n".join(text))
        except OSError:
            pass
        stdout = self.datadir.parent / f"node{self.index}.out"
        try:
            other = [x for x in stdout.read_text(errors="replace").splitlines()
                     if not x.startswith('{"ts":')][-lines:]
        except OSError:
            other = []
        if other:
            out.append(f"==> {stdout} (non-log output) <==\n" + "\n".join(other))
        return "\n".join(out)


# The swarm tie beacon's delay k on a TestNetwork's genesis (docs/swarm.md §5.2a "Ties"). The
# testnet's k = 40 outlasts a round that runs into every default phase timeout; the functional
# tests' rounds took 0-2 blocks (measured), so k = 8 still puts the beacon block after every
# commit they make and keeps the settlers' wait for it exercised, at a fifth of the testnet's
# settlement latency (about 40 s less per settled round in the suite). test_testnet_swarm runs
# the launcher, with the testnet's own k.
TEST_NETWORK_BEACON_DELAY = 8


class TestNetwork:
    """A set of test nodes sharing one fresh genesis, and the operations tests compose."""

    __test__ = False

    def __init__(self, basedir: Path) -> None:
        self.basedir = basedir
        self.genesis = basedir / "genesis.json"
        write_genesis(self.genesis, [dev_seed(i) for i in range(FUNDED)],
                      swarm_beacon_delay=TEST_NETWORK_BEACON_DELAY)
        self.nodes: list[TestNode] = []
        self.groups: list[list[TestNode]] = []

    def add_node(self, *, mine: bool = False, start: bool = True,
                 config: dict[str, Any] | None = None, dev_key: int | None = None,
                 **start_kwargs: Any) -> TestNode:
        """A new node (started unless ``start`` is False); with ``dev_key`` its identity is
        funded dev account ``dev_key``."""
        node = TestNode(len(self.nodes), self.basedir, self.genesis, mine=mine, config=config)
        if dev_key is not None:
            (node.datadir / "node.key").write_bytes(dev_seed(dev_key))
        self.nodes.append(node)
        if start:
            node.start(**start_kwargs)
        return node

    def add_nodes(self, count: int, *, mine: bool = False,
                  config: dict[str, Any] | None = None) -> list[TestNode]:
        """``count`` unconnected nodes, started in parallel (startup is mostly imports)."""
        nodes = [self.add_node(mine=mine, config=config, start=False) for _ in range(count)]
        self.start_all(nodes)
        return nodes

    @staticmethod
    def start_all(nodes: Sequence[TestNode]) -> None:
        """Start added nodes in parallel: launch them all, then wait for each."""
        for node in nodes:
            node.launch()
        for node in nodes:
            node.wait_started()

    def teardown(self) -> None:
        """Stop every node (SIGTERM to all, then wait, then SIGKILL): never leave a process
        behind."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                node.stop(timeout=10.0)
            except Exception:  # teardown must reach every node
                node.kill()

    # -------------------------------------------------------------------------- topology

    def connect(self, a: TestNode, b: TestNode, timeout: float = 30.0) -> None:
        """Make ``a`` dial ``b`` and wait until each lists the other as a peer."""
        a.api("POST", "/api/v1/peers", address=b.address)
        wait_until(lambda: b.node_id in a.peer_ids() and a.node_id in b.peer_ids(), timeout,
                   message=f"{a} <-> {b} connected")

    def disconnect(self, a: TestNode, b: TestNode, timeout: float = 30.0) -> None:
        """Drop the connection between ``a`` and ``b`` and wait until both see it gone."""
        if b.node_id in a.peer_ids():
            try:
                a.api("DELETE", f"/api/v1/peers/{b.node_id}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
        wait_until(lambda: b.node_id not in a.peer_ids() and a.node_id not in b.peer_ids(),
                   timeout, message=f"{a} and {b} disconnected")

    def connect_all(self, nodes: Sequence[TestNode] | None = None) -> None:
        """A full mesh: every node dials every earlier one (1-0, 2-0, 2-1, ...)."""
        group = list(self.nodes if nodes is None else nodes)
        for i, node in enumerate(group):
            for other in group[:i]:
                self.connect(node, other)

    def connect_chain(self, nodes: Sequence[TestNode] | None = None) -> None:
        """Connect nodes in a line: 0-1, 1-2, ... (blocks must hop to reach the far end)."""
        nodes = list(self.nodes if nodes is None else nodes)
        for a, b in itertools.pairwise(nodes):
            self.connect(b, a)

    def split_network(self, groups: Sequence[Sequence[TestNode]]) -> None:
        """Cut every connection between different groups."""
        self.groups = [list(g) for g in groups]
        for i, group in enumerate(self.groups):
            for other in self.groups[i + 1:]:
                for a in group:
                    for b in other:
                        if b.node_id in a.peer_ids() or a.node_id in b.peer_ids():
                            self.disconnect(a, b)

    def join_network(self) -> None:
        """Reconnect the groups of the last `split_network` (first node of each to the next)."""
        assert self.groups, "join_network without split_network"
        for group, other in zip(self.groups, self.groups[1:], strict=False):
            self.connect(group[0], other[0])
        self.groups = []

    # ----------------------------------------------------------------------------- waits

    def sync_blocks(self, nodes: Iterable[TestNode] | None = None,
                    timeout: float = DEFAULT_TIMEOUT, *, block: str | None = None) -> str:
        """Wait until the nodes agree; the block they agree on.

        With ``block`` (an id `generate` returned): until that block is on every node's best
        chain; it is returned even if a node has mined on top of it meanwhile. Without: until
        every node's best chain holds the same block at the lowest of their tips, and that
        height is at least the highest tip when called (or until their tips are equal: a
        reorg to more work on fewer blocks); that block. Never "equal tip heights": a node
        that mines on its own does not stop at the block a test waits for.
        """
        group = list(self.nodes if nodes is None else nodes)
        if block is not None:
            wait_until(lambda: all(on_best_chain(n, block) for n in group), timeout,
                       interval=0.1, message=f"block {block[:16]} on the chains of {group}")
            return block
        floor = max(n.height() for n in group)

        def agreed() -> str | None:
            status = [n.status() for n in group]
            tips = {str(s["tip"]) for s in status}
            if len(tips) == 1:
                return tips.pop()
            common = min(int(s["height"]) for s in status)
            if common < floor:
                return None
            ids = {str(n.block(common)["id"]) for n in group}
            return ids.pop() if len(ids) == 1 else None

        result: str = wait_until(agreed, timeout, interval=0.1,
                                 message=f"chains of {group} agree")
        return result

    def sync_mempools(self, nodes: Iterable[TestNode] | None = None,
                      timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """Wait until every node's mempool holds the same transactions; their ids."""
        group = list(self.nodes if nodes is None else nodes)

        def same() -> tuple[list[str]] | None:
            pools = [n.mempool() for n in group]
            return (pools[0],) if all(p == pools[0] for p in pools) else None

        result: tuple[list[str]] = wait_until(same, timeout, interval=0.1,
                                              message=f"mempools of {group} agree")
        return result[0]

    def generate(self, node: TestNode, n: int, timeout: float = 300.0) -> list[str]:
        """Mine ``n`` blocks on ``node`` now (in calls of at most 1,000, the API's cap); their
        ids. Past ~300 quick blocks the dev chain's timestamps reach the future-time bound
        and the miner waits for the clock: about 6 blocks/s from then on."""
        ids: list[str] = []
        while len(ids) < n:
            count = min(GENERATE_CAP, n - len(ids))
            result = node.api("POST", "/api/v1/miner/generate", timeout=timeout, count=count)
            blocks = result["blocks"]
            assert isinstance(blocks, list) and len(blocks) == count, result
            ids += [str(b) for b in blocks]
        return ids

    @staticmethod
    def wait_until(predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT,
                   message: str = "") -> Any:
        return wait_until(predicate, timeout, message=message)


def on_best_chain(node: TestNode, block: str) -> bool:
    """True iff ``block`` (an id) is on ``node``'s best chain (False while it is unknown)."""
    try:
        return bool(node.block(block)["canonical"])
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise


def read_info(datadir: Path) -> dict[str, Any] | None:
    """node.json of a datadir (for tests that start nodes through the CLI)."""
    return read_node_json(datadir)
