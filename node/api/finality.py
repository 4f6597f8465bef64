"""``GET /api/v1/finality``: where finality stands on this node's chain.

The answer (`node.finality.service.FinalityService.report`): the chain's last justified and
finalized checkpoints, participation per epoch and whether finality is stalled (from the
head's state, `consensus.finality.describe`), the finalized checkpoint this node's fork
choice never leaves (``node_finalized``, kept across restarts), its vote pool per link and,
on a validator, its duty. Read on the chain thread, so it never sees a half-applied block.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from aiohttp import web

from node.api.chain import API_PREFIX
from node.api.metrics import MetricsText

T = TypeVar("T")
ROUTE = f"{API_PREFIX}/finality"


class FinalityReporter(Protocol):
    """The finality service's report (`node.finality.service.FinalityService`)."""

    def report(self) -> dict[str, Any]: ...


class FinalityFigures(Protocol):
    """The finality service's numbers (`FinalityService.figures`, event-loop safe)."""

    def figures(self) -> dict[str, float]: ...


class ChainThread(Protocol):
    """Where chain reads run (`node.node.Node.call_chain`)."""

    async def call_chain(self, fn: Callable[[], T]) -> T: ...


def register_routes(app: web.Application, reporter: FinalityReporter, host: ChainThread) -> None:
    """Add ``GET /api/v1/finality`` to ``app``."""

    async def get_finality(_request: web.Request) -> web.Response:
        return web.json_response(await host.call_chain(reporter.report))

    app.router.add_get(ROUTE, get_finality)


def metrics_section(service: FinalityFigures) -> Callable[[MetricsText], None]:
    """The finality families of ``/metrics``: finalized and justified heights, the newest
    epoch's participation, stalled, and the vote gossip counters."""

    def write(out: MetricsText) -> None:
        f = service.figures()
        out.one("finalized_height", "gauge",
                "Height of the last finalized checkpoint (this node's fork choice root).",
                int(f["finalized_height"]))
        out.one("justified_height", "gauge", "Height of the last justified checkpoint.",
                int(f["justified_height"]))
        out.one("finality_active", "gauge", "1 once finality is anchored on this chain.",
                f["active"])
        out.one("finality_stalled", "gauge",
                "1 while finality lags the head by more than finality_stall_epochs.",
                f["stalled"])
        out.family("finality_participation", "gauge",
                   "Share of the epoch's stake whose votes are counted (newest epoch voted).",
                   [({"epoch": str(int(f["participation_epoch"]))}, f["participation"])])
        out.family("finality_votes_total", "counter",
                   "Finality votes: signed by this validator, received by gossip, rejected.",
                   [({"kind": "signed"}, int(f["votes_signed"])),
                    ({"kind": "received"}, int(f["votes_received"])),
                    ({"kind": "rejected"}, int(f["votes_rejected"]))])
        out.one("finality_pool_votes", "gauge", "Votes held in the vote pool.",
                int(f["pool_votes"]))
        out.one("finality_aggregates_total", "counter",
                "Vote aggregates this node put in its block templates.",
                int(f["aggregates_built"]))

    return write
