"""The explorer and chat pages every node serves at ``/`` (issue 15, docs/explorer.md).

Server-rendered Jinja2 templates (autoescaped: every question, answer and memo is text, never
markup) with one small script (`static/explorer.js`: live blocks over SSE, the chat box's
stream, sortable tables) and inline SVG charts; no external resource, so it works offline.
Read-only: the pages read the chain, the swarm's rounds and the job service through the same
objects the JSON API uses; the only request the pages make that changes anything is the chat
box's ``POST /v1/chat/completions``, the node's public OpenAI route. Nothing here touches the
node's keys or its token routes. Every response carries a Content-Security-Policy that allows
only this origin's script and style (no inline script, no eval).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from consensus.block import BlockHeader
from contracts.registry import capability, swarm_node_ids
from core.state import State
from node.api.chain import MAX_HISTORY, Api, block_json, tx_json
from node.api.chat import model_name
from node.api.errors import ApiError
from node.api.explorer.work import (
    INFERENCE,
    SOURCES,
    BlockRow,
    InferenceRoots,
    JobRoots,
    WorkSources,
    rate_chart,
    recent_rows,
    source_of,
    work_chart,
    work_shares,
)
from node.mining.jobs import JobService
from node.swarm.round import RoundState
from node.swarm.service import SwarmService
from pouw.certificate import Certificate
from pouw.errors import CertificateError
from pouw.verify import tile_ticket

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
RECENT_BLOCKS = 20  # rows of the overview's table
CHART_BLOCKS = 60  # blocks of the overview's charts (and GET /explorer/blocks' default)
MAX_ROWS = 1000  # blocks one GET /explorer/blocks returns at most
ACCOUNT_TXS = 50  # an account page's recent transactions (GET /api/v1/accounts/{a}/txs)
FINALITY_ROUTE = "/api/v1/finality"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
HERE = Path(__file__).resolve().parent  # templates/ and static/ (package data)
_HEX64 = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_SSE_QUEUE = 64  # tip events a slow SSE client may fall behind before it is dropped


def _short(value: str, keep: int = 8) -> str:
    return value if len(value) <= 2 * keep + 1 else f"{value[:keep]}…{value[-keep:]}"


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["short"] = _short
    env.filters["utc"] = _utc
    env.filters["pct"] = lambda x: f"{100 * x:.1f}%"
    env.filters["micro"] = lambda x: "–" if x is None else f"{x / 1e6:.3f}"
    return env


def _static_files() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in (HERE / "static").iterdir()
            if path.suffix in STATIC_TYPES}


def certificate_view(header: BlockHeader) -> dict[str, Any] | None:
    """The PoUW certificate of a header: tile, chunk, the ticket against the target."""
    if not header.certificate:
        return None
    try:
        cert = Certificate.decode(header.certificate)
        ticket = tile_ticket(cert)
    except (CertificateError, ValueError) as exc:
        return {"error": str(exc)}
    p = cert.params
    return {"tile_row": cert.tile_row, "tile_col": cert.tile_col, "chunk": cert.chunk,
            "chunks": p.k // p.r, "shape": f"{p.m}×{p.k}×{p.n}, r={p.r}",
            "ticket": f"0x{ticket:064x}", "target": f"0x{header.target:064x}",
            "beats": ticket <= header.target,
            "margin_bits": header.target.bit_length() - ticket.bit_length(),
            "size": len(header.certificate)}


class Explorer:
    """The pages of one node; `register_routes` mounts them."""

    def __init__(self, api: Api, service: SwarmService, *, jobs: JobService | None,
                 miner: WorkSources | None) -> None:
        self.api = api
        self.node = api.node
        self.service = service
        self.jobs = jobs
        self.miner = miner
        self.job_roots = JobRoots()
        self.inference = InferenceRoots(service.backend)
        self.env = _environment()
        self.static = _static_files()
        self.listeners: set[asyncio.Queue[str | None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- rendering ---------------------------------------------------------------------------

    def page(self, request: web.Request, template: str, *, status: int = 200,
             **context: Any) -> web.Response:
        context.setdefault("title", template.removesuffix(".html"))
        text = self.env.get_template(template).render(
            network=self.node.config.network, nav=request.path, **context)
        return web.Response(text=text, status=status, content_type="text/html",
                            headers=SECURITY_HEADERS)

    def not_found(self, request: web.Request, what: str, *, status: int = 404) -> web.Response:
        return self.page(request, "notfound.html", status=status, title="not found", what=what)

    def has_finality(self, request: web.Request) -> bool:
        return any(r.canonical == FINALITY_ROUTE for r in request.app.router.resources())

    # -- pages -------------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        status = self.api.status()
        rows = await self.rows(CHART_BLOCKS)
        shares = work_shares(rows)
        return self.page(
            request, "overview.html", title="overview", status_json=status,
            rows=rows[:RECENT_BLOCKS], rate=rate_chart(rows), work=work_chart(rows),
            shares=shares, useful=1.0 - shares["self"],
            sources=SOURCES, chart_blocks=len([r for r in rows if r.height > 0]),
            finality=self.has_finality(request))

    async def rows(self, count: int) -> list[BlockRow]:
        """The last ``count`` blocks' rows, newest first: what the charts draw."""
        inference = await self.inference.roots()
        return await self.api.on_chain(lambda: recent_rows(
            self.node.chain, count, jobs=self.job_roots, inference=inference,
            miner=self.miner))

    async def blocks_json(self, request: web.Request) -> web.Response:
        """``GET /explorer/blocks?count=N``: the rows the overview's charts draw (newest
        first, each with its work source) and each source's share of the mined work."""
        text = request.query.get("count", str(CHART_BLOCKS))
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_ROWS:
            raise ApiError(400, "bad_count", f"count must be an integer in [1, {MAX_ROWS}]")
        rows = await self.rows(int(text))
        return web.json_response({"height": self.node.chain.height,
                                  "blocks": [row_json(r) for r in rows],
                                  "shares": work_shares(rows)}, headers=SECURITY_HEADERS)

    async def block(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        chain = self.node.chain
        block_id: bytes | None = None
        if ref.isascii() and ref.isdigit() and len(ref) <= 20:
            block_id = chain.block_id_at(int(ref)) if int(ref) < 2**64 else None
        elif _HEX64.match(ref):
            block_id = bytes.fromhex(ref.removeprefix("0x"))
        block = None if block_id is None else await self.api.on_chain(
            lambda: chain.get_block(block_id) if block_id is not None else None)
        if block is None:
            return self.not_found(request, f"block {ref}")
        view = block_json(block, chain=chain, full_txs=True)
        source, model = await self.work_source(block.header)
        return self.page(request, "block.html", title=f"block {block.header.height}",
                         block=view, cert=certificate_view(block.header), source=source,
                         model=model)

    async def work_source(self, header: BlockHeader) -> tuple[str, str | None]:
        """The block's work source (`work.source_of`) and, for inference, its model."""
        inference = await self.inference.roots()

        def source() -> str:
            self.job_roots.catch_up(self.node.chain)
            return source_of(header, jobs=self.job_roots, state=State(
                self.node.chain.state_view()), inference=inference, miner=self.miner)

        found = await self.api.on_chain(source)
        return found, inference.get(header.root_b) if found == INFERENCE else None

    async def tx(self, request: web.Request) -> web.Response:
        ref = request.match_info["tx_id"]
        found = await self.find_tx(ref) if _HEX64.match(ref) else None
        if found is None:
            return self.not_found(request, f"transaction {ref}")
        return self.page(request, "tx.html", title="transaction", found=found,
                         payload_json=json.dumps(found["tx"]["payload"], indent=1))

    async def find_tx(self, ref: str) -> dict[str, Any] | None:
        tx_id = bytes.fromhex(ref.removeprefix("0x"))
        pending = await self.api.on_chain(lambda: self.node.mempool.get(tx_id))
        if pending is not None:
            return {"status": "pending", "tx": tx_json(pending)}
        await self.api.txindex.catch_up(run=self.api.on_chain)
        location = self.api.txindex.lookup(tx_id)
        if location is None:
            return None
        return {"status": "confirmed", "block": location.block_id.hex(),
                "height": location.height, "index": location.index,
                "confirmations": self.node.chain.height - location.height + 1,
                "tx": tx_json(location.tx)}

    async def account(self, request: web.Request) -> web.Response:
        ref = request.match_info["address"]
        if not _HEX64.match(ref):
            return self.not_found(request, f"account {ref}")
        address = bytes.fromhex(ref.removeprefix("0x"))
        view = await self.api.on_chain(lambda: self.api.account(address))
        history = await self.api.account_history(address, ACCOUNT_TXS)
        return self.page(request, "account.html", title="account", account=view,
                         history=history, limit=ACCOUNT_TXS, max_history=MAX_HISTORY)

    def registry(self) -> list[dict[str, Any]]:
        """Every registered swarm node (chain thread)."""
        state = State(self.node.chain.state_view())
        out = []
        for node in swarm_node_ids(state):
            record = state.swarm_node(node)
            cap = capability(state, node)
            out.append({"node": node.hex(), "stake": state.stake(node).bonded,
                        "reputation": state.reputation(node),
                        "models": [] if record is None else
                        [model_name(m) for m in record.models],
                        "capable": cap is not None and cap.capable == 1,
                        "calibration": None if cap is None else
                        {"height": cap.height, "correct": cap.correct}})
        return out

    def rounds(self) -> list[RoundState]:
        return sorted(self.service.rounds.values(), key=lambda s: s.started, reverse=True)

    async def swarm(self, request: web.Request) -> web.Response:
        registry = await self.api.on_chain(self.registry)
        return self.page(request, "swarm.html", title="swarm", registry=registry,
                         rounds=self.rounds()[:100], model_name=model_name)

    async def round(self, request: web.Request) -> web.Response:
        ref = request.match_info["round_id"]
        state = self.service.rounds.get(bytes.fromhex(ref)) if _HEX64.match(ref) \
            and not ref.startswith("0x") else None
        if state is None:
            return self.not_found(request, f"round {ref}")
        view = state.view()
        view["settlement_status"] = self.service.settlement_status(state)
        return self.page(request, "round.html", title="round", round=view,
                         strengths=strength_chart(view))

    async def jobs_page(self, request: web.Request) -> web.Response:
        jobs = [] if self.jobs is None else [
            self.jobs.describe(job, with_product=False)
            for job in reversed(list(self.jobs.jobs.values()))]
        stats = None if self.jobs is None else self.jobs.stats()
        return self.page(request, "jobs.html", title="jobs", jobs=jobs, stats=stats)

    async def chat(self, request: web.Request) -> web.Response:
        return self.page(request, "chat.html", title="chat", url=f"{request.scheme}://"
                         f"{request.host}", max_tokens=self.service.max_tokens)

    async def search(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "").strip()
        target = await self.resolve(query)
        if target is None:
            return self.not_found(request, f"“{query}”")
        raise web.HTTPFound(target)

    async def resolve(self, query: str) -> str | None:
        """The page a search names: a height, block id, tx id, round id or account."""
        chain = self.node.chain
        if query.isascii() and query.isdigit() and len(query) <= 20:
            return f"/block/{query}" if int(query) <= chain.height else None
        if not _HEX64.match(query):
            return None
        ref = query.removeprefix("0x").lower()
        raw = bytes.fromhex(ref)
        if await self.api.on_chain(lambda: chain.has_block(raw)):
            return f"/block/{ref}"
        if await self.find_tx(ref) is not None:
            return f"/tx/{ref}"
        if raw in self.service.rounds:
            return f"/round/{ref}"
        view = await self.api.on_chain(lambda: self.api.account(raw))
        known = view["balance"] or view["nonce"] or view["stake"]["bonded"] or \
            view["stake"]["unbonding_total"] or view["swarm_node"] or view["escrow"]["locked"]
        return f"/account/{ref}" if known else None

    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self.static.get(name)
        if body is None:
            return self.not_found(request, f"file {name}")
        kind = STATIC_TYPES.get("." + name.rsplit(".", 1)[-1], "application/octet-stream")
        return web.Response(body=body, content_type=kind, headers={
            **SECURITY_HEADERS, "Cache-Control": "public, max-age=300"})

    # -- live blocks -------------------------------------------------------------------------

    def on_tip(self, header: BlockHeader) -> None:
        """Tip listener (event loop): send the new tip's row to every SSE client."""
        if not self.listeners:
            return
        task = asyncio.get_running_loop().create_task(self._publish(header))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, header: BlockHeader) -> None:
        rows = await self.rows(1)
        if not rows:
            return
        event = json.dumps({**row_json(rows[0]), "tip_height": header.height,
                            "peers": len(self.node.peers.info()),
                            "sync_progress": float(self.node.sync_progress)})
        for queue in list(self.listeners):
            if queue.full():  # a client that stopped reading: end its stream
                self.listeners.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)
                continue
            queue.put_nowait(event)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """``GET /explorer/events``: the new tip's block row, as an SSE ``block`` event."""
        response = web.StreamResponse(headers={
            **SECURITY_HEADERS, "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache"})
        await response.prepare(request)
        async with self._listening() as queue:
            await response.write(b"retry: 2000\n\n")
            while True:
                event = await queue.get()
                if event is None:
                    break
                await response.write(f"event: block\ndata: {event}\n\n".encode())
        return response

    @contextlib.asynccontextmanager
    async def _listening(self) -> AsyncIterator[asyncio.Queue[str | None]]:
        queue: asyncio.Queue[str | None] = asyncio.Queue(_SSE_QUEUE)
        self.listeners.add(queue)
        try:
            yield queue
        finally:
            self.listeners.discard(queue)

    async def on_shutdown(self, app: web.Application) -> None:
        """End every SSE stream, so the server's cleanup does not wait on them."""
        for queue in list(self.listeners):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self.listeners.clear()


def row_json(row: BlockRow) -> dict[str, Any]:
    return {"height": row.height, "id": row.block_id, "time": _utc(row.timestamp),
            "miner": row.miner, "txs": row.tx_count, "macs": row.macs, "source": row.source,
            "model": row.model}


def strength_chart(view: dict[str, Any], *, width: int = 480,
                   bar_height: int = 26) -> dict[str, Any] | None:
    """One horizontal bar per ranked answer: its Bradley-Terry strength as the score σ(θ)
    in 0..1 (0.5: θ = 0, an even match), θ in the label."""
    result = view.get("result")
    if not result or not result.get("answers"):
        return None
    bars = [{"x": 0, "y": i * bar_height + 4, "width": max(2.0, width * a["score_micro"] / 1e6),
             "height": bar_height - 8, "rank": a["rank"], "node": a["node"],
             "theta": a["strength_micro"] / 1e6, "score": a["score_micro"] / 1e6,
             "accepted": a["accepted"]}
            for i, a in enumerate(result["answers"])]
    return {"width": width, "height": len(bars) * bar_height + 8, "middle": width / 2,
            "bars": bars}


def register_routes(app: web.Application, api: Api, service: SwarmService, *,
                    jobs: JobService | None, miner: WorkSources | None) -> Explorer:
    """Mount the pages on ``app`` (the node's); the caller adds `Explorer.on_tip` as a tip
    listener."""
    explorer = Explorer(api, service, jobs=jobs, miner=miner)
    app.on_shutdown.append(explorer.on_shutdown)
    add = app.router.add_get
    add("/", explorer.overview)
    add("/block/{ref}", explorer.block)
    add("/tx/{tx_id}", explorer.tx)
    add("/account/{address}", explorer.account)
    add("/swarm", explorer.swarm)
    add("/round/{round_id}", explorer.round)
    add("/jobs", explorer.jobs_page)
    add("/chat", explorer.chat)
    add("/search", explorer.search)
    add("/explorer/events", explorer.events)
    add("/explorer/blocks", explorer.blocks_json)
    add("/explorer/static/{name}", explorer.static_file)
    return explorer
