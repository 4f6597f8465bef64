"""Which work a block's certificate came from, and the overview's per-block chart rows.

What the chain records per block is the header's operand roots (``root_a``, ``root_b``) and
shape. A paid matmul job is recorded too: its `JobRecord` carries the padded operands' roots,
the very roots the header carries when its miner mined the job (contracts/jobs.py), so a
block whose roots match a job on chain is "jobs" for any miner. Inference products and
self-generated work are operands only their miner knows: the chain does not tell them apart.
A miner that remembers what it mined (`WorkSources`) attributes its own blocks; other
miners' non-job blocks are "unattributed" (docs/explorer.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from consensus.block import Block, BlockHeader, work_of
from contracts.jobs import JobRequest, job_id_of, job_record
from core.state import State
from node.chain.chainstore import ChainStore

JOBS, INFERENCE, SELF, UNATTRIBUTED, GENESIS = (
    "jobs", "inference", "self", "unattributed", "genesis")
#: the sources of mined work, in chart order (useful first)
SOURCES = (JOBS, INFERENCE, SELF, UNATTRIBUTED)


@runtime_checkable
class WorkSources(Protocol):
    """A miner that remembers which work its won blocks came from."""

    def block_source(self, block_id: bytes) -> str | None: ...


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
              miner: WorkSources | None) -> str:
    """The block's work source (module docstring)."""
    if header.height == 0:
        return GENESIS
    if jobs.job_of(header, state) is not None:
        return JOBS
    known = None if miner is None else miner.block_source(header.block_id())
    return known if known in SOURCES else UNATTRIBUTED


def block_row(block: Block, parent_timestamp: int, *, jobs: JobRoots, state: State,
              miner: WorkSources | None) -> BlockRow:
    header = block.header
    interval = max(1, header.timestamp - parent_timestamp)
    return BlockRow(height=header.height, block_id=header.block_id().hex(),
                    timestamp=header.timestamp, miner=header.miner.hex(),
                    tx_count=len(block.transactions), macs=header.m * header.k * header.n,
                    source=source_of(header, jobs=jobs, state=state, miner=miner),
                    tickets_per_s=0.0 if header.height == 0 else
                    work_of(header.target) / interval)


def recent_rows(chain: ChainStore, count: int, *, jobs: JobRoots,
                miner: WorkSources | None) -> list[BlockRow]:
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
        rows.append(block_row(block, parent, jobs=jobs, state=state, miner=miner))
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
                label=f"#{r.height}: {_shorten(r.macs)} MACs, {r.source}")
            for i, r in enumerate(mined)]
    return Chart(width, height, bars, _shorten(top))


def work_shares(rows: Sequence[BlockRow]) -> dict[str, float]:
    """Each source's share of the mined MACs over ``rows`` (0..1; empty: all zero)."""
    total = sum(r.macs for r in rows if r.height > 0)
    return {source: (sum(r.macs for r in rows if r.source == source and r.height > 0) / total
                     if total else 0.0) for source in SOURCES}
