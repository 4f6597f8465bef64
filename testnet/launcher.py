"""A local testnet: N node processes on 127.0.0.1 sharing a fresh dev genesis.

Layout of the testnet directory::

    genesis.json      the network's genesis (funded keys and node identities, dev difficulty)
    keys/             account-<i>.json seeds of the funded accounts (0600)
    node-<i>/         each node's datadir (node.key, node.toml, node.json, api.token, node.log,
                      chain data)
    node-<i>.out      each node's stdout/stderr
    testnet.json      pids, ports and roles of the running nodes (for status and down)

`up` reuses an existing directory (same genesis and chains, new ports) so `make run` can be
repeated; ``fresh=True`` recreates it. This module never imports ``node``: it drives nodes
as separate processes, exactly as a user would.

Swarm nodes join the chain's registry by themselves (`node.swarm.registration`): each
node's ``node.toml`` gets ``swarm_backend``, ``swarm_register = true`` and ``swarm_stake``
(unless the file already sets them), and its identity (``node.key``, made here before the
genesis) is funded in the genesis. A reused directory whose genesis predates a node's key
gets that node funded by a transfer from account 0 instead (`fund_nodes`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from consensus.tx import public_key, sign_transaction
from contracts import Transfer
from testnet.client import ApiError, parse_metrics, request
from testnet.genesis import (
    funded_addresses,
    load_keys,
    new_keys,
    node_seed,
    validator_key,
    write_genesis,
)
from testnet.process import (
    HOST,
    free_port,
    node_command,
    pid_alive,
    pid_is_node,
    read_node_json,
    spawn,
    stop_pids,
    wait_ready,
)

FUNDED_ACCOUNTS = 8
#: what the testnet's swarm nodes serve: the shipped language model (the default: free-form
#: questions) or the built-in arithmetic variants (bench and tests: they calibrate at once)
LLM = "smollm2"
ARITH = "arith"
SWARM_MODELS = (LLM, ARITH)
#: with ``arith``, node i answers and judges with spec i mod 7 (built-in variants,
#: swarm.runtime.builtin, not imported: it loads torch). The first four pass calibration
#: (arith-l every time over three answer forms, so nodes with the same weights still answer
#: independently; arith-m about half the time, retrying after 100 blocks); arith-s and
#: arith-xs, from the sixth node on, almost never do: they show a node the registry keeps
#: out of rounds.
SWARM_VARIANTS = ("arith-l", "arith-m", "arith-l?form=1", "arith-l?form=2", "arith-m?form=1",
                  "arith-s", "arith-xs")
#: with ``smollm2``, node i samples with temperature and system prompt i mod 4 (and each
#: round's seed from (round, node)): one weights file, a heterogeneous swarm. Node 0 answers
#: greedily with the model's own system prompt. Measured: at 0.5 and above, or with wordier
#: system prompts, the 135M model drifts (French, made-up places) and the likelihood judge
#: can prefer such an answer; at 0.3 with short prompts its answers stay on the question.
LLM_VARIANTS: tuple[tuple[float, str | None], ...] = (
    (0.0, None),
    (0.3, "You are a concise assistant. Answer in one short sentence."),
    (0.3, "Answer the question in one short sentence."),
    (0.3, None),
)


def swarm_backend(index: int, model: str = LLM) -> str:
    """The backend spec of testnet node ``index`` (``smollm2``: its conversion cache in the
    node's datadir, ``llm-cache``)."""
    if model == LLM:
        return LLM
    if model == ARITH:
        return f"builtin:{SWARM_VARIANTS[index % len(SWARM_VARIANTS)]}"
    raise TestnetError(f"unknown swarm model {model!r}; choose from {', '.join(SWARM_MODELS)}")


def swarm_settings(index: int, model: str = LLM) -> dict[str, object]:
    """The swarm settings testnet node ``index`` gets in its node.toml."""
    settings: dict[str, object] = {"swarm_backend": swarm_backend(index, model),
                                   "swarm_register": True,  # stake, register, calibrate
                                   "swarm_stake": SWARM_STAKE}
    if model == LLM:
        temperature, system = LLM_VARIANTS[index % len(LLM_VARIANTS)]
        settings["swarm_temperature"] = temperature
        if system is not None:
            settings["swarm_system_prompt"] = system
    return settings


SWARM_STAKE = 10_000  # what each testnet node bonds before it registers
NODE_FUNDS = 10**9  # a node funded after genesis (`fund_nodes`) gets this from account 0
TX_FEE = 10
CONFIG_HEADER = "# pouwchain node config (flags on the command line win)\n"


STATE_FILE = "testnet.json"
SWARM_ROUTE = "/api/v1/swarm/registration"  # node.swarm.registration.ROUTE (not imported)


class TestnetError(RuntimeError):
    """A testnet directory that cannot be used, or nodes that failed to start."""

    __test__ = False  # its name starts with "Test": keep pytest from collecting it


@dataclasses.dataclass
class NodeRecord:
    """One node of the testnet as recorded in testnet.json."""

    index: int
    datadir: str
    port: int
    mine: bool
    pid: int = 0
    api: str = ""

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


def load_state(directory: Path) -> list[NodeRecord]:
    """The nodes recorded in ``directory/testnet.json`` (empty if none)."""
    try:
        raw = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [NodeRecord(**n) for n in raw.get("nodes", [])]


def save_state(directory: Path, nodes: list[NodeRecord], *, detached: bool) -> None:
    data = {"detached": detached, "started": int(time.time()),
            "genesis": str(directory / "genesis.json"),
            "nodes": [dataclasses.asdict(n) for n in nodes]}
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(directory / STATE_FILE)


def running_nodes(directory: Path) -> list[NodeRecord]:
    """Recorded nodes whose process still runs (checked against its datadir, not just pid)."""
    return [n for n in load_state(directory)
            if n.pid and pid_alive(n.pid) and pid_is_node(n.pid, Path(n.datadir))]


def down(directory: Path, *, out: TextIO = sys.stdout, timeout: float = 15.0) -> int:
    """Stop every running node of the testnet (SIGTERM, wait, SIGKILL); the number stopped."""
    nodes = running_nodes(directory)
    clean = stop_pids([n.pid for n in nodes], timeout)
    for n in nodes:
        print(f"node-{n.index} (pid {n.pid}) {'stopped' if clean[n.pid] else 'killed'}",
              file=out)
    if (directory / STATE_FILE).exists():
        recorded = load_state(directory)
        for n in recorded:
            n.pid = 0
            n.api = ""
        save_state(directory, recorded, detached=False)
    return len(nodes)


def prepare(directory: Path, nodes: int, *, fresh: bool) -> Path:
    """Create (or reuse) the directory's genesis and keys; the genesis path."""
    genesis = directory / "genesis.json"
    if directory.exists() and any(directory.iterdir()) and not genesis.exists():
        raise TestnetError(f"{directory} exists and is not a testnet directory; "
                           "choose another --dir")
    if fresh and directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not genesis.exists() or not load_keys(directory / "keys"):
        for stale in directory.glob("node-*"):
            if stale.is_dir():
                shutil.rmtree(stale)  # chains of another genesis would not start
        seeds = new_keys(directory / "keys", max(FUNDED_ACCOUNTS, nodes))
        # the nodes' own identities are funded too: they stake and register themselves
        identities = [node_seed(directory / f"node-{i}") for i in range(nodes)]
        write_genesis(genesis, [*seeds, *identities])
    return genesis


def write_node_config(datadir: Path, index: int, *, swarm: bool, model: str = LLM) -> None:
    """Create the node's ``node.toml`` (to edit by hand) or add the swarm settings it lacks
    (`swarm_settings`); settings the file already has are left alone. A file written for
    another swarm model gets this model's settings: the command line names the backend."""
    path = datadir / "node.toml"
    text = path.read_text() if path.exists() else CONFIG_HEADER
    if not swarm:
        if not path.exists():
            path.write_text(text)
        return
    try:
        present = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        present = {}  # the node will report the broken file; do not touch it
        if path.exists():
            return
    wanted = swarm_settings(index, model)
    if present.get("swarm_backend") not in (None, wanted["swarm_backend"]):
        # another model's file (`up --swarm-model` changed): its sampling keys go
        text = "".join(line for line in text.splitlines(keepends=True)
                       if line.partition("=")[0].strip() not in (
                           "swarm_backend", "swarm_temperature", "swarm_system_prompt"))
        present = {k: v for k, v in present.items()
                   if k not in ("swarm_backend", "swarm_temperature", "swarm_system_prompt")}
    missing = [f"{key} = {json.dumps(value)}" for key, value in wanted.items()
               if key not in present]
    if missing or not path.exists():
        path.write_text(text.rstrip("\n") + "\n" + "".join(f"{line}\n" for line in missing))


def fund_nodes(directory: Path, records: list[NodeRecord], *,
               out: TextIO = sys.stdout) -> list[int]:
    """Fund (from account 0, through node 0's API) every node whose identity the genesis
    does not fund and whose balance is zero; the indexes of the nodes funded."""
    genesis_path = directory / "genesis.json"
    funded = funded_addresses(genesis_path)
    todo = [(rec, public_key(node_seed(Path(rec.datadir)))) for rec in records]
    todo = [(rec, address) for rec, address in todo if address not in funded]
    if not todo or not records[0].api:
        return []
    chain_id = int(json.loads(genesis_path.read_text())["chain_id"])
    payer = load_keys(directory / "keys")[0]
    api = records[0].api
    nonce = int(request(api, "GET", f"/api/v1/accounts/{public_key(payer).hex()}")["next_nonce"])
    done = []
    for rec, address in todo:
        if int(request(api, "GET", f"/api/v1/accounts/{address.hex()}")["balance"]) > 0:
            continue
        tx = sign_transaction(payer, chain_id=chain_id, nonce=nonce, fee=TX_FEE,
                              payload=Transfer(to=address, amount=NODE_FUNDS))
        try:
            request(api, "POST", "/api/v1/txs", body={"tx": tx.encode().hex()})
        except ApiError as exc:
            print(f"node-{rec.index}: could not fund its key: {exc}", file=out)
            continue
        nonce += 1
        done.append(rec.index)
        print(f"node-{rec.index}: funded with {NODE_FUNDS} from account 0 "
              "(its key is not in this genesis)", file=out)
    return done


def up(
    directory: Path,
    nodes: int,
    *,
    miners: int | None = None,
    fresh: bool = False,
    out: TextIO = sys.stdout,
    ready_timeout: float = 120.0,
    swarm: bool = True,
    swarm_model: str = LLM,
    log_json: bool | None = None,
) -> list[NodeRecord]:
    """Start ``nodes`` nodes in a ring (node i dials node i-1, the last also dials node 0).

    With ``swarm`` (the default) node i serves ``swarm_model``: the shipped language model
    (``smollm2``, the default; sampling settings `swarm_settings`) or the built-in
    arithmetic variant `swarm_backend(i, "arith")`, and stakes, registers and calibrates
    itself (``swarm_register`` in its node.toml).

    The first ``miners`` nodes mine (default: half, at least one); all validate. Nodes run
    in their own sessions, all launched before any is waited for (they load their models side
    by side); testnet.json is written after each launch so `down` can always find them, even
    if this process is killed.
    """
    if nodes < 1:
        raise TestnetError("--nodes must be at least 1")
    mining = max(1, nodes // 2) if miners is None else miners
    if not 0 <= mining <= nodes:
        raise TestnetError("--miners must be between 0 and --nodes")
    directory = directory.resolve()
    if running_nodes(directory):
        print(f"stopping the testnet already running in {directory}", file=out)
        down(directory, out=out)
    genesis = prepare(directory, nodes, fresh=fresh)
    ports = _distinct_ports(nodes)
    records: list[NodeRecord] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # every node is launched before any is waited for: the ports are known, a node dials
        # its peers until they listen, and the nodes load their models side by side
        for i in range(nodes):
            peers = [f"{HOST}:{ports[i - 1]}"] if i else []
            if i == nodes - 1 and nodes > 2:
                peers.append(f"{HOST}:{ports[0]}")
            rec = NodeRecord(index=i, datadir=str(directory / f"node-{i}"), port=ports[i],
                             mine=i < mining)
            datadir = Path(rec.datadir)
            datadir.mkdir(exist_ok=True)
            node_seed(datadir)  # the identity the genesis (or fund_nodes) funds
            validator_key(datadir)  # registered and voting once the node has staked
            write_node_config(datadir, i, swarm=swarm, model=swarm_model)
            extra = ["--swarm-backend", swarm_backend(i, swarm_model)] if swarm else []
            extra += log_flags(log_json)
            cmd = node_command(datadir, rec.port, mine=rec.mine, peers=peers, genesis=genesis,
                               extra=extra)
            procs.append(spawn(cmd, directory / f"node-{i}.out", detach=True))
            rec.pid = procs[-1].pid
            records.append(rec)
            save_state(directory, records, detached=True)
        for rec, proc in zip(records, procs, strict=True):
            info = wait_ready(Path(rec.datadir), proc, ready_timeout)
            rec.api = str(info["api"])
            save_state(directory, records, detached=True)
            role = "miner" if rec.mine else "validator"
            print(f"node-{rec.index}: {role} pid {rec.pid} on {rec.address} ({rec.api})",
                  file=out)
        if swarm:
            try:
                fund_nodes(directory, records, out=out)
            except (OSError, ValueError, ApiError) as exc:  # the nodes run; say why not funded
                print(f"testnet: could not fund the nodes' keys: {exc}", file=out)
    except BaseException:
        stop_pids([rec.pid for rec in records if rec.pid])
        raise
    return records


def log_flags(log_json: bool | None) -> list[str]:
    """The node flag for the testnet's log format (None: the node's default)."""
    if log_json is None:
        return []
    return ["--log-json"] if log_json else ["--log-text"]


def funded_wallet_hint(directory: Path) -> str:
    """How to get a funded wallet on this testnet: import one of its seed files."""
    keys = sorted((directory / "keys").glob("account-*.json"),
                  key=lambda p: int(p.stem.rpartition("-")[2] or 0))
    if not keys:
        return ""
    first = keys[1] if len(keys) > 1 else keys[0]  # account 0 also funds the nodes' keys
    return (f"funded accounts: {len(keys)} seed files in {directory / 'keys'}; to spend from "
            f"one:\n  pouwchain wallet import {first} {first.stem}\n"
            f"  pouwchain wallet balance --wallet {first.stem} --node {{api}}")


def _distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


# ---------------------------------------------------------------------------- status table


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def miner_figures(status: dict[str, Any], metrics: dict[str, float]) -> tuple[float | None,
                                                                            float | None]:
    """(tickets per second, useful share of the work) from status.mining or /metrics."""
    mining = status.get("mining") if isinstance(status.get("mining"), dict) else {}
    assert isinstance(mining, dict)
    if mining.get("enabled") is False:
        return None, None  # a validator: no rate to show

    def pick(*names: str) -> float | None:
        for name in names:
            v = _number(mining.get(name))
            if v is not None:
                return v
        for name in names:
            for key, v in metrics.items():
                if key.endswith(name):
                    return v
        return None

    rate = pick("tickets_per_s", "tickets_per_second")
    useful = pick("useful_macs")
    nonuseful = pick("nonuseful_macs", "non_useful_macs")
    share = None
    if useful is not None and nonuseful is not None and useful + nonuseful > 0:
        share = useful / (useful + nonuseful)
    elif rate is not None:
        share = metrics.get("pouwchain_useful_work_ratio")  # the metrics' own ratio
    return rate, share


def status_rows(records: list[NodeRecord]) -> list[dict[str, Any]]:
    """One row per node: what its API reports now, or why it could not be asked."""
    rows = []
    for rec in records:
        row: dict[str, Any] = {"node": f"node-{rec.index}", "role": "miner" if rec.mine
                               else "validator", "address": rec.address, "pid": rec.pid}
        if not rec.pid or not pid_alive(rec.pid):
            row["state"] = "stopped"
            rows.append(row)
            continue
        api = rec.api or str((read_node_json(Path(rec.datadir)) or {}).get("api", ""))
        try:
            status = request(api, "GET", "/api/v1/status", timeout=2.0)
        except (OSError, ValueError) as exc:
            row["state"] = f"unreachable ({type(exc).__name__})"
            rows.append(row)
            continue
        try:
            metrics = parse_metrics(request(api, "GET", "/metrics", timeout=2.0, raw=True))
        except (OSError, ValueError):
            metrics = {}
        rate, share = miner_figures(status, metrics)
        try:
            swarm = request(api, "GET", SWARM_ROUTE, timeout=2.0)
        except (OSError, ValueError, ApiError):
            swarm = None  # an older node without automatic registration
        row.update(state="syncing" if status.get("syncing") else "ok",
                   height=status.get("height"), finalized=status.get("finalized_height"),
                   peers=status.get("peers"),
                   tip=str(status.get("tip", ""))[:12], tickets_per_s=rate, useful_share=share,
                   swarm=swarm if isinstance(swarm, dict) else None)
        rows.append(row)
    return rows


def swarm_cell(swarm: object) -> str:
    """The registration phase in a few characters: ``calibrated``, ``failed 5/16`` (a failed
    calibration waiting for its retry window), ``registering``, ``off``, ..."""
    if not isinstance(swarm, dict):
        return "-"
    phase = str(swarm.get("phase", "-"))
    calibration = swarm.get("calibration")
    if phase == "calibration_failed" and isinstance(calibration, dict):
        return f"failed {calibration.get('correct')}/16"
    return phase


def format_table(rows: list[dict[str, Any]]) -> str:
    """The status table as fixed-width text."""
    final = any(r.get("finalized") is not None for r in rows)  # nodes with finality
    head = (f"{'node':<8} {'role':<9} {'address':<16} {'state':<10} {'height':>7} "
            + (f"{'final':>7} " if final else "")
            + f"{'peers':>5} {'tip':<12} {'tickets/s':>10} {'useful':>7} {'swarm':<12}")
    lines = [head, "-" * len(head)]
    for r in rows:
        finalized = f"{_cell(r.get('finalized')):>7} " if final else ""
        rate = r.get("tickets_per_s")
        share = r.get("useful_share")
        lines.append(
            f"{r['node']:<8} {r['role']:<9} {r['address']:<16} {r.get('state', ''):<10.10} "
            f"{_cell(r.get('height')):>7} {finalized}{_cell(r.get('peers')):>5} "
            f"{r.get('tip', '-'):<12} "
            f"{'-' if rate is None else f'{rate:.3g}':>10} "
            f"{'-' if share is None else f'{share:.0%}':>7} "
            f"{swarm_cell(r.get('swarm')):<12.12}")
    return "\n".join(lines)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def watch(
    directory: Path,
    records: list[NodeRecord],
    *,
    out: TextIO = sys.stdout,
    interval: float = 1.0,
    should_stop: Callable[[], bool] = lambda: False,
    footer: str = "",
) -> None:
    """Redraw the status table (and ``footer`` under it) every ``interval`` until Ctrl-C (or
    ``should_stop``)."""
    tty = out.isatty()
    first = True
    while not should_stop():
        table = format_table(status_rows(records))
        stamp = time.strftime("%H:%M:%S")
        if tty:
            out.write("\x1b[H\x1b[2J")
        out.write(f"pouwchain testnet {directory} at {stamp}  (Ctrl-C stops all nodes)\n"
                  f"{table}\n" + (f"\n{footer}\n" if footer and (tty or first) else ""))
        first = False
        if not tty:
            out.write("\n")
        out.flush()
        time.sleep(interval)


def run_foreground(directory: Path, nodes: int, *, miners: int | None, fresh: bool,
                   out: TextIO = sys.stdout, swarm_model: str = LLM,
                   log_json: bool | None = None) -> int:
    """`testnet up` without --detach: start, show the live table, stop cleanly on Ctrl-C."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM to the launcher stops the net like Ctrl-C

    previous = signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C must work even if our parent started us with SIGINT ignored (a `&` job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        records = up(directory, nodes, miners=miners, fresh=fresh, out=out,
                     swarm_model=swarm_model, log_json=log_json)
        save_state(directory.resolve(), records, detached=False)
        footer = funded_wallet_hint(directory.resolve()).replace("{api}", records[0].api)
        watch(directory.resolve(), records, out=out, footer=footer)
    except KeyboardInterrupt:
        print("\nstopping nodes…", file=out, flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        try:
            down(directory.resolve(), out=out)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)
    return 0
