"""Functional-test framework: real node processes on 127.0.0.1, driven over their HTTP API.

Modelled on Bitcoin Core's test_framework: every `TestNode` is a `pouwchain node` process
with its own datadir and port; `TestNetwork` wires them (`connect`, `disconnect`,
`split_network`, `join_network`) and waits for agreement (`sync_blocks`, `sync_mempools`,
`wait_until`). Nothing is mocked: the only way in is the network and the API.

Test nodes run with peer discovery off and, unless started with seed peers, without the
automatic dialer (``node.toml``: ``target_outbound = 0``), so the topology is exactly what the
test asked for and a split network stays split until `join_network` (like Bitcoin Core's
``-connect=0``). A node started with seeds dials them (and redials them) on its own.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from consensus.genesis import dev_seed
from consensus.tx import Transaction, public_key, sign_transaction
from contracts import Transfer
from testnet.client import ApiError, parse_metrics, request
from testnet.genesis import DEV_CHAIN_ID, write_genesis
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

FUNDED = 8  # dev_seed(0..7) are funded in every test network's genesis
DEFAULT_TIMEOUT = 60.0
GENERATE_CAP = 1000  # blocks per POST /api/v1/miner/generate

__all__ = ["FUNDED", "ApiError", "TestNetwork", "TestNode", "address_of", "transfer",
           "wait_until"]


def wait_until(predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, *,
               interval: float = 0.05, message: str = "") -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned); fail after ``timeout``.

    Connection errors while polling count as "not yet" (nodes restart under our feet), but
    the last one is reported if time runs out.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ApiError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise AssertionError(f"wait_until timed out after {timeout:.0f} s: "
                                 f"{message or predicate}{detail}")
        time.sleep(interval)


def address_of(index: int) -> str:
    """Hex address of funded dev account ``index``."""
    return public_key(dev_seed(index)).hex()


def transfer(sender: int, nonce: int, to: str, amount: int, *, fee: int = 10) -> Transaction:
    """A signed transfer from funded dev account ``sender`` to address ``to`` (hex)."""
    return sign_transaction(dev_seed(sender), chain_id=DEV_CHAIN_ID, nonce=nonce, fee=fee,
                            payload=Transfer(to=bytes.fromhex(to), amount=amount))


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
              timeout: float = DEFAULT_TIMEOUT) -> None:
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

    def wait_started(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        assert self.proc is not None, f"{self} was not launched"
        self.info = wait_ready(self.datadir, self.proc, timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for a clean exit (SIGKILL after ``timeout``); the exit code."""
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


class TestNetwork:
    """A set of test nodes sharing one fresh genesis, and the operations tests compose."""

    __test__ = False

    def __init__(self, basedir: Path) -> None:
        self.basedir = basedir
        self.genesis = basedir / "genesis.json"
        write_genesis(self.genesis, [dev_seed(i) for i in range(FUNDED)])
        self.nodes: list[TestNode] = []
        self.groups: list[list[TestNode]] = []

    def add_node(self, *, mine: bool = False, start: bool = True,
                 config: dict[str, Any] | None = None, **start_kwargs: Any) -> TestNode:
        node = TestNode(len(self.nodes), self.basedir, self.genesis, mine=mine, config=config)
        self.nodes.append(node)
        if start:
            node.start(**start_kwargs)
        return node

    def add_nodes(self, count: int, *, mine: bool = False,
                  config: dict[str, Any] | None = None) -> list[TestNode]:
        """``count`` unconnected nodes, started in parallel (startup is mostly imports)."""
        nodes = [self.add_node(mine=mine, config=config, start=False) for _ in range(count)]
        for node in nodes:
            node.launch()
        for node in nodes:
            node.wait_started()
        return nodes

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
                    timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait until every node has the same tip; that tip."""
        group = list(self.nodes if nodes is None else nodes)

        def same_tip() -> str | None:
            tips = {n.tip() for n in group}
            return tips.pop() if len(tips) == 1 else None

        result: str = wait_until(same_tip, timeout, interval=0.1,
                                 message=f"tips of {group} agree")
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


def read_info(datadir: Path) -> dict[str, Any] | None:
    """node.json of a datadir (for tests that start nodes through the CLI)."""
    return read_node_json(datadir)
