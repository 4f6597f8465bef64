"""Chaos bench: real node processes partitioned, killed and soaked under load, with the
network's invariants checked after every step.

N mining swarm nodes (``pouwchain node --mine``, the arithmetic swarm models of
``pouwchain testnet up --swarm-model arith``: they register, calibrate and answer at once)
reach each other only through `tests.framework.chaos.LinkProxy`, a loopback TCP proxy per
link. Partitions are the proxy's: it closes the links between two groups and refuses new
ones, so both sides keep mining their own branch and must reorg onto one chain when the
links heal (SIGSTOP would freeze one side instead: no competing branches, no reorg). The
nodes are never told; their own dialers reconnect (the bench also asks them to dial, so a
heal does not wait out the dialer's 10 s redial pause).

While it runs a load thread sends transfers (one in flight per sender, to a random node)
and asks the swarm (``POST /v1/chat/completions``, a random node).

Phases (each bounded; any subset with ``--phases``):

* ``partition``: ``--cycles`` times: cut the nodes into two random groups, wait until both
  sides have mined, heal, check.
* ``kill``: rounds of SIGKILLs until ``--kills``: a random subset of nodes (``--min-victims``
  to all but one, killed and restarted concurrently) is killed at a
  random moment of one of four situations -- mining at the tip; syncing (killed again just
  after a restart that left it behind); reorging (just after its partition healed);
  settling (the node a swarm ask is running on) -- then each killed store is checked
  (supply, state root against its tip header), the node restarted and timed until it
  serves again; then the network is checked.
* ``soak``: ``--soak`` seconds of steady load, sampling every node's RSS, open fds and
  mempool size every ``--sample`` seconds; RSS growth is measured from the end of
  ``--warmup`` (goal <= 10%), and the slope of RSS over the soak's last half tells a leak
  (still rising) from a cache filling up (level). Every sample (time, node, RSS, fds,
  mempool, height) goes to ``--series`` (default ``soak-series.csv`` in ``--keep``).

Invariants after each step (heal, kill round, soak): every node serves and is connected
(a node not linked to every other within the step timeout counts in ``link_failures``);
all tips become identical; blocks at the same height carry the same state root on every
node; supply is conserved (genesis + subsidies - coins burned by swarm settlements equals
every balance, stake, escrow and held round in the store: `store_supply`, on each killed
node's store, on one node stopped cleanly after each heal, at the soak's end, and on every
node at the end; its stored state root must be its tip header's); no transaction the API
accepted is lost (each is confirmed on the canonical chain or in some running node's
mempool).

Usage: ``python bench/chaos.py [--nodes 5] [--cycles 100] [--kills 1000] [--soak 3600]
[--phases partition,kill,soak] [--json]``; figures in a table, then ``--json``'s object as
the last line. Goal: 0 divergences, 0 lost accepted transactions, 0 supply errors, 0 failed
restarts, RSS growth <= 10%.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* helpers

from consensus.genesis import GenesisConfig, dev_seed, load_genesis_config
from consensus.tx import Transaction, public_key, sign_transaction
from contracts import Transfer
from testnet.client import ApiError, request
from testnet.genesis import DEV_CHAIN_ID, write_genesis
from testnet.launcher import ARITH, swarm_settings
from testnet.process import NodeStartError
from tests.framework.chaos import (
    AcceptedTx,
    LinkProxy,
    Settlement,
    TxLedger,
    process_cpu_seconds,
    process_sample,
    store_supply,
)
from tests.framework.nodes import TestNetwork, TestNode
from tests.framework.util import wait_until

SENDERS_FROM = 8  # dev_seed(0..7) are the node identities; senders are dev_seed(8...)
RECIPIENTS = 16
TX_FEE = 10
STEP_TIMEOUT = 120.0  # a step's waits (connect, agree) give up after this: a finding
RSS_GOAL = 0.10
SERIES_COLUMNS = ("t_s", "unix_time", "node", "rss_bytes", "fds", "mempool", "height")
START_TIMEOUT = 180.0  # a node not serving this long after launch is a failed (re)start

NodeT = TypeVar("NodeT")


class Chaos:
    """The network under test, its links, its load and its figures."""

    def __init__(self, base: Path, *, nodes: int, senders: int, block_interval: float,
                 ask_interval: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.net = TestNetwork(base)
        seeds = [dev_seed(i) for i in range(SENDERS_FROM + senders)]
        write_genesis(self.net.genesis, seeds)  # node identities and senders funded
        self.genesis: GenesisConfig = load_genesis_config(self.net.genesis)
        self.senders = [Sender(i, dev_seed(SENDERS_FROM + i)) for i in range(senders)]
        self.recipients = [public_key(dev_seed(1000 + i)) for i in range(RECIPIENTS)]
        self.nodes: list[TestNode] = []
        for i in range(nodes):
            config = {**swarm_settings(i, ARITH), "target_outbound": 8, "dial_interval": 0.2,
                      "mining_block_interval": block_interval}
            self.nodes.append(self.net.add_node(mine=True, start=False, dev_key=i,
                                                config=config))
        self.proxy = LinkProxy([n.port for n in self.nodes])
        self.ledger = TxLedger()
        self.settlements: dict[bytes, list[Settlement]] = {}  # by block id (store_supply)
        self.supply_seen: dict[str, int] = {}  # most settlements / held / voided in a store
        self.ask_interval = ask_interval
        self.figures: Counter[str] = Counter()
        self.restart_s: list[float] = []
        self.restart_cpu_s: list[float] = []  # CPU seconds a (re)started node took to serve
        self.store_check_s: list[float] = []  # seconds to sum one killed store
        self.kill_round_s: list[float] = []  # seconds per kill round, check excluded
        self.kill_phases: Counter[str] = Counter()
        self.problems: list[str] = []
        self.down: set[int] = set()  # nodes the bench has killed and not yet restarted
        self.asking: int | None = None  # the node a swarm ask is running on
        self.lock = threading.Lock()
        self.stop_load = threading.Event()
        self.threads: list[threading.Thread] = []
        self.deadline = float("inf")  # monotonic: phases stop starting steps after it
        self.cut_short: list[str] = []  # phases the deadline ended early
        self.loads: list[float] = [os.getloadavg()[0]]  # 1-min load average at each check

    # ------------------------------------------------------------------------- nodes

    def launch(self, node: TestNode) -> None:
        node.launch(extra_args=["--peers", *self.proxy.seeds(node.index)])

    def start_all(self) -> None:
        for node in self.nodes:
            self.launch(node)
        for node in self.nodes:
            node.wait_started(START_TIMEOUT)
        self.connect()

    def restart(self, node: TestNode) -> float | None:
        """Start a killed node; seconds from launch until it serves (None: it did not start,
        a failed restart, tried once more before giving up)."""
        for attempt in range(2):
            started = time.monotonic()
            try:
                self.launch(node)
                node.wait_started(START_TIMEOUT)
                seconds = time.monotonic() - started
                cpu = process_cpu_seconds(node.proc.pid) if node.proc else None
                if cpu is not None:
                    with self.lock:
                        self.restart_cpu_s.append(cpu)
                return seconds
            except NodeStartError as exc:
                with self.lock:
                    self.figures["failed_restarts"] += 1
                    self.problems.append(f"restart {node} (attempt {attempt + 1}): {exc}\n"
                                         f"{node.log_tail(20)}")
                node.kill()
        raise RuntimeError(f"{node} does not start again")

    def kill(self, node: TestNode, phase: str) -> None:
        """SIGKILL ``node`` and check what the crash left in its store."""
        with self.lock:
            self.down.add(node.index)
        node.kill()
        with self.lock:
            self.figures["kills"] += 1
            self.kill_phases[phase] += 1
        self.check_store(node, f"after SIGKILL ({phase})")

    def check_store(self, node: TestNode, when: str) -> None:
        """Supply and state root of a stopped node's store."""
        started = time.monotonic()
        supply = store_supply(node.datadir, self.genesis, self.settlements)
        with self.lock:
            self.store_check_s.append(time.monotonic() - started)
            self.figures["supply_checks"] += 1
            for name in ("settlements", "held", "voided"):
                self.supply_seen[name] = max(self.supply_seen.get(name, 0),
                                             getattr(supply, name))
            if not supply.ok:
                self.figures["supply_errors"] += 1
                self.problems.append(f"{node} store {when}: {supply}")

    def stop_and_check(self, node: TestNode, when: str) -> None:
        """Stop ``node`` cleanly (SIGTERM), check its store, start it again."""
        with self.lock:
            self.down.add(node.index)
        code = node.stop()
        if code != 0:
            with self.lock:
                self.figures["unclean_stops"] += 1
                self.problems.append(f"{node} exited {code} on SIGTERM {when}")
        self.check_store(node, when)
        self.revive(node)

    def revive(self, node: TestNode) -> None:
        seconds = self.restart(node)
        with self.lock:
            if seconds is not None:
                self.restart_s.append(seconds)
            self.down.discard(node.index)

    def up(self) -> list[TestNode]:
        with self.lock:
            return [n for n in self.nodes if n.index not in self.down and n.running]

    def connect(self, nodes: Sequence[TestNode] | None = None) -> None:
        """Wait until every pair of ``nodes`` is connected, asking the nodes to dial their
        missing links now (their own dialer would, after its redial pause)."""
        group = list(self.nodes if nodes is None else nodes)
        asked: dict[tuple[int, int], float] = {}

        def meshed() -> bool:
            peers = {n.index: n.peer_ids() for n in group}
            missing = [(a, b) for i, a in enumerate(group) for b in group[i + 1:]
                       if b.node_id not in peers[a.index]]
            now = time.monotonic()
            for a, b in missing:
                if now - asked.get((a.index, b.index), -1e9) > 2.0:
                    asked[(a.index, b.index)] = now
                    try:
                        a.api("POST", "/api/v1/peers", timeout=10.0,
                              address=self.proxy.address(a.index, b.index))
                    except (ApiError, OSError):
                        pass  # a dial racing the node's own, or a refused duplicate
            return not missing

        wait_until(meshed, STEP_TIMEOUT, interval=0.1, message="every link up")

    # -------------------------------------------------------------------------- load

    def start_load(self) -> None:
        self.stop_load.clear()
        self.threads = [threading.Thread(target=self._transfers, daemon=True, name="txs"),
                        threading.Thread(target=self._asks, daemon=True, name="asks")]
        for thread in self.threads:
            thread.start()

    def end_load(self) -> None:
        self.stop_load.set()
        for thread in self.threads:
            thread.join(120)

    def _transfers(self) -> None:
        """One transfer in flight per sender, each to a random running node; the next once
        a node's chain has confirmed it, the same nonce again once the ledger lost it."""
        rng = random.Random(self.rng.random())
        while not self.stop_load.is_set():
            nodes = self.up()
            if not nodes:
                self.stop_load.wait(0.1)
                continue
            for sender in self.senders:
                node = rng.choice(nodes)
                try:
                    sender.step(node, self, rng)
                except (ApiError, OSError):
                    pass  # the node died under us, or refused: tried again next pass
            self.stop_load.wait(0.2)

    def _asks(self) -> None:
        rng = random.Random(self.rng.random())
        while not self.stop_load.wait(self.ask_interval):
            nodes = self.up()
            if not nodes:
                continue
            node = rng.choice(nodes)
            a, b = rng.randrange(100), rng.randrange(100)
            with self.lock:
                self.asking = node.index
                self.figures["asks"] += 1
            try:
                request(node.url, "POST", "/v1/chat/completions", timeout=60.0, body={
                    "model": "pouwchain-swarm",
                    "messages": [{"role": "user", "content": f"What is {a}+{b}?"}]})
                outcome = "asks_answered"
            except ApiError as exc:
                outcome = f"asks_{exc.status}"  # 502/504: no answerer left (docs/api.md)
            except OSError:
                outcome = "asks_no_reply"  # killed mid-round, or no answer within 60 s
            with self.lock:
                self.asking = None
                self.figures[outcome] += 1

    # ------------------------------------------------------------------------ checks

    def check(self, step: str, supply_of: TestNode | None = None) -> None:
        """The invariants, once every node serves again (see the module docstring);
        ``supply_of``: the node stopped to sum its store (kill rounds sum the killed ones)."""
        with self.lock:
            self.figures["checks"] += 1
            self.loads.append(os.getloadavg()[0])
            f = self.figures
            print(f"[{time.strftime('%H:%M:%S')}] {step}: cycles {f['cycles']} kills "
                  f"{f['kills']} divergences {f['divergences']} supply errors "
                  f"{f['supply_errors']} lost {len(self.ledger.lost)} failed restarts "
                  f"{f['failed_restarts']}", file=sys.stderr, flush=True)
        for node in self.nodes:
            if not node.running:
                code = node.proc.poll() if node.proc else None
                with self.lock:
                    self.figures["crashes"] += 1
                    self.problems.append(f"{step}: {node} died by itself (exit {code})\n"
                                         f"{node.log_tail(30)}")
                self.revive(node)
        try:
            self.connect()
        except AssertionError as exc:  # a node that cannot rejoin: a finding; the run goes on
            with self.lock:
                self.figures["link_failures"] += 1
                self.problems.append(f"{step}: {exc}")
        try:
            self.net.sync_blocks(self.nodes, timeout=STEP_TIMEOUT)
        except AssertionError as exc:
            self._divergence(f"{step}: {exc}; tips {[n.status()['tip'][:12] for n in self.nodes]}")
            return
        # the blocks at one height carry the same state root everywhere: at the agreed tip's
        # height (a block mined on it a moment later may differ until the next one settles)
        height = min(n.height() for n in self.nodes)

        def roots() -> set[str]:
            return {n.block(height)["header"]["state_root"] for n in self.nodes}

        try:
            wait_until(lambda: len(roots()) == 1, STEP_TIMEOUT, interval=0.1,
                       message=f"one state root at height {height}")
        except AssertionError:
            self._divergence(f"{step}: state roots at height {height}: {sorted(roots())}")
        reference = self.nodes[0]
        if supply_of is not None:
            self.stop_and_check(supply_of, f"at {step}")
            self.connect()
        lost = self.ledger.check(self.nodes, settle=lambda: self.net.sync_blocks(
            self.nodes, timeout=STEP_TIMEOUT))
        if lost:
            with self.lock:
                self.figures[f"lost_txs_{step.split()[0]}"] += len(lost)
                self.problems.append(
                    f"{step}: {len(lost)} accepted transactions lost, e.g. {lost[0]}; its "
                    f"sender's nonce on chain now "
                    f"{reference.account(self.senders[lost[0].sender].address)['nonce']}")

    def _divergence(self, what: str) -> None:
        with self.lock:
            self.figures["divergences"] += 1
            self.problems.append(what)

    # ------------------------------------------------------------------------ phases

    def both_sides_mine(self, groups: Sequence[Sequence[TestNode]]) -> None:
        """Wait until every group's best height is past where it stood at the cut."""
        start = [max(n.height() for n in g) for g in groups]
        wait_until(lambda: all(max(n.height() for n in g) > h
                               for g, h in zip(groups, start, strict=True)),
                   STEP_TIMEOUT, interval=0.1, message="both sides of the cut to mine")

    def partition(self, groups: Sequence[Sequence[TestNode]]) -> None:
        self.proxy.cut([[n.index for n in g] for g in groups])
        self.both_sides_mine(groups)
        self.proxy.heal()
        self.connect()

    def split(self, rng: random.Random) -> list[list[TestNode]]:
        order = list(self.nodes)
        rng.shuffle(order)
        cut = rng.randrange(1, len(order))
        return [order[:cut], order[cut:]]

    def partition_phase(self, cycles: int) -> None:
        rng = random.Random(self.rng.random())
        for cycle in range(cycles):
            if self.out_of_time("partition"):
                return
            self.partition(self.split(rng))
            with self.lock:
                self.figures["cycles"] += 1
            self.check(f"partition cycle {cycle}", supply_of=self.nodes[cycle % len(self.nodes)])

    def kill_phase(self, kills: int, window: float, check_every: int = 1,
                   min_victims: int = 1) -> None:
        """Kill rounds until ``kills``, each of ``min_victims`` to all but one node (killed,
        checked and restarted concurrently); the whole network is checked after every
        ``check_every``-th round and after the last (each killed store after its kill)."""
        rng = random.Random(self.rng.random())
        scenarios = ["mining", "syncing", "reorging", "settling"]
        round_no = 0
        checked = True  # the network was checked after the last round
        while self.figures["kills"] < kills:
            if self.out_of_time("kill"):
                return  # the run's end check covers the rounds since the last check
            scenario = scenarios[round_no % len(scenarios)]
            victims = pick_victims(rng, self.nodes, min_victims)
            if scenario == "settling":
                with self.lock:
                    asking = self.asking
                if asking is not None:  # the node a round runs on, and others
                    victims = [self.nodes[asking], *[v for v in victims if v.index != asking]]
            threads = [threading.Thread(target=self._kill_safely,
                                        args=(v, scenario, rng.random() * window, rng))
                       for v in victims]
            started = time.monotonic()
            if scenario == "reorging":
                self.split_off(victims)
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            self.kill_round_s.append(time.monotonic() - started)
            round_no += 1
            checked = round_no % check_every == 0 or self.figures["kills"] >= kills
            if checked:
                self.check(f"kill round {round_no} ({scenario})")
        if not checked:
            self.check(f"kill round {round_no} (last)")

    def split_off(self, victims: Sequence[TestNode]) -> None:
        """Cut ``victims`` off until both sides have mined, heal, and make each victim dial
        the rest now (its reorg starts at once: the moment to kill it)."""
        rest = [n for n in self.nodes if n not in victims]
        self.proxy.cut([[v.index for v in victims], [n.index for n in rest]])
        self.both_sides_mine([victims, rest])
        self.proxy.heal()
        for v in victims:
            for other in rest[:1]:
                try:
                    v.api("POST", "/api/v1/peers", timeout=10.0,
                          address=self.proxy.address(v.index, other.index))
                except (ApiError, OSError):
                    pass

    def out_of_time(self, phase: str) -> bool:
        if time.monotonic() < self.deadline:
            return False
        self.cut_short.append(phase)
        return True

    def _kill_safely(self, node: TestNode, scenario: str, delay: float,
                     rng: random.Random) -> None:
        try:
            self._kill_one(node, scenario, delay, rng)
        except Exception as exc:  # recorded; the node is brought back for the check
            with self.lock:
                self.problems.append(f"{node} {scenario} kill: {exc!r}")
                self.figures["kill_errors"] += 1
            if not node.running:
                self.revive(node)

    def _kill_one(self, node: TestNode, scenario: str, delay: float,
                  rng: random.Random) -> None:
        time.sleep(delay if scenario != "reorging" else delay / 4)
        phase = scenario
        if scenario == "syncing":
            # killed at the tip, restarted behind the others, killed again while it syncs
            self.kill(node, "mining")
            others = [n for n in self.nodes if n is not node]
            # another victim may be down or restarting: its height is unknown, not an error
            target = wait_until(lambda: max(n.height() for n in others if n.running) + 3,
                                STEP_TIMEOUT, interval=0.1, message="a height to sync to")
            wait_until(lambda: any(n.running and n.height() >= target for n in others),
                       STEP_TIMEOUT, interval=0.1, message="the others to move on")
            self.revive(node)
            time.sleep(rng.random() * 0.3)
            try:
                status = node.status()
                phase = "syncing" if status["syncing"] or status["height"] < target else \
                    "synced"
            except (ApiError, OSError):
                phase = "syncing"
        self.kill(node, phase)
        self.revive(node)

    def soak_phase(self, seconds: float, warmup: float, every: float,
                   series: Path | None = None) -> dict[str, Any]:
        """Steady load for ``seconds``; each sample row is also appended (and flushed) to
        the CSV ``series``, so a cut-short run keeps what it measured."""
        samples: list[dict[str, Any]] = []
        out = series.open("w", newline="") if series else None
        writer = csv.writer(out) if out else None
        if writer:
            writer.writerow(SERIES_COLUMNS)
        started = time.monotonic()
        next_check = started + max(every * 10, 60.0)
        while (elapsed := time.monotonic() - started) < seconds:
            if self.out_of_time("soak"):
                break
            row: dict[str, Any] = {"t": round(elapsed, 1), "nodes": []}
            for node in self.nodes:
                sample = process_sample(node.proc.pid) if node.proc else None
                try:
                    status = node.status()
                    mempool, height = int(status["mempool"]), int(status["height"])
                except (ApiError, OSError):
                    mempool, height = -1, -1
                row["nodes"].append({"rss": sample[0] if sample else None,
                                     "fds": sample[1] if sample else None,
                                     "mempool": mempool})
                if writer and out:
                    writer.writerow([row["t"], round(time.time(), 1), node.index,
                                     sample[0] if sample else "", sample[1] if sample else "",
                                     mempool, height])
            if out:
                out.flush()
            samples.append(row)
            if time.monotonic() >= next_check:
                self.check(f"soak at {elapsed:.0f} s")
                next_check = time.monotonic() + max(every * 10, 60.0)
            time.sleep(max(0.0, every - (time.monotonic() - started - elapsed)))
        if out:
            out.close()
        self.check("soak end", supply_of=self.nodes[0])
        return soak_figures(samples, warmup)


def pick_victims(rng: random.Random, nodes: Sequence[NodeT], least: int = 1) -> list[NodeT]:
    """A kill round's victims: ``least`` to all but one of ``nodes`` (one node always stays
    up, so the network keeps its chain while the others restart)."""
    if not 1 <= least <= len(nodes) - 1:
        raise ValueError(f"victims per round: 1 to {len(nodes) - 1}, not {least}")
    return rng.sample(list(nodes), rng.randint(least, len(nodes) - 1))


class Sender:
    """A funded account sending transfers, one in flight at a time.

    Each nonce's transaction is signed once and resent unchanged until a node accepts it
    (a node on the other side of a cut, or one that has not seen the previous transfer, may
    refuse it for a while), so the bench never makes two transactions with one nonce: the
    only way an accepted transfer can leave the chain's future is to be lost. A transfer
    the ledger found lost is replaced by a new one with its nonce."""

    def __init__(self, index: int, seed: bytes) -> None:
        self.index = index
        self.seed = seed
        self.address = public_key(seed).hex()
        self.nonce = 0
        self.unsent: Transaction | None = None  # signed for ``nonce``, not yet accepted
        self.in_flight: AcceptedTx | None = None

    def step(self, node: TestNode, chaos: Chaos, rng: random.Random) -> None:
        flight = self.in_flight
        if flight is not None:
            if chaos.ledger.is_lost(flight.tx_id):
                self.in_flight = None  # its nonce again, in a new transaction
            elif int(node.account(self.address)["nonce"]) > flight.nonce:
                self.nonce, self.in_flight = flight.nonce + 1, None
            else:
                return
        if self.unsent is None:
            self.unsent = sign_transaction(
                self.seed, chain_id=DEV_CHAIN_ID, nonce=self.nonce, fee=TX_FEE,
                payload=Transfer(to=rng.choice(chaos.recipients), amount=rng.randint(1, 1000)))
        tx_id = node.send_tx(self.unsent)  # ApiError/OSError: the same bytes next time
        self.unsent = None
        self.in_flight = AcceptedTx(tx_id=tx_id, sender=self.index, nonce=self.nonce,
                                    node=node.index, accepted_at=time.time())
        chaos.ledger.record(self.in_flight)


def soak_figures(samples: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    """RSS and fd growth per node from the first sample after ``warmup`` to the mean of the
    last three; the least-squares slope of RSS over the soak's last half (MB and % of its
    mean per hour: a leak keeps a positive slope, a filling cache flattens); the largest
    mempool seen."""
    after = [s for s in samples if s["t"] >= warmup] or samples[-1:]
    half = samples[-1]["t"] / 2 if samples else 0.0
    last_half = [s for s in samples if s["t"] >= half]
    nodes = len(samples[0]["nodes"]) if samples else 0
    growth, fd_growth, rss_mb = [], [], []
    slope_mb_h: list[float | None] = []
    slope_pct_h: list[float | None] = []
    for i in range(nodes):
        rss = [s["nodes"][i]["rss"] for s in after if s["nodes"][i]["rss"]]
        fds = [s["nodes"][i]["fds"] for s in after if s["nodes"][i]["fds"]]
        if len(rss) >= 2:
            end = statistics.mean(rss[-3:])
            growth.append((end - rss[0]) / rss[0])
            rss_mb.append(round(end / 2**20, 1))
        if len(fds) >= 2:
            fd_growth.append(fds[-1] - fds[0])
        points = [(s["t"], s["nodes"][i]["rss"]) for s in last_half if s["nodes"][i]["rss"]]
        if len(points) >= 2 and len({t for t, _ in points}) >= 2:
            per_s = statistics.linear_regression([t for t, _ in points],
                                                 [r for _, r in points]).slope
            mean = statistics.mean(r for _, r in points)
            slope_mb_h.append(round(per_s * 3600 / 2**20, 2))
            slope_pct_h.append(round(per_s * 3600 / mean * 100, 2))
        else:
            slope_mb_h.append(None)
            slope_pct_h.append(None)
    mempools = [n["mempool"] for s in samples for n in s["nodes"]]
    return {"samples": len(samples), "after_warmup": len(after),
            "rss_growth_max": round(max(growth), 4) if growth else None,
            "rss_growth": [round(g, 4) for g in growth], "rss_end_mb": rss_mb,
            "rss_slope_last_half_from_s": round(half, 1),
            "rss_slope_last_half_mb_per_h": slope_mb_h,
            "rss_slope_last_half_pct_per_h": slope_pct_h,
            "fd_growth": fd_growth, "mempool_max": max(mempools) if mempools else None}


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    phases = [p for p in args.phases.split(",") if p]
    chaos = Chaos(base, nodes=args.nodes, senders=args.senders,
                  block_interval=args.block_interval, ask_interval=args.ask_interval,
                  seed=args.seed)
    started = time.monotonic()
    chaos.deadline = started + args.budget
    timings: dict[str, float] = {}
    soak: dict[str, Any] = {}
    stopped = False
    try:
        chaos.start_all()
        chaos.start_load()
        steps: dict[str, Callable[[], Any]] = {
            "partition": lambda: chaos.partition_phase(args.cycles),
            "kill": lambda: chaos.kill_phase(args.kills, args.kill_window, args.check_every,
                                             args.min_victims),
            "soak": lambda: soak.update(chaos.soak_phase(args.soak, args.warmup, args.sample,
                                                         args.series)),
        }
        for phase in phases:
            t = time.monotonic()
            steps[phase]()
            timings[phase] = round(time.monotonic() - t, 1)
        chaos.end_load()
        chaos.check("end")
        stopped = True
    finally:
        chaos.stop_load.set()
        chaos.net.teardown()
        chaos.proxy.close()
    if stopped:  # every store once more, each node stopped cleanly
        for node in chaos.nodes:
            chaos.check_store(node, "at the end")
    f = chaos.figures
    lost = {k.removeprefix("lost_txs_"): v for k, v in f.items() if k.startswith("lost_txs_")}
    result: dict[str, Any] = {
        "nodes": args.nodes, "phases": phases, "seconds": timings,
        "cut_short_by_budget": chaos.cut_short,
        "total_s": round(time.monotonic() - started, 1),
        "cycles": f["cycles"], "kills": f["kills"], "kills_by_phase": dict(chaos.kill_phases),
        "checks": f["checks"], "divergences": f["divergences"],
        "lost_accepted_txs": sum(lost.values()), "lost_by_phase": lost,
        "txs_accepted": chaos.ledger.accepted, "txs_buried": chaos.ledger.buried,
        "supply_errors": f["supply_errors"], "supply_checks": f["supply_checks"],
        "settlements": chaos.supply_seen, "unclean_stops": f["unclean_stops"],
        "failed_restarts": f["failed_restarts"], "link_failures": f["link_failures"],
        "crashes": f["crashes"],
        "restart_to_serving_median_s": round(statistics.median(chaos.restart_s), 3)
        if chaos.restart_s else None,
        "restart_to_serving_p95_s": round(statistics.quantiles(chaos.restart_s, n=20)[18], 3)
        if len(chaos.restart_s) >= 2 else None,
        "restart_cpu_median_s": round(statistics.median(chaos.restart_cpu_s), 3)
        if chaos.restart_cpu_s else None,
        "kills_per_minute": round(f["kills"] / timings["kill"] * 60, 2)
        if timings.get("kill") else None,
        "kill_rounds": len(chaos.kill_round_s),
        "kill_round_median_s": round(statistics.median(chaos.kill_round_s), 3)
        if chaos.kill_round_s else None,
        "store_check_median_s": round(statistics.median(chaos.store_check_s), 3)
        if chaos.store_check_s else None,
        "asks": {k.removeprefix("asks_"): v for k, v in f.items() if k.startswith("asks")},
        "proxy": {"refused": chaos.proxy.refused, "cut": chaos.proxy.cut_connections},
        "soak": soak, "problems": chaos.problems[:20],
        "load": os.getloadavg()[0],
        "load_at_checks": {"min": round(min(chaos.loads), 1),
                           "median": round(statistics.median(chaos.loads), 1),
                           "max": round(max(chaos.loads), 1)},
        "lost_txs": [dataclasses.asdict(tx) for tx in chaos.ledger.lost[:50]],
    }
    return result


def print_table(r: dict[str, Any]) -> None:
    soak = r["soak"] or {}
    rows = [
        ("nodes", r["nodes"]), ("phases (s)", r["seconds"]), ("total s", r["total_s"]),
        ("cut short by --budget", r["cut_short_by_budget"] or "no"),
        ("partition/heal cycles", r["cycles"]), ("SIGKILLs", r["kills"]),
        ("  by phase", r["kills_by_phase"]), ("invariant checks", r["checks"]),
        ("divergences", r["divergences"]),
        ("lost accepted txs", f"{r['lost_accepted_txs']} {r['lost_by_phase'] or ''}"),
        ("txs accepted / buried", f"{r['txs_accepted']} / {r['txs_buried']}"),
        ("supply errors", f"{r['supply_errors']} (stores summed {r['supply_checks']})"),
        ("swarm settlements seen", r["settlements"]),
        ("failed restarts", r["failed_restarts"]), ("crashes", r["crashes"]),
        ("links not back at a check", r["link_failures"]),
        ("restart -> serving median s", r["restart_to_serving_median_s"]),
        ("restart -> serving p95 s", r["restart_to_serving_p95_s"]),
        ("restart -> serving CPU median s", r["restart_cpu_median_s"]),
        ("kills per minute (kill phase)", r["kills_per_minute"]),
        ("kill rounds, median s", f"{r['kill_rounds']}, {r['kill_round_median_s']}"),
        ("killed store summed, median s", r["store_check_median_s"]),
        ("swarm asks", r["asks"]), ("proxy refused / cut", tuple(r["proxy"].values())),
        ("soak RSS growth max", f"{soak.get('rss_growth_max')} (goal <= {RSS_GOAL})"),
        ("soak RSS end MB", soak.get("rss_end_mb")),
        ("soak RSS slope, last half MB/h", soak.get("rss_slope_last_half_mb_per_h")),
        ("soak RSS slope, last half %/h", soak.get("rss_slope_last_half_pct_per_h")),
        ("soak fd growth", soak.get("fd_growth")),
        ("soak mempool max", soak.get("mempool_max")), ("load (1 min) at the end", r["load"]),
        ("load at checks min/med/max", tuple(r["load_at_checks"].values())),
    ]
    for name, value in rows:
        print(f"{name:<30}{value}")
    for problem in r["problems"]:
        print(f"PROBLEM: {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=5, help="4 to 6")
    parser.add_argument("--phases", default="partition,kill,soak")
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--check-every", type=int, default=1, metavar="N",
                        help="kill rounds between two checks of the whole network (each "
                             "killed store is checked after its kill regardless)")
    parser.add_argument("--min-victims", type=int, default=1, metavar="N",
                        help="nodes killed per kill round: N to all but one (default 1); "
                             "more victims restart side by side, so more kills per minute")
    parser.add_argument("--kill-window", type=float, default=2.0,
                        help="a victim dies at a random moment of this many seconds")
    parser.add_argument("--soak", type=float, default=3600.0, help="soak seconds")
    parser.add_argument("--warmup", type=float, default=None,
                        help="soak seconds before RSS counts (default: a fifth)")
    parser.add_argument("--sample", type=float, default=5.0, help="soak sampling seconds")
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--block-interval", type=float, default=1.0)
    parser.add_argument("--ask-interval", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=float("inf"),
                        help="seconds: no phase starts a new step after this (the figures "
                             "say which phases it cut short)")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="run in DIR and keep the node logs (default: a temporary dir)")
    parser.add_argument("--series", type=Path, default=None, metavar="FILE",
                        help="CSV of every soak sample (default: soak-series.csv in --keep; "
                             "none without --keep)")
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    if not 2 <= args.nodes <= 8:
        parser.error("--nodes: 2 to 8 (the node identities are dev accounts 0-7)")
    if not 1 <= args.min_victims <= args.nodes - 1:
        parser.error(f"--min-victims: 1 to {args.nodes - 1} (one node always stays up)")
    if args.warmup is None:
        args.warmup = args.soak / 5
    with tempfile.TemporaryDirectory(prefix="pouw-chaos-") as tmp:
        base = Path(args.keep or tmp)
        base.mkdir(parents=True, exist_ok=True)
        if args.series is None and args.keep:
            args.series = base / "soak-series.csv"
        result = run(args, base)
    print_table(result)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
