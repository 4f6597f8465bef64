"""The matmul job service: clients' paid products, computed exactly, recorded on chain.

Flow: a client uploads A and B (.npy) with a signed ``JobRequest`` transaction naming this
node as assignee and the roots of the padded operands (`prepare_operands` gives them; the
client runs the same function). The service checks the operands and that the transaction
matches them, admits the transaction to the mempool (it locks the escrow once mined), and
queues the job. A mining node's miner takes queued jobs before self-generated work, so the
product is mined (useful work) and its operand roots appear in a block header; a node that
does not mine computes queued jobs in its own worker thread with the same exact pouw path
(a session with no tickets). When the product is ready and the request is on chain, the
service signs a ``JobReceipt`` with the node's identity (the assignee), which releases the
escrow to it and records the result hash and who computed it.

Jobs are kept in the chain's LevelDB as well as in memory (`JobStore`): an accepted job
(its record and operands) is on disk before the API answers, and every change of state
(finished, failed, receipt sent, on-chain status) is written as it happens. On start the
service reloads them: queued and running jobs are queued again (a running one is computed
from the start), finished ones are settled as usual. Products up to
``PRODUCT_KEPT_BYTES`` are kept with the record; a larger one is only in memory (after a
restart the job reports ``product_dropped``; its result hash and receipt are unaffected).
A job whose receipt never lands (the node gone for good) returns its escrow to the client
through ``JobCancel`` after the timeout.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import io
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import msgpack
import nacl.signing
import numpy as np

from consensus.block import BlockHeader
from consensus.tx import Transaction, sign_transaction
from contracts.jobs import (
    STATUS_CANCELLED,
    STATUS_DONE,
    STATUS_NAMES,
    JobReceipt,
    JobRequest,
    KTooLargeError,
    job_id_of,
    job_record,
    padded_shape,
    result_hash_of,
)
from core.errors import ConsensusError
from core.state import State
from node.chain.chainstore import ChainStore
from node.chain.db import Database
from node.chain.mempool import Mempool
from pouw import MiningSession, get_backend, operand_roots
from pouw.backends import Backend
from pouw.params import VALUE_MAX, VALUE_MIN

log = logging.getLogger("pouwchain.jobs")
T = TypeVar("T")

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
# what a job's ``on_chain.status`` can be: "unconfirmed" until its JobRequest is in a block,
# then the record's "pending" / "done" / "cancelled", or "expired" (pending, but past its
# expiry height: no receipt can land any more). docs/api.md and docs/openapi.yaml list these.
CHAIN_STATUSES = ("unconfirmed", "pending", "done", "expired", "cancelled")
# how a job's product was computed (``mode``): in a block's useful work, in a mining round
# that won nothing, or plainly by the job worker
MODES = ("mined", "mining", "computed")
# LevelDB keys of the job store (in the chain's database)
JOB = b"job/"  # job/<id> -> msgpack record (`JobStore.record`)
JOB_OPERANDS = b"jobop/"  # jobop/<id> -> msgpack [a, b]: unpadded int8 operands, until done
JOB_PRODUCT = b"jobout/"  # jobout/<id> -> the product, int64 little-endian (m×n)
PRODUCT_KEPT_BYTES = 16 * 1024 * 1024  # larger products live in memory only
# fee of a receipt transaction: the dev chain's usual fee, above the default relay minimum
# for any transaction size (node.chain.mempool.DEFAULT_MIN_FEE_PER_KB)
RECEIPT_FEE = 10


class JobInputError(Exception):
    """A job request the service refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, reason: str, message: str, *, status: int = 400) -> None:
        self.reason = reason
        self.message = message
        self.status = status
        super().__init__(f"{reason}: {message}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobLimits:
    """What one job may cost this node (memory, time)."""

    max_matrix_bytes: int = 64 * 1024 * 1024  # one uploaded .npy
    max_product_entries: int = 1 << 24  # m·n: the product is held in memory until fetched
    max_macs: int = 1 << 36  # m·k·n: bounds compute time per job
    max_queued: int = 64
    max_kept: int = 1024  # finished jobs remembered (oldest forgotten first)
    max_kept_product_bytes: int = 512 * 1024 * 1024  # older products are dropped past this
    min_escrow: int = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreparedOperands:
    """Operands padded to a pouw shape, their roots, and the client's original shape."""

    a: np.ndarray  # int8, m'×k'
    b: np.ndarray  # int8, k'×n'
    m: int
    k: int
    n: int
    r: int
    root_a: bytes
    root_b: bytes

    @property
    def padded(self) -> tuple[int, int, int]:
        return int(self.a.shape[0]), int(self.a.shape[1]), int(self.b.shape[1])


def set_cpu_threads(backend: Backend, threads: int | None) -> None:
    """Size the backend's CPU threads for the calling thread unless ``threads`` is None.

    The setting belongs to the calling thread (the miner's or the job worker's: OpenMP keeps
    it per thread), so the rest of the process keeps its own.

    One thread leaves a core to the event loop and the chain thread, and avoids OpenMP
    spin-waits when several nodes share a machine (measured 3-50x faster under load).
    """
    if threads is not None:
        backend.set_threads(threads)


def load_matrix(data: bytes, name: str, *, max_bytes: int) -> np.ndarray:
    """Parse one .npy operand: a 2-D integer array (no pickles), else JobInputError."""
    if len(data) > max_bytes:
        raise JobInputError("too_large", f"{name}: {len(data)} bytes > {max_bytes}", status=413)
    try:
        x = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, EOFError, OSError... on bad input
        raise JobInputError("bad_npy", f"{name}: not a .npy array ({exc})") from exc
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise JobInputError("bad_shape", f"{name}: must be a 2-D array")
    if not np.issubdtype(x.dtype, np.integer):
        raise JobInputError("bad_dtype", f"{name}: must have an integer dtype, got {x.dtype}")
    return x


def prepare_operands(a: np.ndarray, b: np.ndarray) -> PreparedOperands:
    """Check values and shapes, zero-pad to the pouw shape, and compute the operand roots."""
    for name, x in (("a", a), ("b", b)):
        if x.ndim != 2 or 0 in x.shape:
            raise JobInputError("bad_shape", f"{name}: must be a non-empty 2-D array")
        if x.min() < VALUE_MIN or x.max() > VALUE_MAX:
            raise JobInputError("bad_values",
                                f"{name}: entries must lie in [{VALUE_MIN}, {VALUE_MAX}]")
    m, k = (int(d) for d in a.shape)
    k_b, n = (int(d) for d in b.shape)
    if k != k_b:
        raise JobInputError("shape_mismatch", f"a is {m}x{k} but b is {k_b}x{n}")
    try:
        mp, kp, np_, r = padded_shape(m, k, n)
    except KTooLargeError as exc:
        raise JobInputError("k_too_large", str(exc)) from exc
    except ValueError as exc:
        raise JobInputError("bad_shape", str(exc)) from exc
    ap = np.zeros((mp, kp), dtype=np.int8)
    ap[:m, :k] = a
    bp = np.zeros((kp, np_), dtype=np.int8)
    bp[:k, :n] = b
    root_a, root_b = operand_roots(ap, bp)
    return PreparedOperands(a=ap, b=bp, m=m, k=k, n=n, r=r, root_a=root_a, root_b=root_b)


def job_request(
    ops: PreparedOperands, *, assignee: bytes, escrow: int, timeout: int = 1000,
    salt: bytes = bytes(32),
) -> JobRequest:
    """The JobRequest payload a client signs for these operands (client helper)."""
    return JobRequest(assignee=assignee, root_a=ops.root_a, root_b=ops.root_b, m=ops.m,
                      k=ops.k, n=ops.n, escrow=escrow, timeout=timeout, salt=salt)


def product_hash(product: np.ndarray) -> bytes:
    """The receipt's result hash of an exact product (canonical: little-endian int64)."""
    m, n = product.shape
    return result_hash_of(np.ascontiguousarray(product, dtype="<i8").tobytes(), m=m, n=n)


def npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    return buf.getvalue()


@dataclasses.dataclass(kw_only=True)
class Job:
    """One job as this node sees it (statuses: queued, running, done, failed)."""

    job_id: bytes
    request: JobRequest
    requester: bytes
    request_tx_id: bytes
    ops: PreparedOperands
    submitted_at: float
    status: str = QUEUED
    error: str = ""
    padded: tuple[int, int, int, int] = (0, 0, 0, 0)  # m', k', n', r as mined
    product: np.ndarray | None = None
    product_dropped: bool = False
    result_hash: bytes = b""
    worker: bytes = b""
    # "mined" (a block's useful work), "mining" (a mining round that won nothing) or
    # "computed" (plain product by the job worker)
    computed_by: str = ""
    mined_block: bytes = b""  # id of a block whose certificate was computed on these operands
    finished_at: float = 0.0
    receipt_tx_id: bytes = b""
    chain_status: str = "unconfirmed"  # then pending / done / expired / cancelled (record)
    request_height: int | None = None
    receipt_height: int | None = None
    request_tx: bytes = b""  # the JobRequest transaction's canonical bytes (the job store)


class JobStore:
    """Jobs in the chain's LevelDB: a record per job, its operands until it is computed, its
    product (up to ``PRODUCT_KEPT_BYTES``). Writes from any thread (LevelDB serialises
    them); nothing is written once the database is closed (the node is stopping)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def record(job: Job) -> bytes:
        """The msgpack record of a job (everything but operands and product)."""
        return bytes(msgpack.packb({
            "tx": job.request_tx, "submitted_at": job.submitted_at, "status": job.status,
            "error": job.error, "padded": list(job.padded), "result_hash": job.result_hash,
            "computed_by": job.computed_by, "mined_block": job.mined_block,
            "finished_at": job.finished_at, "receipt_tx": job.receipt_tx_id,
            "chain_status": job.chain_status, "request_height": job.request_height,
            "receipt_height": job.receipt_height, "product_dropped": job.product_dropped,
        }, use_bin_type=True))

    def _write(self, writes: dict[bytes, bytes | None], *, sync: bool) -> None:
        if not self.db.closed:
            self.db.write_raw(writes, sync=sync)

    def accepted(self, job: Job) -> None:
        """A new job: record and operands, fsynced (the API answers after this)."""
        a = np.ascontiguousarray(job.ops.a[: job.ops.m, : job.ops.k], dtype=np.int8)
        b = np.ascontiguousarray(job.ops.b[: job.ops.k, : job.ops.n], dtype=np.int8)
        self._write({JOB + job.job_id: self.record(job),
                     JOB_OPERANDS + job.job_id: msgpack.packb([a.tobytes(), b.tobytes()])},
                    sync=True)

    def changed(self, job: Job) -> None:
        """A job's state moved on: its record; once finished, no operands, and its product
        if small enough (in the OS at once: it survives a killed process)."""
        writes: dict[bytes, bytes | None] = {JOB + job.job_id: self.record(job)}
        if job.status in (DONE, FAILED):
            writes[JOB_OPERANDS + job.job_id] = None
            product = job.product
            if product is not None and product.size * 8 <= PRODUCT_KEPT_BYTES:
                writes[JOB_PRODUCT + job.job_id] = np.ascontiguousarray(
                    product, dtype="<i8").tobytes()
            else:
                writes[JOB_PRODUCT + job.job_id] = None
        self._write(writes, sync=False)

    def forget(self, job_ids: list[bytes]) -> None:
        writes: dict[bytes, bytes | None] = {}
        for job_id in job_ids:
            for prefix in (JOB, JOB_OPERANDS, JOB_PRODUCT):
                writes[prefix + job_id] = None
        if writes:
            self._write(writes, sync=False)

    def load(self) -> tuple[list[Job], list[tuple[bytes, str]]]:
        """Every readable job, oldest first; (id, why) of the others (their entries are
        deleted)."""
        jobs: list[Job] = []
        bad: list[tuple[bytes, str]] = []
        for key, value in self.db.iterate_prefix(JOB):
            job_id = key[len(JOB):]
            try:
                jobs.append(self._restore(job_id, value))
            except (ValueError, TypeError, KeyError, ConsensusError) as exc:
                bad.append((job_id, f"{type(exc).__name__}: {exc}"))
        self.forget([job_id for job_id, _ in bad])
        jobs.sort(key=lambda job: job.submitted_at)
        return jobs, bad

    def _restore(self, job_id: bytes, value: bytes) -> Job:
        rec = msgpack.unpackb(value, raw=False)
        if not isinstance(rec, dict):
            raise ValueError("record is not a map")
        raw_tx = bytes(rec["tx"])
        tx = Transaction.decode(raw_tx)
        request = tx.payload
        if not isinstance(request, JobRequest):
            raise ValueError("the record's transaction is not a JobRequest")
        if job_id_of(requester=tx.sender, root_a=request.root_a, root_b=request.root_b,
                     m=request.m, k=request.k, n=request.n, salt=request.salt) != job_id:
            raise ValueError("the record's request is not this job's")
        status = str(rec["status"])
        if status not in (QUEUED, RUNNING, DONE, FAILED):
            raise ValueError(f"unknown status {status!r}")
        ops = self._operands(job_id, request, pending=status in (QUEUED, RUNNING))
        job = Job(job_id=job_id, request=request, requester=tx.sender, request_tx_id=tx.id(),
                  ops=ops, submitted_at=float(rec["submitted_at"]),
                  status=QUEUED if status == RUNNING else status, error=str(rec["error"]),
                  padded=tuple(int(x) for x in rec["padded"]),  # type: ignore[arg-type]
                  result_hash=bytes(rec["result_hash"]), worker=b"",
                  computed_by=str(rec["computed_by"]), mined_block=bytes(rec["mined_block"]),
                  finished_at=float(rec["finished_at"]), receipt_tx_id=bytes(rec["receipt_tx"]),
                  chain_status=str(rec["chain_status"]), request_height=rec["request_height"],
                  receipt_height=rec["receipt_height"],
                  product_dropped=bool(rec["product_dropped"]), request_tx=raw_tx)
        if job.status == DONE:
            m, n = request.m, request.n
            raw = self.db.get(JOB_PRODUCT + job_id)
            if raw is not None and len(raw) == m * n * 8:
                job.product = np.frombuffer(raw, dtype="<i8").reshape(m, n).copy()
            else:
                job.product_dropped = True
        return job

    def _operands(self, job_id: bytes, request: JobRequest, *,
                  pending: bool) -> PreparedOperands:
        """The padded operands of a job still to compute (empty for a finished one)."""
        m, k, n = request.m, request.k, request.n
        mp, kp, np_, r = padded_shape(m, k, n)
        if not pending:
            a = b = np.zeros((0, 0), np.int8)
        else:
            raw = self.db.get(JOB_OPERANDS + job_id)
            if raw is None:
                raise ValueError("a queued job without its operands")
            raw_a, raw_b = msgpack.unpackb(raw)
            if len(raw_a) != m * k or len(raw_b) != k * n:
                raise ValueError("operands of the wrong size")
            a = np.zeros((mp, kp), dtype=np.int8)
            a[:m, :k] = np.frombuffer(raw_a, dtype=np.int8).reshape(m, k)
            b = np.zeros((kp, np_), dtype=np.int8)
            b[:k, :n] = np.frombuffer(raw_b, dtype=np.int8).reshape(k, n)
        return PreparedOperands(a=a, b=b, m=m, k=k, n=n, r=r, root_a=request.root_a,
                                root_b=request.root_b)


class JobsNode(Protocol):
    """What the job service needs of the node (`node.node.Node` provides it)."""

    @property
    def chain(self) -> ChainStore: ...
    @property
    def mempool(self) -> Mempool: ...
    @property
    def identity(self) -> nacl.signing.SigningKey: ...

    async def submit_transaction(self, tx: Transaction) -> bytes: ...

    def add_tip_listener(self, cb: Callable[[BlockHeader], None]) -> None: ...

    async def call_chain(self, fn: Callable[[], T]) -> T: ...


class JobService:
    """Queue, compute (when no miner takes them) and settle matmul jobs."""

    def __init__(self, node: JobsNode, *, limits: JobLimits | None = None,
                 receipt_fee: int = RECEIPT_FEE, backend: str = "auto",
                 threads: int | None = 1) -> None:
        self.node = node
        self.limits = limits or JobLimits()
        self.receipt_fee = receipt_fee
        self.backend = backend
        self.threads = threads
        self.address = bytes(node.identity.verify_key)
        self.jobs: collections.OrderedDict[bytes, Job] = collections.OrderedDict()
        self._queue: collections.deque[Job] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._settling = False
        self._settle_again = False
        self.compute_locally = True  # set False while a continuous miner takes the jobs
        self.useful_macs = 0
        self.jobs_done = 0
        self.store = JobStore(node.chain.db)
        self._restore()
        node.add_tip_listener(self._on_tip)

    def _restore(self) -> None:
        """The jobs kept in the store: queued and interrupted ones queue again."""
        jobs, bad = self.store.load()
        for job_id, why in bad:
            log.warning("job record dropped", extra={"job": job_id.hex(), "error": why})
        for job in jobs:
            self.jobs[job.job_id] = job
            if job.status == QUEUED:
                self._queue.append(job)
        if jobs or bad:
            log.info("jobs restored", extra={"jobs": len(jobs), "queued": len(self._queue),
                                             "dropped": len(bad)})

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the worker thread that computes jobs no miner takes."""
        self._loop = loop
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pouw-jobs", daemon=True)
            self._thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- submission (event loop) ----------------------------------------------------------------

    async def submit(self, a: np.ndarray, b: np.ndarray, tx: Transaction) -> Job:
        """Validate a paid job, admit its request transaction, queue it; JobInputError if not."""
        payload = tx.payload
        # the transaction must be a job request
        if not isinstance(payload, JobRequest):
            raise JobInputError("not_a_job_request",
                                f"payload kind {type(payload).__name__}, expected JobRequest")
        # the request must name this node as the one computing it
        if payload.assignee != self.address:
            raise JobInputError("wrong_assignee",
                                f"request names {payload.assignee.hex()}, this node is "
                                f"{self.address.hex()}")
        # the escrow must meet the node's minimum
        if payload.escrow < self.limits.min_escrow:
            raise JobInputError("escrow_too_low",
                                f"escrow {payload.escrow} < {self.limits.min_escrow}")
        # both operands must be matrices
        if a.ndim != 2 or b.ndim != 2:
            raise JobInputError("bad_shape", "a and b must be 2-D arrays")
        m, k, n = int(a.shape[0]), int(a.shape[1]), int(b.shape[1])
        # the product must fit this node's limits
        if m * n > self.limits.max_product_entries or m * k * n > self.limits.max_macs:
            raise JobInputError("too_large", f"{m}x{k}x{n} exceeds this node's job limits",
                                status=413)
        ops = await asyncio.get_running_loop().run_in_executor(None, prepare_operands, a, b)
        # the request must be for exactly these operands
        if (payload.root_a, payload.root_b) != (ops.root_a, ops.root_b) or \
                (payload.m, payload.k, payload.n) != (ops.m, ops.k, ops.n):
            raise JobInputError("operands_mismatch",
                                "the request's roots or shape are not those of the uploaded "
                                "operands (see node.mining.jobs.prepare_operands)")
        job_id = job_id_of(requester=tx.sender, root_a=ops.root_a, root_b=ops.root_b,
                           m=ops.m, k=ops.k, n=ops.n, salt=payload.salt)
        # a job is accepted once
        if job_id in self.jobs:
            raise JobInputError("duplicate_job", f"job {job_id.hex()} already submitted",
                                status=409)
        # the node's queue must have room
        if len(self._queue) >= self.limits.max_queued:
            raise JobInputError("queue_full", "too many queued jobs; retry later", status=503)
        try:
            tx_id = await self.node.submit_transaction(tx)
        except Exception as exc:  # mempool/consensus rejection: tell the client why
            reason = getattr(exc, "reason", None) or getattr(exc, "rule", None) or "rejected"
            raise JobInputError("tx_rejected", f"{reason}: {exc}") from exc
        job = Job(job_id=job_id, request=payload, requester=tx.sender, request_tx_id=tx_id,
                  ops=ops, submitted_at=time.time(), padded=(*ops.padded, ops.r),
                  request_tx=tx.encode())
        # on disk before the client hears "queued" (the request tx is journaled already)
        await asyncio.get_running_loop().run_in_executor(None, self.store.accepted, job)
        with self._lock:
            self.jobs[job_id] = job
            self._forget_old()
            self._queue.append(job)
        self._wake.set()
        log.info("job queued", extra={"job": job_id.hex(), "shape": f"{m}x{k}x{n}"})
        return job

    def _forget_old(self) -> None:
        """Bound memory (lock held): forget the oldest finished jobs, drop old products."""
        finished = [j for j in self.jobs.values() if j.status in (DONE, FAILED)]
        forgotten = finished[: max(0, len(self.jobs) - self.limits.max_kept)]
        for job in forgotten:
            del self.jobs[job.job_id]
        self.store.forget([job.job_id for job in forgotten])
        kept = 0
        for job in reversed(self.jobs.values()):
            if job.product is None:
                continue
            kept += job.product.nbytes
            if kept > self.limits.max_kept_product_bytes:
                job.product, job.product_dropped = None, True

    # -- computing (any thread) -----------------------------------------------------------------

    def take(self) -> Job | None:
        """The oldest queued job, now running (thread-safe; the miner calls it)."""
        with self._lock:
            if not self._queue:
                return None
            job = self._queue.popleft()
            job.status = RUNNING
            return job

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def finish(self, job: Job, product: np.ndarray, *, computed_by: str,
               mined_block: bytes = b"") -> None:
        """Record a computed product (thread-safe) and settle it on the event loop."""
        job.product = np.ascontiguousarray(product[: job.ops.m, : job.ops.n])
        job.result_hash = product_hash(job.product)
        job.worker = self.address
        job.computed_by = computed_by
        job.mined_block = mined_block
        job.finished_at = time.time()
        job.status = DONE
        self._release_operands(job)
        with self._lock:
            self.jobs_done += 1
            self.useful_macs += job.ops.m * job.ops.k * job.ops.n
            self._forget_old()
        self.store.changed(job)
        self._schedule_settle()

    @staticmethod
    def _release_operands(job: Job) -> None:
        """A finished job needs its shape and roots, not its padded operands."""
        job.ops = dataclasses.replace(job.ops, a=np.zeros((0, 0), np.int8),
                                      b=np.zeros((0, 0), np.int8))

    def fail(self, job: Job, error: str) -> None:
        job.status, job.error, job.finished_at = FAILED, error, time.time()
        self._release_operands(job)
        self.store.changed(job)

    def _run(self) -> None:
        """Worker: compute queued jobs when no miner is taking them (exact, no tickets)."""
        session: MiningSession | None = None
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            while self.compute_locally and not self._stop.is_set():
                job = self.take()
                if job is None:
                    break
                try:
                    if session is None:
                        backend = get_backend(self.backend)
                        set_cpu_threads(backend, self.threads)
                        session = MiningSession(commitment=bytes(32), target=0, max_wins=0,
                                                backend=backend)
                    session.r = job.ops.r
                    result = session.mine(job.ops.a, job.ops.b)
                    self.finish(job, result.product, computed_by="computed")
                except Exception as exc:  # a job must never kill the worker
                    log.exception("job failed")
                    self.fail(job, repr(exc))

    # -- settlement (event loop) ----------------------------------------------------------------

    def _schedule_settle(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._spawn_settle)

    def _on_tip(self, header: BlockHeader) -> None:
        self._spawn_settle()

    def _spawn_settle(self) -> None:
        """Run `settle` now, or once more after the running one (a tip may land meanwhile)."""
        if self._settling:
            self._settle_again = True
            return
        self._settling = True
        task = asyncio.get_running_loop().create_task(self.settle())
        task.add_done_callback(self._settled)

    def _settled(self, _task: asyncio.Task[None]) -> None:
        self._settling = False
        if self._settle_again and not self._stop.is_set():
            self._settle_again = False
            self._spawn_settle()

    async def settle(self) -> None:
        """Read job records at the tip; send receipts for computed jobs whose request landed."""
        for tx in await self.node.call_chain(self._settle_step):
            try:
                await self.node.submit_transaction(tx)
            except Exception as exc:  # retried at the next tip
                log.warning("receipt not admitted: %s", exc)

    def _settle_step(self) -> list[Transaction]:
        """Chain thread: refresh each job's on-chain view; the receipts now due."""
        state = State(self.node.chain.state_view())
        due: list[Transaction] = []
        nonce = state.account(self.address).nonce + len(self.node.mempool.pending_of(self.address))
        height = int(self.node.chain.height) + 1  # the height a receipt would land at
        with self._lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            before = (job.chain_status, job.request_height, job.receipt_height,
                      job.receipt_tx_id)
            due_before = len(due)
            nonce = self._settle_job(job, state, height, nonce, due)
            if len(due) > due_before or before != (job.chain_status, job.request_height,
                                                   job.receipt_height, job.receipt_tx_id):
                self.store.changed(job)
        return due

    def _settle_job(self, job: Job, state: State, height: int, nonce: int,
                    due: list[Transaction]) -> int:
        """One job's on-chain view refreshed; its receipt appended to ``due`` if it is due;
        the next free nonce."""
        record = job_record(state, job.job_id)
        if record is None:
            return nonce
        job.request_height = int(record.created_height)
        if record.status == STATUS_DONE:
            job.chain_status = "done"
            job.receipt_height = int(record.closed_height)
            return nonce
        if record.status == STATUS_CANCELLED:
            job.chain_status = "cancelled"
            return nonce
        if height > record.expiry_height:  # too late for a receipt: the client may cancel
            job.chain_status = "expired"
            return nonce
        job.chain_status = "pending"
        sent = bool(job.receipt_tx_id) and job.receipt_tx_id in self.node.mempool
        if job.status != DONE or sent:
            return nonce
        payload = JobReceipt(job_id=job.job_id, result_hash=job.result_hash)
        seed, chain_id = bytes(self.node.identity), self.node.chain.params.chain_id
        tx = sign_transaction(seed, chain_id=chain_id, nonce=nonce, fee=self.receipt_fee,
                              payload=payload)
        # a node with a higher relay minimum than the usual fee pays its own minimum (a fee
        # takes at most 9 bytes more to encode)
        least = self.node.mempool.config.min_fee(len(tx.encode()) + 9)
        if tx.fee < least:
            tx = sign_transaction(seed, chain_id=chain_id, nonce=nonce, fee=least,
                                  payload=payload)
        job.receipt_tx_id = tx.id()
        due.append(tx)
        return nonce + 1

    # -- views ----------------------------------------------------------------------------------

    def describe_record(self, job_id: bytes) -> dict[str, Any] | None:
        """The on-chain view of a job this node did not take (any node can answer it)."""
        record = job_record(State(self.node.chain.state_view()), job_id)
        if record is None:
            return None
        status = STATUS_NAMES[record.status]
        done = record.status == STATUS_DONE
        return {
            "id": job_id.hex(),
            "status": "elsewhere",  # submitted to another node: only the record is known here
            "shape": [record.m, record.k, record.n],
            "requester": record.requester.hex(),
            "assignee": record.assignee.hex(),
            "escrow": record.escrow,
            "result_hash": record.result_hash.hex() if done else None,
            "on_chain": {
                "status": status,
                "request_height": record.created_height,
                "expiry_height": record.expiry_height,
                "receipt_height": record.closed_height if done else None,
                "worker": record.worker.hex() if done else None,
            },
        }

    def summaries(self) -> list[dict[str, Any]]:
        """Every job this node holds, newest first, without products (GET /api/v1/jobs)."""
        with self._lock:
            jobs = list(self.jobs.values())
        return [{"id": j.job_id.hex(), "status": j.status, "on_chain": j.chain_status,
                 "shape": [j.ops.m, j.ops.k, j.ops.n], "submitted_at": j.submitted_at}
                for j in reversed(jobs)]

    def describe(self, job: Job, *, with_product: bool = True) -> dict[str, Any]:
        """The JSON view of a job (GET /api/v1/jobs/{id})."""
        out: dict[str, Any] = {
            "id": job.job_id.hex(),
            "status": job.status,
            "shape": [job.ops.m, job.ops.k, job.ops.n],
            "padded_shape": list(job.padded),
            "requester": job.requester.hex(),
            "assignee": job.request.assignee.hex(),
            "escrow": job.request.escrow,
            "request_tx": job.request_tx_id.hex(),
            "error": job.error or None,
            "computed_by": self.address.hex() if job.status == DONE else None,
            "mode": job.computed_by or None,
            "mined_in_block": job.mined_block.hex() or None,
            "result_hash": job.result_hash.hex() or None,
            "on_chain": {
                "status": job.chain_status,
                "request_height": job.request_height,
                "receipt_tx": job.receipt_tx_id.hex() or None,
                "receipt_height": job.receipt_height,
                "worker": self.address.hex() if job.chain_status == "done" else None,
            },
        }
        if with_product and job.product is not None:
            out["product_npy_b64"] = base64.b64encode(npy_bytes(job.product)).decode()
        elif job.product_dropped:
            out["product_dropped"] = True  # the node's memory budget; result_hash remains
        return out

    def stats(self) -> dict[str, Any]:
        with self._lock:
            queued = len(self._queue)
        return {"assignee": self.address.hex(),  # name this key in a JobRequest
                "queued": queued, "jobs": len(self.jobs), "jobs_done": self.jobs_done,
                "useful_macs": self.useful_macs}
