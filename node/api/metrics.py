"""``/metrics`` in the Prometheus text exposition format (version 0.0.4).

Read-only numbers a scraper can graph: chain height, peers, mempool, sync progress, and the
miner's counters (from ``node.mining.miner.Miner.stats()``: ``blocks_mined``,
``tickets_per_s``, ``useful_macs``, ``nonuseful_macs``, ``jobs_done``, ``inference_*``). Useful
and non-useful work are one counter with a ``kind`` label, so their ratio is one query; the
mined work by source (client jobs, the swarm's inference, self-generated) is another, and the
swarm's inference products (its model's int8 matmuls) are counted apart, on every node that
serves a model: mined or computed plainly through the miner (``Miner.stats``), or computed by
the model itself on a node without a miner (the swarm service's ``inference_stats``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from node.chain.chainstore import ChainStore
from node.chain.mempool import Mempool

PREFIX = "pouwchain_"


class NodeConfigLike(Protocol):
    @property
    def datadir(self) -> Path: ...
    @property
    def network(self) -> str: ...


class PeerLister(Protocol):
    def info(self) -> Sequence[Mapping[str, object]]: ...


class MinerStats(Protocol):
    """The miner's counters (`node.mining.miner.Miner` has them)."""

    def stats(self) -> Mapping[str, Any]: ...


class InferenceCounters(Protocol):
    """The swarm's model counters (`node.swarm.service.SwarmService` has them): ``products``
    and ``macs``, the int8 products its model computed, through a miner or not."""

    def inference_stats(self) -> Mapping[str, int]: ...


class ConnectionCounts(Protocol):
    """The API server's connection gate (`node.api.server.ConnectionGate`)."""

    @property
    def open(self) -> Mapping[str, int]: ...
    @property
    def refused(self) -> int: ...


class MetricsNode(Protocol):
    """What the metrics read of the node (`node.node.Node` provides it)."""

    @property
    def config(self) -> NodeConfigLike: ...
    @property
    def chain(self) -> ChainStore: ...
    @property
    def mempool(self) -> Mempool: ...
    @property
    def peers(self) -> PeerLister: ...
    @property
    def miner(self) -> MinerStats | None: ...
    @property
    def syncing(self) -> bool: ...
    @property
    def sync_progress(self) -> float: ...
    @property
    def best_peer_height(self) -> int: ...
    @property
    def blocks_received(self) -> int: ...
    @property
    def swarm(self) -> InferenceCounters | None: ...
    @property
    def http_gate(self) -> ConnectionCounts | None: ...


class HistogramLike(Protocol):
    """A cumulative histogram (`node.swarm.stats.Histogram`)."""

    @property
    def sum(self) -> float: ...
    @property
    def count(self) -> int: ...
    def cumulative(self) -> list[tuple[str, int]]: ...


#: a section of the metrics another room adds (the swarm's): it writes its families
MetricsSection = Callable[["MetricsText"], None]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


class MetricsText:
    """Accumulates families: one HELP and TYPE line, then samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: list[tuple[Mapping[str, str], float]]) -> None:
        full = PREFIX + name
        self.lines.append(f"# HELP {full} {help_text}")
        self.lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            suffix = f"{{{label_text}}}" if label_text else ""
            self.lines.append(f"{full}{suffix} {_number(value)}")

    def histogram(self, name: str, help_text: str,
                  series: Sequence[tuple[Mapping[str, str], HistogramLike]]) -> None:
        """A histogram family: per series its cumulative ``_bucket{le}``, ``_sum``, ``_count``."""
        full = PREFIX + name
        self.lines.append(f"# HELP {full} {help_text}")
        self.lines.append(f"# TYPE {full} histogram")
        for labels, hist in series:
            base = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            for le, count in hist.cumulative():
                label_text = f'{base},le="{le}"' if base else f'le="{le}"'
                self.lines.append(f"{full}_bucket{{{label_text}}} {count}")
            suffix = f"{{{base}}}" if base else ""
            self.lines.append(f"{full}_sum{suffix} {_number(float(hist.sum))}")
            self.lines.append(f"{full}_count{suffix} {hist.count}")

    def one(self, name: str, kind: str, help_text: str, value: float) -> None:
        self.family(name, kind, help_text, [({}, value)])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def chain_facts(node: MetricsNode) -> dict[str, Any]:
    """The chain and mempool numbers (read where the chain is written: the chain thread)."""
    chain = node.chain
    txs = node.mempool.transactions()
    return {"network": str(node.config.network), "chain_id": chain.params.chain_id,
            "genesis": chain.genesis_id.hex(), "height": chain.tip_header.height,
            "tip_timestamp": chain.tip_header.timestamp, "mempool_transactions": len(txs),
            "mempool_bytes": sum(len(tx.encode()) for tx in txs)}


def render_metrics(node: MetricsNode, *, chain: dict[str, Any] | None = None,
                   sections: Sequence[MetricsSection] = ()) -> str:
    """The node's metrics as Prometheus text; ``chain`` is `chain_facts` read elsewhere
    (peers, sync and miner numbers are read here, on the caller's thread); ``sections``
    add other rooms' families (the swarm's, `node.api.chat`)."""
    facts = chain if chain is not None else chain_facts(node)
    out = MetricsText()
    out.family("info", "gauge", "Static facts about the node (value is always 1).",
               [({"network": facts["network"], "chain_id": str(facts["chain_id"]),
                  "genesis": facts["genesis"]}, 1)])
    out.one("height", "gauge", "Height of the best chain tip.", facts["height"])
    out.one("tip_timestamp_seconds", "gauge", "Timestamp of the tip block.",
            facts["tip_timestamp"])
    out.one("peers", "gauge", "Connected peers.", len(node.peers.info()))
    out.one("mempool_transactions", "gauge", "Transactions waiting in the mempool.",
            facts["mempool_transactions"])
    out.one("mempool_bytes", "gauge", "Canonical bytes of the mempool's transactions.",
            facts["mempool_bytes"])
    out.one("syncing", "gauge", "1 while the node is catching up with its peers.",
            bool(node.syncing))
    out.one("sync_progress", "gauge", "Sync progress from 0 to 1.", float(node.sync_progress))
    out.one("best_peer_height", "gauge", "Highest tip height a connected peer announced.",
            int(node.best_peer_height or 0))
    out.one("blocks_received_total", "counter", "Blocks accepted from peers and the API.",
            int(node.blocks_received or 0))
    gate = node.http_gate
    out.one("http_connections", "gauge", "Open HTTP connections to the API (all addresses).",
            0 if gate is None else sum(gate.open.values()))
    out.one("http_connections_refused_total", "counter",
            "HTTP connections answered 429 too_many_connections (per-address cap).",
            0 if gate is None else int(gate.refused))
    miner = node.miner
    stats: Mapping[str, Any] = {} if miner is None else miner.stats()
    out.one("mining", "gauge", "1 if this node runs a miner.", miner is not None)
    out.one("blocks_mined_total", "counter", "Blocks this node mined.",
            int(stats.get("blocks_mined", 0)))
    out.one("tickets_per_second", "gauge", "Current PoUW ticket evaluation rate.",
            float(stats.get("tickets_per_s", 0.0)))
    out.family("work_macs_total", "counter",
               "Multiply-accumulates mined, by kind: client jobs (useful) or self-generated.",
               [({"kind": "useful"}, int(stats.get("useful_macs", 0))),
                ({"kind": "nonuseful"}, int(stats.get("nonuseful_macs", 0)))])
    useful = int(stats.get("useful_macs", 0))
    total = useful + int(stats.get("nonuseful_macs", 0))
    out.one("useful_work_ratio", "gauge", "Share of mined MACs that were client jobs.",
            useful / total if total else 0.0)
    out.one("jobs_done_total", "counter", "Matmul jobs completed by this node's miner.",
            int(stats.get("jobs_done", 0)))
    inference_mined = int(stats.get("inference_mined_macs", 0))
    out.family("mined_macs_by_source_total", "counter",
               "Mined multiply-accumulates by source: client matmul jobs, the swarm's "
               "inference products (its model's int8 matmuls), self-generated work.",
               [({"source": "jobs"}, max(0, useful - inference_mined)),
                ({"source": "inference"}, inference_mined),
                ({"source": "self"}, int(stats.get("nonuseful_macs", 0)))])
    model: Mapping[str, int] = {} if node.swarm is None else node.swarm.inference_stats()
    through_miner = (int(stats.get("inference_products", 0)),
                     int(stats.get("inference_macs", 0)))
    mined = (int(stats.get("inference_mined_products", 0)), inference_mined)
    # the model counts every product it computes; those that went through the miner are
    # counted there (mined or plain), the rest were computed by the model alone
    local = (max(0, int(model.get("products", 0)) - through_miner[0]),
             max(0, int(model.get("macs", 0)) - through_miner[1]))
    for i, (name, what) in enumerate((("products", "The swarm's inference products"),
                                      ("macs", "Multiply-accumulates of the swarm's "
                                               "inference products"))):
        out.family(f"inference_{name}_total", "counter",
                   f"{what} (its model's int8 matmuls), apart from matmul jobs and "
                   "self-generated work: mined on the current template, computed plainly "
                   "through the miner (a paced dev chain before its block is due), or "
                   "computed by the model alone (a node without a miner).",
                   [({"how": "mined"}, mined[i]),
                    ({"how": "plain"}, through_miner[i] - mined[i]),
                    ({"how": "local"}, local[i])])
    out.one("inference_blocks_total", "counter",
            "Blocks won by tickets of the swarm's inference products, connected as the tip.",
            int(stats.get("inference_blocks", 0)))
    for section in sections:
        section(out)
    return out.text()
