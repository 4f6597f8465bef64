"""The miner: block templates on the tip, mined as PoUW products in a worker thread.

Each round the miner builds a template on the event loop (the chain store and mempool are
not thread-safe, and a round's template must see one consistent tip): mempool transactions
applied on a throwaway overlay of the tip state (never the stored state), the coinbase
reward to the miner address, state and transaction roots, timestamp and the target the
difficulty rule expects. The worker thread then takes a client's matmul job (useful work) or,
if none is queued, self-generated random operands (non-useful work, reported apart), and
mines it with ``commit`` = the header commitment once the operand roots are known. A winning
ticket becomes the header's certificate and the block goes to ``node.submit_block`` (which
connects and broadcasts it) right away, while the product finishes. A new tip makes the
running job stale (``set_commitment`` on the tip listener) and the next round builds on it.

One block per parent: the miner's own rounds and the products it mines for others
(`mine_product`) run side by side on the same template, and each could win it; the first win
claims the parent and every later win on it is dropped, never offered as a sibling of the
miner's own block. On a paced dev chain (every ticket wins) useful work takes the block: an
inference product mined before the block is due keeps its winning ticket (one per parent,
`_held`) and that block is offered when it falls due, instead of a self round; and the
self-generated round waits while an inference product is being mined on its parent. (Before,
a product that came before the block was due was computed plainly, and one that came after
raced the self round, which starts the moment the block is due: beside a busy core an
inference product won 2 of 909 blocks in 15 minutes.)

Other parts of the node mine their own products through `Miner.mine_product` (any worker
thread): the swarm's built-in model runs every weight matmul of its inference that way, so a
mining node's inference is useful work that can win blocks (node.swarm.service).

Mining never runs on the event loop: results come back with ``run_coroutine_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

import nacl.signing
import numpy as np

from consensus.block import (
    MAX_HEADER_SIZE,
    ZERO_HASH,
    Block,
    BlockHeader,
    header_commitment,
    transactions_root,
)
from consensus.transition import apply_transaction, begin_block, pay_block_reward
from consensus.tx import Transaction
from consensus.validation import median_time_past
from core.errors import ConsensusError
from core.state import State
from node.chain.chainstore import ChainStore, ChainUpdate
from node.chain.db import Overlay
from node.chain.mempool import Mempool
from node.config import DEFAULT_MINING_SHAPE
from node.mining.jobs import JobService, set_cpu_threads
from pouw import (
    MiningResult,
    MiningSession,
    PouwParams,
    WinningTicket,
    get_backend,
    work_of_target,
)
from pouw.params import VALUE_MAX, VALUE_MIN

log = logging.getLogger("pouwchain.miner")
T = TypeVar("T")

DEV_SHAPE = DEFAULT_MINING_SHAPE  # m, k, n, r of self-generated work: ~1 ms per job on a CPU
MAX_BLOCK_SOURCES = 4096  # won blocks whose work source the miner remembers
FUTURE_MARGIN = 5  # seconds kept below the consensus future-timestamp bound


@dataclasses.dataclass(frozen=True, kw_only=True)
class MinerConfig:
    """Miner settings; every field has a dev-friendly default."""

    address: bytes | None = None  # coinbase address; None = the node identity's public key
    shape: tuple[int, int, int, int] = DEV_SHAPE  # self-generated work (m, k, n, r)
    backend: str = "auto"
    # CPU threads of torch's GEMMs in this process (None: torch's default, one per core);
    # see node.mining.jobs.set_cpu_threads for why one is the default.
    threads: int | None = 1
    max_block_txs: int = 5000
    interval: float = 0.0  # seconds to pause between rounds
    # When one round of self-generated work is expected to win (a dev chain's target),
    # continuous mining paces itself to one block per this many seconds after the parent
    # (on average: each block waits 0.5-1.5x this, drawn from miner and parent);
    # generate() never waits.
    trivial_block_interval: float = 3.0
    seed: int | None = None  # rng seed of self-generated operands (tests)
    # A template is reused (with new operands, hence a new commitment) until the tip changes
    # or it is this old: new mempool transactions wait at most this long.
    template_refresh: float = 1.0

    def __post_init__(self) -> None:
        m, k, n, r = self.shape
        PouwParams(m=m, k=k, n=n, r=r).validate()
        if self.address is not None and len(self.address) != 32:
            raise ValueError("miner address must be a 32-byte public key")

    @classmethod
    def from_node_config(cls, config: MiningSettings) -> MinerConfig:
        """Read ``miner_address`` (hex), ``mining_shape``, ``mining_backend``,
        ``mining_threads``, ``mining_interval``, ``mining_block_interval`` from the node
        config; unset (None or empty) values keep the defaults."""
        kwargs: dict[str, Any] = {"threads": config.mining_threads}
        if config.miner_address:
            kwargs["address"] = bytes.fromhex(str(config.miner_address).removeprefix("0x"))
        if config.mining_shape:
            kwargs["shape"] = tuple(int(x) for x in config.mining_shape)
        if config.mining_backend:
            kwargs["backend"] = str(config.mining_backend)
        if config.mining_interval is not None:
            kwargs["interval"] = float(config.mining_interval)
        if config.mining_block_interval is not None:
            kwargs["trivial_block_interval"] = float(config.mining_block_interval)
        return cls(**kwargs)


class MiningSettings(Protocol):
    """The node config's mining settings (`node.config.NodeConfig` has them)."""

    @property
    def mine(self) -> bool: ...
    @property
    def miner_address(self) -> str | None: ...
    @property
    def mining_shape(self) -> tuple[int, int, int, int] | None: ...
    @property
    def mining_backend(self) -> str | None: ...
    @property
    def mining_threads(self) -> int | None: ...
    @property
    def mining_interval(self) -> float | None: ...
    @property
    def mining_block_interval(self) -> float | None: ...


class MinerNode(Protocol):
    """What the miner needs of the node (`node.node.Node` provides it)."""

    @property
    def chain(self) -> ChainStore: ...
    @property
    def mempool(self) -> Mempool: ...
    @property
    def identity(self) -> nacl.signing.SigningKey: ...

    async def submit_block(self, block: Block) -> ChainUpdate: ...

    def add_tip_listener(self, cb: Callable[[BlockHeader], None]) -> None: ...

    async def call_chain(self, fn: Callable[[], T]) -> T: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class Template:
    """A block to mine: every header field but the PoUW job and certificate."""

    header: BlockHeader
    transactions: tuple[Transaction, ...]
    parent_id: bytes
    parent_timestamp: int
    fees: int


# Transactions a node service adds at the end of a template, built on the template's state
# after its mempool transactions for a block at the given height (the finality aggregate:
# node.finality.service.FinalityService.template_transactions).
TemplateExtras = Callable[[State, int], Sequence[Transaction]]


def build_template(chain: ChainStore, mempool: Mempool, *, miner: bytes, now: int,
                   max_txs: int = 5000, extras: Sequence[TemplateExtras] = ()) -> Template:
    """A valid block template on ``chain``'s tip (run it where the chain is not changing).

    Mempool transactions that no longer apply are skipped (each applies atomically), then
    each of ``extras`` adds its own (skipped the same way). The timestamp is ``now`` or, if
    the median-time-past rule needs it, one past the median.
    """
    params = chain.params
    parent: BlockHeader = chain.tip_header
    parent_id: bytes = chain.tip_id
    timestamp = max(now, median_time_past(chain.recent_timestamps(parent_id)) + 1)
    target = chain.expected_target(parent_id=parent_id, timestamp=timestamp)
    height = parent.height + 1
    state = State(Overlay(chain.state_view()))
    budget = params.max_block_size - MAX_HEADER_SIZE - 1024
    chosen: list[Transaction] = []
    fees = 0
    recent = chain.recent_block_ids(parent_id)  # calibration seeds (the transition's window)
    begin_block(state, height=height, miner=miner, params=params, parent_id=parent_id,
                recent_block_ids=recent)
    for tx in mempool.select(max_count=max_txs, max_bytes=budget):
        try:
            fees += apply_transaction(state, tx, height=height, params=params,
                                     parent_id=parent_id, recent_block_ids=recent)
        except ConsensusError as exc:
            log.debug("template skips %s: %s", tx.id().hex()[:16], exc)
            continue
        chosen.append(tx)
    for extra in extras:
        for tx in extra(state, height):
            try:
                fees += apply_transaction(state, tx, height=height, params=params,
                                         parent_id=parent_id, recent_block_ids=recent)
            except ConsensusError as exc:
                log.warning("template skips its own %s: %s", tx.id().hex()[:16], exc)
                continue
            chosen.append(tx)
    pay_block_reward(state, miner=miner, fees=fees, params=params)
    header = BlockHeader(
        version=params.block_version, chain_id=params.chain_id, height=height,
        parent_hash=parent_id, timestamp=timestamp, target=target,
        tx_root=transactions_root(chosen), state_root=state.root(), miner=miner,
        root_a=ZERO_HASH, root_b=ZERO_HASH, m=0, k=0, n=0, r=0, certificate=b"",
    )
    return Template(header=header, transactions=tuple(chosen), parent_id=parent_id,
                    parent_timestamp=int(parent.timestamp), fees=fees)


def with_job(header: BlockHeader, root_a: bytes, root_b: bytes, p: PouwParams) -> BlockHeader:
    """The header with the PoUW job filled in (what the commitment hashes)."""
    return dataclasses.replace(header, root_a=root_a, root_b=root_b, m=p.m, k=p.k, n=p.n, r=p.r,
                               certificate=b"")


@dataclasses.dataclass(frozen=True)
class ExactProduct:
    """A product `Miner.mine_product` computed without tickets (none could have won)."""

    product: np.ndarray


class Miner:
    """Mines blocks on the node's tip in a worker thread; see the module docstring."""

    def __init__(self, node: MinerNode, *, jobs: JobService | None = None,
                 config: MinerConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self.jobs = jobs
        self.config = config or MinerConfig()
        self.clock = clock
        self.address = self.config.address or bytes(node.identity.verify_key)
        self._session: MiningSession | None = None  # made on first use: torch loads slowly
        self.continuous = False
        self._rng = np.random.default_rng(self.config.seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._tip_id: bytes = node.chain.tip_id
        self._round: tuple[Template, BlockHeader] | None = None  # template + job header
        self._template_cache: tuple[Template, float] | None = None
        # monotonic time of the latest generate() call: its blocks are built on templates
        # made after it, so they carry every transaction the pool held when it was asked
        self._asked_at = 0.0
        self._round_blocks: list[bytes] = []
        # the parent this miner last offered a block on: one block per parent (_claim)
        self._offered_parent: bytes | None = None
        # parent id -> inference products being mined on it (mine_product): on a paced dev
        # chain the self round waits for them
        self._inference_in_flight: collections.Counter[bytes] = collections.Counter()
        # a paced dev chain's block won early by an inference product, offered when it is due:
        # (template, header, winning ticket); one at a time, for the tip it was mined on
        self._held: tuple[Template, BlockHeader, WinningTicket] | None = None
        # (tip id, clock time this miner saw it become the tip): paced blocks are timed from
        # that moment (`paced_due`), not only from the tip's whole-second header timestamp;
        # none at start (the tip at start was not seen arriving)
        self._tip_seen: tuple[bytes, float] = (b"", 0.0)
        self._round_source = "self"  # the current round's work: "jobs" or "self"
        # block id -> the work its certificate came from ("jobs", "inference", "self"): the
        # chain does not record it (the explorer shows it, node.api.explorer.work)
        self._block_sources: dict[bytes, str] = {}
        # what node services add to every template (the builder wires the finality aggregate)
        self.template_extras: list[TemplateExtras] = []
        self._waiters: collections.deque[tuple[int, list[str], asyncio.Future[list[str]]]] = \
            collections.deque()
        # statistics
        self.blocks_mined = 0
        self.blocks_rejected = 0
        self.tickets_evaluated = 0
        self.useful_macs = 0
        self.nonuseful_macs = 0
        self.jobs_done = 0
        # products of the swarm's inference (mine_product), mined or (a paced dev chain
        # before its block is due) computed plainly; and of those, the mined ones
        self.inference_products = 0
        self.inference_macs = 0
        self.inference_mined_products = 0
        self.inference_mined_macs = 0
        # blocks won by those products' tickets that became the node's tip when submitted
        # (one a peer's block or reorg later replaces still counts; a sibling never does)
        self.inference_blocks = 0
        self.rounds = 0
        self.stale_rounds = 0
        self.busy_seconds = 0.0
        self._recent: collections.deque[tuple[float, int, float]] = collections.deque(maxlen=64)
        node.add_tip_listener(self._on_tip)

    @property
    def session(self) -> MiningSession:
        if self._session is None:
            backend = get_backend(self.config.backend)
            set_cpu_threads(backend, self.config.threads)
            self._session = MiningSession(commitment=bytes(32), target=0,
                                          backend=backend,
                                          max_wins=1, on_ticket=self._on_ticket)
        return self._session

    @property
    def backend_name(self) -> str:
        return self._session.backend.name if self._session is not None else self.config.backend

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, *, continuous: bool = True) -> None:
        """Start the worker thread; ``continuous`` mines until stopped (else only generate)."""
        self._loop = loop
        self.continuous = continuous
        if self.jobs is not None and continuous:
            self.jobs.compute_locally = False
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="pouw-miner", daemon=True)
            self._thread.start()
        self._wake.set()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop after the current round (a round is one product)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.jobs is not None:
            self.jobs.compute_locally = True
        for _, _, fut in self._waiters:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(_cancel, fut)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._active()

    def _active(self) -> bool:
        return self.continuous or bool(self._waiters)

    # -- generate -------------------------------------------------------------------------------

    async def generate(self, count: int, *, timeout: float = 120.0) -> list[str]:
        """Mine ``count`` blocks now (even if not mining continuously); their ids, in order."""
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self.start(loop, continuous=False)
        fut: asyncio.Future[list[str]] = loop.create_future()
        self._asked_at = time.monotonic()
        self._waiters.append((count, [], fut))
        self._wake.set()
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(fut)
        finally:
            if not fut.done():
                fut.cancel()
            self._waiters = collections.deque(w for w in self._waiters if w[2] is not fut)

    def _credit_block(self, block_id: bytes) -> None:
        """On the loop: a mined block counts toward the oldest generate request."""
        while self._waiters:
            count, ids, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            ids.append(block_id.hex())
            if len(ids) >= count:
                self._waiters.popleft()
                fut.set_result(ids)
            return

    # -- tip changes (event loop) ---------------------------------------------------------------

    def _on_tip(self, header: BlockHeader) -> None:
        """New tip: the running job's tickets are for a stale header from now on."""
        self._tip_id = header.block_id()
        self._tip_seen = (self._tip_id, self.clock())
        if self._session is not None:
            self._session.set_commitment(bytes(32))
        self._wake.set()

    def _trivial(self, target: int) -> bool:
        m, k, n, _ = self.config.shape
        return work_of_target(target) <= m * k * n

    # -- the worker thread ----------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _build(self) -> Template:
        return build_template(self.node.chain, self.node.mempool, miner=self.address,
                              now=int(self.clock()), max_txs=self.config.max_block_txs,
                              extras=self.template_extras)

    async def _template(self) -> tuple[Template, float]:
        """Build on the node's chain thread (the store's only writer) when it has one; with
        the monotonic time it was asked for, on the loop (ordered with generate() calls)."""
        asked = time.monotonic()
        template: Template = await self.node.call_chain(self._build)
        return template, asked

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._active():
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                self.mine_round()
            except Exception:  # keep mining; a broken round must not kill the thread
                if self._stop.is_set() or self._loop is None or self._loop.is_closed():
                    return
                log.exception("mining round failed")
                time.sleep(0.5)
            if self.config.interval:
                self._stop.wait(self.config.interval)

    def _current_template(self) -> tuple[Template, float]:
        """The cached template while it is on the tip, fresh and newer than the latest
        generate() call, else a new one; with the monotonic time it was made."""
        cached = self._template_cache
        if cached is not None and cached[0].parent_id == self._tip_id and \
                cached[1] > self._asked_at and \
                time.monotonic() - cached[1] < self.config.template_refresh:
            return cached
        self._template_cache = self._call(self._template())
        return self._template_cache

    def _paced_delay(self, parent_id: bytes) -> float:
        """Seconds after its parent this miner offers a dev-chain block: the block interval
        times a factor in [0.5, 1.5) drawn from (miner, parent), like proof of work's random
        block times, so two paced miners rarely offer sibling blocks at the same moment
        (equal work, each node keeping the one it saw first: a fork every block); never
        under a second."""
        draw = hashlib.blake2b(self.address + parent_id, digest_size=8).digest()
        factor = 0.5 + int.from_bytes(draw, "big") / 2**64
        # at least a second: timestamps are whole seconds, and faster blocks would run the
        # chain's clock ahead of the real one (and leave no time to answer a calibration)
        return max(1.0, self.config.trivial_block_interval * factor)

    def paced_due(self, template: Template) -> float:
        """When the paced dev-chain block on ``template`` falls due (clock time): its
        `_paced_delay` after the parent, timed from the later of the parent's header
        timestamp and the moment this miner saw the parent become its tip.

        Why not the timestamp alone: it is whole seconds, and a held inference block's header
        carries its template's, made when its product began, up to a whole delay before the
        block was due. Paced from that, the next block was due at once: at interval 1.0 an
        inference block and a self block every second, and with the rounding down ~0.6 s
        self blocks, so a SmolLM2 node answering its calibration in 35-50 s beside a busy
        core never landed it within the 64-block window."""
        start = float(template.parent_timestamp)
        seen_id, seen_at = self._tip_seen
        if seen_id == template.parent_id:
            start = max(start, seen_at)
        return start + self._paced_delay(template.parent_id)

    def _paced_wait(self, template: Template) -> bool:
        """On a paced dev chain (every ticket wins): wait, and say so, while the block on
        ``template`` is not due, or while an inference product is being mined on its parent
        (that useful product takes the block; a self round would race it)."""
        due = self.paced_due(template)
        if self.clock() < due:
            self._template_cache = None  # the block, when due, gets a fresh timestamp
            self._wake.wait(min(max(due - self.clock(), 0.05), 0.5))
            self._wake.clear()
            return True
        with self._lock:
            held, self._held = self._held, None
            yielding = self._inference_in_flight[template.parent_id] > 0
        if held is not None and held[0].parent_id == template.parent_id:
            # useful work won this block before it was due: offer that block now
            won: list[bytes] = []
            self._submit_win(*held, blocks=won, source="inference")
            with self._lock:
                self.inference_blocks += len(won)
            return True
        if yielding:
            self._wake.wait(0.5)  # woken by the new tip or the product's end
            self._wake.clear()
        return yielding

    def mine_round(self) -> None:
        """One round (worker thread): template, one job, maybe a block."""
        template, made_at = self._current_template()
        if not self._active():
            # a generate() was answered while this round started (its last block was
            # credited on the loop after `_run` checked): a node that does not mine on its
            # own mines exactly the blocks asked for, never one more
            return
        if made_at <= self._asked_at:
            return  # generate() was called meanwhile: the next round builds a new template
        ahead = template.header.timestamp - (
            self.clock() + self.node.chain.params.max_future_block_time - FUTURE_MARGIN)
        if ahead > 0:  # faster than the median-time rule allows: wait for the clock
            self._template_cache = None
            self._stop.wait(min(ahead, 1.0))
            return
        if self._trivial(template.header.target) and not self._waiters and \
                self._paced_wait(template):
            return
        job = self.jobs.take() if self.jobs is not None else None
        if job is not None:
            a, b, r = job.ops.a, job.ops.b, job.ops.r
        else:
            m, k, n, r = self.config.shape
            a = self._rng.integers(VALUE_MIN, VALUE_MAX + 1, size=(m, k), dtype=np.int8)
            b = self._rng.integers(VALUE_MIN, VALUE_MAX + 1, size=(k, n), dtype=np.int8)

        def commit(root_a: bytes, root_b: bytes, p: PouwParams) -> bytes:
            header = with_job(template.header, root_a, root_b, p)
            self._round = (template, header)
            return header_commitment(header)

        self._round_blocks = []
        self._round_source = "jobs" if job is not None else "self"
        self.session.r = r
        self.session.set_commitment(bytes(32), target=template.header.target)
        started = time.perf_counter()
        try:
            result = self.session.mine(a, b, commit=commit)
        except Exception as exc:
            if job is not None and self.jobs is not None:
                self.jobs.fail(job, repr(exc))
            raise
        elapsed = time.perf_counter() - started
        macs = result.params.m * result.params.k * result.params.n
        tickets = result.params.tickets
        with self._lock:
            self.rounds += 1
            self.stale_rounds += int(result.stale)
            self.tickets_evaluated += result.tickets_evaluated
            self.busy_seconds += elapsed
            self._recent.append((time.monotonic(), tickets, elapsed))
            if job is not None:
                useful = job.ops.m * job.ops.k * job.ops.n
                self.useful_macs += useful
                self.nonuseful_macs += macs - useful  # zero padding
                self.jobs_done += 1
            else:
                self.nonuseful_macs += macs
        if job is not None and self.jobs is not None:
            # "mined": its round won a block, whose header carries the job's operand roots;
            # "mining": computed in a mining round (with tickets) that won nothing
            mined = self._round_blocks[0] if self._round_blocks else b""
            self.jobs.finish(job, result.product, computed_by="mined" if mined else "mining",
                             mined_block=mined)

    async def _submit(self, block: Block) -> tuple[bool, bool]:
        """Submit on the loop: (stored, connected as the node's tip)."""
        update = await self.node.submit_block(block)
        block_id = block.header.block_id()
        tip = any(b.header.block_id() == block_id for b in update.connected)
        return bool(self.node.chain.has_block(block_id)), tip

    def mine_product(self, a: np.ndarray, b: np.ndarray) -> MiningResult | ExactProduct:
        """A·B for another part of the node (the swarm's inference), mined on the current
        template: the header its tickets hash carries these operands' roots, so a winning
        ticket is a block. Any thread but the event loop's; runs in the caller's thread,
        beside the miner's own rounds. On a paced dev chain (every ticket wins) a product that
        comes before the block is due is mined too, and its win is held and offered when the
        block falls due (`_paced_wait`); later products on that parent, and any on a parent
        whose block is already offered, are computed plainly (`ExactProduct`): a second win
        would be dropped, so mining them would only add the overhead."""
        template, _ = self._current_template()
        parent = template.parent_id
        early = self._trivial(template.header.target) and self.clock() < self.paced_due(template)
        with self._lock:
            # its block is offered, or (early) a product already holds its win: a win would
            # be dropped, so only compute it
            taken = self._offered_parent == parent or (
                early and self._held is not None and self._held[0].parent_id == parent)
            if not taken:
                self._inference_in_flight[parent] += 1
        if taken:
            return self._exact_product(a, b)
        try:
            return self._mine_inference(template, a, b, hold=early)
        finally:
            with self._lock:
                self._inference_in_flight[parent] -= 1
                if self._inference_in_flight[parent] <= 0:
                    del self._inference_in_flight[parent]
            self._wake.set()  # a self round waiting for this product goes on

    def _mine_inference(self, template: Template, a: np.ndarray,
                        b: np.ndarray, *, hold: bool = False) -> MiningResult:
        """`mine_product`'s mined case: A·B with tickets on ``template``; a win becomes a
        block now, or with ``hold`` (a paced block not yet due) when the block is due."""
        rounds: list[BlockHeader] = []

        def commit(root_a: bytes, root_b: bytes, p: PouwParams) -> bytes:
            header = with_job(template.header, root_a, root_b, p)
            rounds.append(header)
            return header_commitment(header)

        def on_ticket(win: WinningTicket) -> None:
            if not rounds:
                return
            if hold:
                with self._lock:
                    if self._held is None or self._held[0].parent_id != template.parent_id:
                        self._held = (template, rounds[-1], win)
                self._wake.set()
                return
            self._submit_win(template, rounds[-1], win, blocks=won, source="inference")

        session = MiningSession(commitment=bytes(32), target=template.header.target,
                                backend=self.session.backend, max_wins=1, on_ticket=on_ticket)
        started = time.perf_counter()
        won: list[bytes] = []
        result = session.mine(a, b, commit=commit)
        with self._lock:
            self.inference_blocks += len(won)
            macs = result.params.m * result.params.k * result.params.n
            self.inference_products += 1
            self.inference_macs += macs
            self.inference_mined_products += 1
            self.inference_mined_macs += macs
            self.useful_macs += macs  # inference is useful work (zero padding included)
            self.tickets_evaluated += result.tickets_evaluated
            self.busy_seconds += time.perf_counter() - started
        return result

    def _exact_product(self, a: np.ndarray, b: np.ndarray) -> ExactProduct:
        """A·B on the miner's pouw backend without tickets (exact: the same bits as a mined
        product; numpy's integer matmul has no BLAS and would take ~100x longer)."""
        backend = self.session.backend
        product = backend.to_numpy(backend.product(backend.put(a), backend.put(b)))
        with self._lock:
            self.inference_products += 1
            self.inference_macs += int(a.shape[0]) * int(a.shape[1]) * int(b.shape[1])
        return ExactProduct(product)

    def _on_ticket(self, win: WinningTicket) -> None:
        """Worker thread, mid-product: turn the win into a block and submit it now."""
        if self._round is None:
            return
        template, header = self._round
        self._submit_win(template, header, win, blocks=self._round_blocks,
                         source=self._round_source)

    def _claim(self, parent_id: bytes) -> bool:
        """Whether a win on ``parent_id`` may become a block: it is still the tip and no
        other round of this miner offered one on it (then it is claimed). The miner's rounds
        and `mine_product` calls share a template, and a second win would otherwise be
        submitted before the first one's tip reached `_on_tip`: a sibling of the miner's own
        block, at equal work, that the node stores and keeps off its chain."""
        with self._lock:
            if parent_id != self._tip_id or parent_id == self._offered_parent:
                return False
            self._offered_parent = parent_id
            return True

    def _submit_win(self, template: Template, header: BlockHeader, win: WinningTicket, *,
                    blocks: list[bytes], source: str) -> None:
        """A winning ticket of a round on ``template`` becomes ``header``'s certificate and
        the block goes to the node now (any worker thread); ``blocks`` gets its id if it
        became the node's tip."""
        if not self._claim(template.parent_id):  # the tip moved, or a block is offered on it
            return
        block = Block(header=dataclasses.replace(header, certificate=win.certificate.encode()),
                      transactions=template.transactions)
        block_id = block.header.block_id()
        try:
            stored, tip = self._call(self._submit(block))
        except Exception as exc:
            with self._lock:
                self.blocks_rejected += 1
                if self._offered_parent == template.parent_id:
                    self._offered_parent = None  # not offered after all: the parent is free
            log.warning("mined block %s rejected: %s", block_id.hex()[:16], exc)
            self._stop.wait(1.0)  # a bad template (clock skew?) must not spin at full speed
            return
        if stored:
            with self._lock:
                self.blocks_mined += 1
                self._block_sources[block_id] = source
                if len(self._block_sources) > MAX_BLOCK_SOURCES:
                    del self._block_sources[next(iter(self._block_sources))]
            if tip:
                blocks.append(block_id)
            log.info("mined block %s at height %d (%d txs)", block_id.hex()[:16],
                     block.header.height, len(block.transactions),
                     extra={"source": source, "tip": tip})
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._credit_block, block_id)

    def block_source(self, block_id: bytes) -> str | None:
        """Which work a block this miner won came from: "jobs" (a client's matmul job),
        "inference" (the swarm model's product) or "self" (self-generated); None: not one
        of its last MAX_BLOCK_SOURCES blocks."""
        with self._lock:
            return self._block_sources.get(block_id)

    # -- stats ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for status and metrics; tickets_per_s is over the last 64 rounds."""
        with self._lock:
            recent = list(self._recent)
            out: dict[str, Any] = {
                "blocks_mined": self.blocks_mined,
                "blocks_rejected": self.blocks_rejected,
                "tickets_evaluated": self.tickets_evaluated,
                "useful_macs": self.useful_macs,
                "nonuseful_macs": self.nonuseful_macs,
                "jobs_done": self.jobs_done,
                "inference_products": self.inference_products,
                "inference_macs": self.inference_macs,
                "inference_mined_products": self.inference_mined_products,
                "inference_mined_macs": self.inference_mined_macs,
                "inference_blocks": self.inference_blocks,
                "rounds": self.rounds,
                "stale_rounds": self.stale_rounds,
            }
        busy = sum(e for _, _, e in recent)
        out["tickets_per_s"] = round(sum(t for _, t, _ in recent) / busy, 1) if busy else 0.0
        out["macs_per_s"] = round(self._macs_rate(), 1)
        out["running"] = self.running
        out["backend"] = self.backend_name
        out["address"] = self.address.hex()
        out["jobs_queued"] = self.jobs.pending() if self.jobs is not None else 0
        return out

    def _macs_rate(self) -> float:
        total = self.useful_macs + self.nonuseful_macs
        return total / self.busy_seconds if self.busy_seconds else 0.0


def _cancel(fut: asyncio.Future[list[str]]) -> None:
    if not fut.done():
        fut.cancel()


def stop_all(miner: Miner | None, jobs: JobService | None) -> None:
    """Stop the miner and the job worker (joins their threads)."""
    if miner is not None:
        miner.stop()
    if jobs is not None:
        jobs.stop()


__all__ = ["DEV_SHAPE", "Miner", "MinerConfig", "MiningSettings", "Template", "build_template",
           "stop_all", "with_job"]
