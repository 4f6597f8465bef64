"""Which work a block's certificate came from, and the overview's per-block chart rows.

What the chain records per block is the header's operand roots (``root_a``, ``root_b``) and
shape. A paid matmul job is recorded too: its `JobRecord` carries the padded operands' roots,
the very roots the header carries when its miner mined the job (contracts/jobs.py), so a
block whose roots match a job on chain is "jobs" for any miner. An inference product's B is
one of its model's int8 weight matrices, padded as `swarm.runtime.mined.mining_hook` pads
it: a block whose ``root_b`` is such a padded weight's root (`InferenceRoots`, the models
this node knows) is "inference", for any miner. Everything else is "self" (self-generated
work, or a model this node does not know): a heuristic, not a consensus fact
(docs/explorer.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from consensus.block import Block, BlockHeader, work_of
from contracts.jobs import JobRequest, job_id_of, job_record
from core.state import State
from node.chain.chainstore import ChainStore
from node.logging import get_logger, log_event
from swarm.runtime.mined import mined_weight_roots
from swarm.runtime.variants import VARIANT_NAMES, model_weights, variant_path

log = get_logger("explorer")
JOBS, INFERENCE, SELF, GENESIS = ("jobs", "inference", "self", "genesis")
#: the sources of mined work, in chart order (useful first)
SOURCES = (JOBS, INFERENCE, SELF)


@runtime_checkable
class WorkSources(Protocol):
    """A miner that remembers which work its won blocks came from."""

    def block_source(self, block_id: bytes) -> str | None: ...


@runtime_checkable
class WeightOperands(Protocol):
    """A model whose every product's B is one of int8 weights it can list
    (`swarm.runtime.builtin.BuiltinBackend`)."""

    @property
    def name(self) -> str: ...

    def weight_operands(self) -> Mapping[str, np.ndarray]: ...


class InferenceRoots:
    """``root_b`` -> model name for the weights of every model this node knows, padded as
    they are mined (`mined_weight_roots`): the shipped arithmetic variants (every node has
    their files; 196 roots in ~0.1 s) and the node's own model when it lists its weights
    (SmolLM2: 420 roots, seconds). Each is computed once, in a worker thread, from the first
    use on (the overview, the live stream, the rows); pages wait for the shipped variants
    only, and add the node's own model once it is ready (its blocks are "self" until then)."""

    def __init__(self, backend: object | None) -> None:
        self.backend = backend
        self._shipped: asyncio.Future[dict[bytes, str]] | None = None
        self._own: asyncio.Future[dict[bytes, str]] | None = None
        self._all: dict[bytes, str] | None = None  # shipped + own, once both are done

    def shipped_models(self) -> list[tuple[str, Mapping[str, np.ndarray]]]:
        models: list[tuple[str, Mapping[str, np.ndarray]]] = []
        for name in VARIANT_NAMES:
            try:
                models.append((name, model_weights(variant_path(name))))
            except (OSError, ValueError) as exc:  # a damaged install: label what it can
                log_event(log, "explorer.model_unreadable", model=name, error=str(exc))
        return models

    def own_model(self) -> WeightOperands | None:
        """The node's own model, unless it is a shipped variant (or lists no weights)."""
        backend = self.backend
        return backend if isinstance(backend, WeightOperands) and \
            backend.name not in VARIANT_NAMES else None

    def models(self) -> list[tuple[str, Mapping[str, np.ndarray]]]:
        own = self.own_model()
        return self.shipped_models() + ([] if own is None else
                                        [(own.name, own.weight_operands())])

    @staticmethod
    def index(models: Sequence[tuple[str, Mapping[str, np.ndarray]]]) -> dict[bytes, str]:
        return {root: name for name, weights in models
                for root in mined_weight_roots(weights.values())}

    def compute(self) -> dict[bytes, str]:
        """The whole index, here and now (tests, bench)."""
        return self.index(self.models())

    def _own_index(self) -> dict[bytes, str]:
        own = self.own_model()
        if own is None:
            return {}
        started = time.perf_counter()
        found = self.index([(own.name, own.weight_operands())])
        log_event(log, "explorer.inference_roots", model=own.name, roots=len(found),
                  seconds=round(time.perf_counter() - started, 2))
        return found

    async def roots(self) -> Mapping[bytes, str]:
        """The index so far (event loop): the shipped variants' always, the node's own
        model's once computed."""
        if self._all is not None:
            return self._all
        if self._shipped is None:
            self._shipped = asyncio.ensure_future(asyncio.to_thread(
                lambda: self.index(self.shipped_models())))
            self._own = asyncio.ensure_future(asyncio.to_thread(self._own_index))
        shipped = await asyncio.shield(self._shipped)
        own = self._own
        if own is None or not own.done():
            return shipped
        if own.cancelled() or own.exception() is not None:  # cannot list: shipped only
            log_event(log, "explorer.inference_roots_failed", error=str(own.exception()))
            self._all = shipped
        else:
            self._all = {**own.result(), **shipped}  # same weights: the shipped name
        return self._all


@dataclasses.dataclass(frozen=True)
class BlockRow:
    """One block as the overview lists and charts it."""

    height: int
    block_id: str
    timestamp: int
    miner: str
    tx_count: int
    macs: int  # m·k·n of the certificate's product
    source: str
    tickets_per_s: float  # expected tickets to beat the target over the block's interval
    model: str | None = None  # an inference block's model (whose weights are its B)


class JobRoots:
    """(root_a, root_b) -> job id of every `JobRequest` in the canonical blocks walked so far.

    Built incrementally as the explorer reads blocks (never persisted: a restart walks the
    chain again on the first overview); an entry counts only while `job_record` has the job
    at the tip, so a request left behind by a reorg attributes nothing."""

    def __init__(self) -> None:
        self.by_roots: dict[tuple[bytes, bytes], bytes] = {}
        self.walked = 0  # heights 1..walked have been read

    def catch_up(self, chain: ChainStore) -> None:
        """Walk the canonical blocks above the last walked height (chain thread)."""
        for height in range(self.walked + 1, chain.height + 1):
            block_id = chain.block_id_at(height)
            block = None if block_id is None else chain.get_block(block_id)
            if block is not None:
                self.add(block)
        self.walked = max(self.walked, chain.height)

    def add(self, block: Block) -> None:
        for tx in block.transactions:
            p = tx.payload
            if isinstance(p, JobRequest):
                self.by_roots[(p.root_a, p.root_b)] = job_id_of(
                    requester=tx.sender, root_a=p.root_a, root_b=p.root_b, m=p.m, k=p.k,
                    n=p.n, salt=p.salt)

    def job_of(self, header: BlockHeader, state: State) -> bytes | None:
        """The job on chain whose operands this block mined, if any."""
        job_id = self.by_roots.get((header.root_a, header.root_b))
        return job_id if job_id is not None and job_record(state, job_id) is not None else None


def source_of(header: BlockHeader, *, jobs: JobRoots, state: State,
              inference: Mapping[bytes, str], miner: WorkSources | None) -> str:
    """The block's work source (module docstring); a miner's memory of its own blocks
    decides what the roots do not."""
    if header.height == 0:
        return GENESIS
    if jobs.job_of(header, state) is not None:
        return JOBS
    if header.root_b in inference:
        return INFERENCE
    known = None if miner is None else miner.block_source(header.block_id())
    return known if known in SOURCES else SELF


def block_row(block: Block, parent_timestamp: int, *, jobs: JobRoots, state: State,
              inference: Mapping[bytes, str], miner: WorkSources | None) -> BlockRow:
    header = block.header
    interval = max(1, header.timestamp - parent_timestamp)
    source = source_of(header, jobs=jobs, state=state, inference=inference, miner=miner)
    return BlockRow(height=header.height, block_id=header.block_id().hex(),
                    timestamp=header.timestamp, miner=header.miner.hex(),
                    tx_count=len(block.transactions), macs=header.m * header.k * header.n,
                    source=source, model=inference.get(header.root_b)
                    if source == INFERENCE else None,
                    tickets_per_s=0.0 if header.height == 0 else
                    work_of(header.target) / interval)


def recent_rows(chain: ChainStore, count: int, *, jobs: JobRoots,
                inference: Mapping[bytes, str], miner: WorkSources | None) -> list[BlockRow]:
    """The last ``count`` canonical blocks, newest first (chain thread)."""
    jobs.catch_up(chain)
    state = State(chain.state_view())
    rows: list[BlockRow] = []
    top = chain.height
    blocks: list[Block] = []
    for height in range(top, max(-1, top - count - 1), -1):
        block_id = chain.block_id_at(height)
        block = None if block_id is None else chain.get_block(block_id)
        if block is None:
            break
        blocks.append(block)
    for i, block in enumerate(blocks[:count]):
        parent = blocks[i + 1].header.timestamp if i + 1 < len(blocks) else \
            block.header.timestamp
        rows.append(block_row(block, parent, jobs=jobs, state=state, inference=inference,
                              miner=miner))
    return rows


@dataclasses.dataclass(frozen=True)
class Bar:
    """One bar (or stacked segment) of an inline SVG chart, in chart units."""

    x: float
    y: float
    width: float
    height: float
    kind: str  # css class: a source name, or "rate"
    label: str  # the tooltip (<title>)


@dataclasses.dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    top: str  # the axis maximum, as text


def _shorten(value: float) -> str:
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def rate_chart(rows: Sequence[BlockRow], *, width: int = 600, height: int = 120) -> Chart:
    """Tickets/s per block, oldest left."""
    mined = [r for r in reversed(rows) if r.height > 0]
    top = max((r.tickets_per_s for r in mined), default=0.0) or 1.0
    step = width / max(1, len(mined))
    bars = [Bar(x=i * step, y=height - height * r.tickets_per_s / top,
                width=max(1.0, step - 1), height=height * r.tickets_per_s / top, kind="rate",
                label=f"#{r.height}: {_shorten(r.tickets_per_s)} tickets/s")
            for i, r in enumerate(mined)]
    return Chart(width, height, bars, _shorten(top))


def work_chart(rows: Sequence[BlockRow], *, width: int = 600, height: int = 120) -> Chart:
    """Each block's mined multiply-accumulates, coloured by source, oldest left."""
    mined = [r for r in reversed(rows) if r.height > 0]
    top = max((r.macs for r in mined), default=0) or 1
    step = width / max(1, len(mined))
    bars = [Bar(x=i * step, y=height - height * r.macs / top, width=max(1.0, step - 1),
                height=height * r.macs / top, kind=r.source,
                label=f"#{r.height}: {_shorten(r.macs)} MACs, {r.source}"
                      + (f" ({r.model})" if r.model else ""))
            for i, r in enumerate(mined)]
    return Chart(width, height, bars, _shorten(top))


def work_shares(rows: Sequence[BlockRow]) -> dict[str, float]:
    """Each source's share of the mined MACs over ``rows`` (0..1; empty: all zero)."""
    total = sum(r.macs for r in rows if r.height > 0)
    return {source: (sum(r.macs for r in rows if r.source == source and r.height > 0) / total
                     if total else 0.0) for source in SOURCES}
