"""Chaos machinery for real node processes: links that can be cut, and the invariants a
network must keep through cuts and crashes (`bench/chaos.py` and its CI slice drive these).

* `LinkProxy`: a loopback TCP proxy per directed link between node processes. Each node's
  seeds are the proxy ports of its links, so a node only ever reaches another through its
  link. `cut` closes every connection crossing the given groups and refuses new ones (both
  sides keep running and mining: a real partition, which SIGSTOP is not); `heal` lets them
  through again. The nodes are never told: they see connections drop and dials fail, as in a
  real network split.
* Supply: `store_supply` counts every value record of a stopped node's LevelDB (balances,
  bonded and unbonding stake, escrows, pending job escrows, held swarm rounds) against
  genesis + subsidies - burned (what its chain's swarm settlements destroyed, by each
  settlement's fate: `Settlement`), and checks the stored state root against the tip
  header's. A store, not the API: held rounds and settlement fates are state the API does
  not serve, and a killed node's store is exactly what a crash must leave consistent.
* `TxLedger`: every transaction the API accepted, until it is buried or found lost (neither
  on the canonical chain nor in any running node's mempool).
* `process_sample`: RSS and open file descriptors of a process, from /proc.
* `process_cpu_seconds`: CPU time (user + system) a process has used, from /proc: what a
  start costs whatever the load (wall time to serve depends on the machine's load).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from consensus.genesis import GenesisConfig
from consensus.tx import Transaction
from contracts.escrow import ESCROW_PREFIX, SwarmEscrow
from contracts.jobs import JOB_PREFIX, STATUS_PENDING, JobRecord
from contracts.swarm import (
    CHALLENGER_SHARE_BPS,
    HELD_PREFIX,
    ROUND_PREFIX,
    HeldRound,
    SettledRound,
    SettleSwarmRoot,
    SettleSwarmRound,
)
from core.records import Account, StakeRecord
from core.state import ACCOUNT_PREFIX, STAKE_PREFIX, State
from node.chain.chainstore import STATE, ChainStore
from swarm.settlement import BPS
from testnet.client import ApiError
from testnet.process import HOST
from tests.framework.nodes import TestNode

# ------------------------------------------------------------------------------ links

PIPE_CHUNK = 1 << 16


class LinkProxy:
    """One listening port on 127.0.0.1 per directed link (src -> dst) between node ports,
    forwarding to dst; an asyncio loop on its own thread. `address(src, dst)` is what node
    ``src`` dials to reach ``dst``."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
        self.blocked: set[frozenset[int]] = set()  # unordered node pairs that are cut
        self.refused = 0  # connections refused while cut
        self.cut_connections = 0  # live connections closed by `cut`
        self._links: dict[tuple[int, int], int] = {}
        self._open: dict[frozenset[int], set[asyncio.StreamWriter]] = {}
        self._servers: list[asyncio.Server] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="link-proxy")
        self._thread.start()
        self._call(self._listen_all())

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _listen_all(self) -> None:
        n = len(self.ports)
        for src in range(n):
            for dst in range(n):
                if src != dst:
                    server = await asyncio.start_server(self._handler(src, dst), HOST, 0)
                    self._servers.append(server)
                    self._links[(src, dst)] = int(server.sockets[0].getsockname()[1])

    def _handler(self, src: int, dst: int
                 ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._pipe(src, dst, reader, writer)
        return handle

    def address(self, src: int, dst: int) -> str:
        return f"{HOST}:{self._links[(src, dst)]}"

    def seeds(self, src: int) -> list[str]:
        """Every link of node ``src``: its seed addresses."""
        return [self.address(src, dst) for dst in range(len(self.ports)) if dst != src]

    async def _pipe(self, src: int, dst: int, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        pair = frozenset((src, dst))
        if pair in self.blocked:
            self.refused += 1
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.ports[dst])
        except OSError:
            writer.close()
            return
        live = self._open.setdefault(pair, set())
        live.update((writer, up_writer))

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(PIPE_CHUNK):
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                w.close()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            live.discard(writer)
            live.discard(up_writer)
            for w in (writer, up_writer):
                w.close()

    async def _cut(self, groups: Sequence[Sequence[int]]) -> None:
        side = {node: g for g, group in enumerate(groups) for node in group}
        self.blocked = {frozenset((a, b)) for a in side for b in side if side[a] != side[b]}
        for pair in self.blocked:
            for writer in list(self._open.get(pair, ())):
                self.cut_connections += 1
                transport = writer.transport
                transport.abort()  # both directions at once, no FIN handshake to wait for

    async def _heal(self) -> None:
        self.blocked = set()

    def cut(self, groups: Sequence[Sequence[int]]) -> None:
        """Partition: no link between nodes of different groups (nodes not listed keep
        every link)."""
        self._call(self._cut(groups))

    def heal(self) -> None:
        self._call(self._heal())

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for live in self._open.values():
                for writer in list(live):
                    writer.transport.abort()

        with contextlib.suppress(Exception):
            self._call(stop(), timeout=10.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# ----------------------------------------------------------------------------- supply

@dataclasses.dataclass(frozen=True)
class Settlement:
    """What a swarm settlement transaction moves (`contracts.swarm`): it collects the fee
    and the slashes and takes the settler's bond (= fee + slashes) into a held round; when
    the inclusion window closes the round pays out (payouts, refund) and returns the bond,
    the rest burned; a proven challenge voids it instead: fee and slashes go back, half
    the bond to the challenger, the other half burned."""

    round_id: bytes
    height: int
    collected: int  # fee + slashes
    paid_out: int  # payouts + refund

    @property
    def bond(self) -> int:
        return self.collected

    def burned(self, *, stuck: bool, held: bool) -> int:
        """Burned by this settlement given its fate: ``stuck`` (the state's settled-round
        record is this settlement's), still ``held`` (its money sits in the held round)."""
        if stuck:
            return 0 if held else self.collected - self.paid_out
        return self.bond - self.bond * CHALLENGER_SHARE_BPS // BPS  # voided


def settlements_in(transactions: Iterable[Transaction], height: int) -> list[Settlement]:
    out = []
    for tx in transactions:
        payload = tx.payload
        if isinstance(payload, (SettleSwarmRound, SettleSwarmRoot)):
            outcome = payload.outcome
            out.append(Settlement(
                round_id=payload.request.round_id(), height=height,
                collected=payload.request.fee + sum(x.amount for x in outcome.slashes),
                paid_out=sum(x.amount for x in outcome.payouts) + outcome.refund))
    return out


def genesis_supply(genesis: GenesisConfig) -> int:
    return sum(genesis.balances.values()) + sum(genesis.stakes.values())


@dataclasses.dataclass(frozen=True)
class Supply:
    """Coins counted in a store's state (``actual``) against what its chain's history says
    (``expected``: genesis + one subsidy per block - burned), at its tip."""

    height: int
    tip: str
    expected: int
    actual: int
    settlements: int  # swarm settlements on the chain
    held: int  # of which still held
    voided: int  # of which voided by a challenge
    root_matches: bool  # the stored state's root is the tip header's

    @property
    def ok(self) -> bool:
        return self.expected == self.actual and self.root_matches


def store_supply(datadir: Path, genesis: GenesisConfig,
                 cache: dict[bytes, list[Settlement]] | None = None) -> Supply:
    """The supply in a stopped node's store: every value record counted (balances, bonded
    and unbonding stake, escrows, pending job escrows, held swarm rounds' fee, slashes and
    bond) against genesis + subsidies - burned along its canonical chain; and whether the
    stored state's root is its tip header's (what a crash must never break). Opening the
    store finishes a reorg a crash interrupted, as the node does when it starts.
    ``cache``: each block's settlements by block id, across calls (ids never change)."""
    known = {} if cache is None else cache
    store = ChainStore.open(datadir / "chain", genesis=genesis)
    try:
        db = store.db
        actual = 0
        for _key, raw in db.iterate_prefix(STATE + ACCOUNT_PREFIX):
            actual += Account.decode(raw).balance
        for _key, raw in db.iterate_prefix(STATE + STAKE_PREFIX):
            stake = StakeRecord.decode(raw)
            actual += stake.bonded + sum(u.amount for u in stake.unbonding)
        for _key, raw in db.iterate_prefix(STATE + ESCROW_PREFIX):
            escrow = SwarmEscrow.decode(raw)
            actual += escrow.locked + escrow.releasing
        for _key, raw in db.iterate_prefix(STATE + JOB_PREFIX):
            job = JobRecord.decode(raw)
            actual += job.escrow if job.status == STATUS_PENDING else 0
        held_rounds = set()
        for key, raw in db.iterate_prefix(STATE + HELD_PREFIX):
            held = HeldRound.decode(raw)
            held_rounds.add(key[len(STATE + HELD_PREFIX):])
            actual += (held.request.fee + sum(x.amount for x in held.outcome.slashes)
                       + held.bond)
        state = State(store.state_view())
        burned = held_count = voided = count = 0
        for block_id in store.canonical_ids():
            if block_id not in known:
                block = store.get_block(block_id)
                assert block is not None, f"canonical block {block_id.hex()} missing"
                known[block_id] = settlements_in(block.transactions, block.header.height)
            for settlement in known[block_id]:
                record = state.record(ROUND_PREFIX + settlement.round_id, SettledRound)
                stuck = record is not None and record.height == settlement.height
                held_now = stuck and settlement.round_id in held_rounds
                burned += settlement.burned(stuck=stuck, held=held_now)
                count += 1
                held_count += held_now
                voided += not stuck
        expected = (genesis_supply(genesis) + store.height * genesis.params.block_subsidy
                    - burned)
        return Supply(height=store.height, tip=store.tip_id.hex(), expected=expected,
                      actual=actual, settlements=count, held=held_count, voided=voided,
                      root_matches=state.root() == store.tip_header.state_root)
    finally:
        store.close()


# ------------------------------------------------------------------------- transactions

@dataclasses.dataclass
class AcceptedTx:
    tx_id: str
    sender: int
    nonce: int
    node: int  # the node whose API accepted it
    accepted_at: float = 0.0  # wall clock (time.time()) of the answer: to find it in logs


class TxLedger:
    """Transactions the API accepted, watched until buried (``bury`` confirmations) or lost.

    Thread-safe: the load thread records, the checker resolves."""

    def __init__(self, bury: int = 6) -> None:
        self.bury = bury
        self.accepted = 0
        self.buried = 0
        self.lost: list[AcceptedTx] = []
        self.lost_ids: set[str] = set()
        self.watching: dict[str, AcceptedTx] = {}
        self.lock = threading.Lock()

    def record(self, tx: AcceptedTx) -> None:
        with self.lock:
            self.accepted += 1
            self.watching[tx.tx_id] = tx

    def check(self, nodes: Sequence[TestNode], settle: Callable[[], object] = lambda: None
              ) -> list[AcceptedTx]:
        """Resolve every watched transaction against running ``nodes`` (all up): in a
        mempool (pending), confirmed (buried when deep enough), or neither (lost: returned,
        and no longer watched).

        Blocks keep coming while this reads (a transaction can leave one node's mempool for
        a block that another node has not received yet), so a transaction is lost only if
        no node has it, pending or confirmed, in two rounds of asking every node with the
        network settled (``settle``, e.g. waiting for equal tips) in between."""
        pools: set[str] = set()
        for node in nodes:
            pools.update(node.mempool())
        with self.lock:
            watching = list(self.watching.values())
        suspects = []
        for tx in watching:
            if tx.tx_id in pools:
                continue
            found = _find_tx(nodes[0], tx.tx_id)
            if found is None:
                suspects.append(tx)
            elif found["status"] == "confirmed" and int(found["confirmations"]) >= self.bury:
                with self.lock:
                    self.buried += 1
                    self.watching.pop(tx.tx_id, None)
        for _ in range(2):
            if not suspects:
                break
            settle()
            suspects = [tx for tx in suspects
                        if all(_find_tx(node, tx.tx_id) is None for node in nodes)]
        with self.lock:
            for tx in suspects:
                self.watching.pop(tx.tx_id, None)
            self.lost += suspects
            self.lost_ids.update(tx.tx_id for tx in suspects)
        return suspects

    def is_lost(self, tx_id: str) -> bool:
        with self.lock:
            return tx_id in self.lost_ids


def _find_tx(node: TestNode, tx_id: str) -> dict[str, Any] | None:
    """``GET /txs/{id}`` (pending in its mempool, or on its canonical chain); None: 404."""
    try:
        found: dict[str, Any] = node.api("GET", f"/api/v1/txs/{tx_id}", auth=False)
    except ApiError as exc:
        if exc.status != 404:
            raise
        return None
    return found


# ---------------------------------------------------------------------------- processes

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def process_sample(pid: int) -> tuple[int, int] | None:
    """(RSS bytes, open file descriptors) of ``pid``; None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        return None
    return rss, fds


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)
    except (OSError, ValueError, IndexError):
        return None
