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

T = TypeVar("T")
ROUTE = f"{API_PREFIX}/finality"


class FinalityReporter(Protocol):
    """The finality service's report (`node.finality.service.FinalityService`)."""

    def report(self) -> dict[str, Any]: ...


class ChainThread(Protocol):
    """Where chain reads run (`node.node.Node.call_chain`)."""

    async def call_chain(self, fn: Callable[[], T]) -> T: ...


def register_routes(app: web.Application, reporter: FinalityReporter, host: ChainThread) -> None:
    """Add ``GET /api/v1/finality`` to ``app``."""

    async def get_finality(_request: web.Request) -> web.Response:
        return web.json_response(await host.call_chain(reporter.report))

    app.router.add_get(ROUTE, get_finality)
