"""The node's JSON HTTP API (``/api/v1``) and ``/metrics``, registered on the node's app.

Every failure a client can cause is a 4xx JSON body ``{"error": message, "reason": code}``
(never a 500): identifiers are parsed strictly, bodies are read with a per-route size and
time limit, and the error middleware turns aiohttp's own errors (unknown route, wrong method,
body over ``client_max_size``) into the same shape (`node.api.errors`). Routes that act as
the node (peers add/remove) require the bearer token from the data directory
(``node.api.auth``).

Binary values (ids, addresses, keys, signatures) are lowercase hex; 256-bit targets are
``0x`` hex strings; every other number is a JSON integer. Documented in docs/api.md and
docs/openapi.yaml (a test checks the two route sets agree).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import inspect
import ipaddress
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from aiohttp import web

from consensus.block import Block, BlockHeader
from consensus.tx import Transaction
from contracts.escrow import escrow_of
from core.errors import ConsensusError
from core.state import State
from node.api.auth import TokenAuth, create_token
from node.api.errors import (
    ApiError,
    install_error_handling,
    read_body,
    read_json_object,
)
from node.api.errors import (
    error_middleware as error_middleware,  # re-exported: apps that serve API routes alone
)
from node.api.metrics import (
    MetricsNode,
    MetricsSection,
    PeerLister,
    chain_facts,
    render_metrics,
)
from node.chain.chainstore import ChainStore
from node.chain.txindex import TxIndex, involved
from node.config import ConfigError, parse_address

API_PREFIX = "/api/v1"
MAX_SMALL_BODY = 64 * 1024  # JSON bodies of tx/peer routes (a tx is at most 8 KiB)
MAX_MEMPOOL_LIST = 1000
MAX_HISTORY = 1000  # transactions per GET /api/v1/accounts/{address}/txs
_HEX_RE = re.compile(r"^(0x)?[0-9a-fA-F]*$")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
                          r"(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")
T = TypeVar("T")


class PeersLike(PeerLister, Protocol):
    def connect(self, address: str) -> Awaitable[bytes] | bytes: ...
    def disconnect(self, node_id: bytes) -> Awaitable[bool] | bool: ...


class ApiNode(MetricsNode, Protocol):
    """What the API needs of the node (``node.node.Node`` provides it)."""

    @property
    def peers(self) -> PeersLike: ...
    def status(self) -> dict[str, Any]: ...
    async def submit_transaction(self, tx: Transaction) -> bytes: ...
    async def call_chain(self, fn: Callable[[], T]) -> T: ...


API_KEY: web.AppKey[Api] = web.AppKey("pouwchain_api", None)


# -- JSON views of consensus objects ---------------------------------------------------------

def _kind_name(cls: type) -> str:
    """``BeginUnstake`` -> ``begin_unstake``: the payload kind as clients name it."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def jsonable(value: Any) -> Any:
    """Bytes as hex, tuples as lists, dataclasses as objects, recursively."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, bool) or value is None or isinstance(value, int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def tx_json(tx: Transaction) -> dict[str, Any]:
    raw = tx.encode()
    return {
        "id": tx.id().hex(),
        "chain_id": tx.chain_id,
        "sender": tx.sender.hex(),
        "nonce": tx.nonce,
        "fee": tx.fee,
        "kind": _kind_name(type(tx.payload)),
        "kind_id": type(tx.payload).KIND_ID,
        "payload": jsonable(tx.payload),
        "signature": tx.signature.hex(),
        "size": len(raw),
        "raw": raw.hex(),
    }


def header_json(header: BlockHeader) -> dict[str, Any]:
    out = jsonable(header)
    out["target"] = f"0x{header.target:064x}"
    return dict(out)


def block_json(block: Block, *, chain: ChainStore, full_txs: bool) -> dict[str, Any]:
    header = block.header
    block_id = header.block_id()
    canonical = chain.block_id_at(header.height) == block_id
    return {
        "id": block_id.hex(),
        "height": header.height,
        "canonical": canonical,
        "confirmations": chain.height - header.height + 1 if canonical else 0,
        "size": len(block.encode()),
        "header": header_json(header),
        "tx_count": len(block.transactions),
        "txs": [tx_json(tx) if full_txs else tx.id().hex() for tx in block.transactions],
    }


# -- input parsing ---------------------------------------------------------------------------

def parse_hex32(text: str, *, what: str) -> bytes:
    """Exactly 32 bytes of hex (optional 0x), else a 400 naming ``what``."""
    body = text.removeprefix("0x")
    if len(body) != 64 or not _HEX_RE.match(body):
        raise ApiError(400, f"bad_{what}", f"{what} must be 64 hex digits, got {text[:80]!r}")
    return bytes.fromhex(body)


def decode_blob(text: str, *, encoding: str | None = None, what: str = "value") -> bytes:
    """Hex (optional 0x) or standard/url-safe base64 (padded); ``encoding`` forces one of
    them. ``what`` names the field in the error."""
    text = text.strip()
    if encoding not in (None, "hex", "base64"):
        raise ApiError(400, "bad_encoding", "encoding must be 'hex' or 'base64'")
    if encoding != "base64" and _HEX_RE.match(text) and len(text.removeprefix("0x")) % 2 == 0:
        return bytes.fromhex(text.removeprefix("0x"))
    if encoding == "hex":
        raise ApiError(400, "bad_hex", f"{what}: not an even number of hex digits")
    try:
        if "-" in text or "_" in text:
            return base64.b64decode(text, altchars=b"-_", validate=True)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "bad_encoding", f"{what}: neither hex nor base64: {exc}") from exc


def parse_peer_address(address: str) -> tuple[str, int]:
    """``host:port`` a peer can be dialled at: an IP address (IPv6 in brackets) or a DNS
    name, and a port; else ``400 bad_address`` (never a dial that cannot succeed)."""
    try:
        if len(address) > 256:
            raise ConfigError("longer than 256 characters")
        host, port = parse_address(address)
    except ConfigError as exc:
        raise ApiError(400, "bad_address", f"expected host:port: {exc}") from exc
    bracketed = address.startswith("[")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and (ip.version == 6) == bracketed:
        return host, port
    if ip is None and not bracketed and _HOSTNAME_RE.match(host):
        return host, port
    raise ApiError(400, "bad_address",
                   f"{host!r} is neither an IP address ([v6] in brackets) nor a host name")


def _query_flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "0").lower() in ("1", "true", "yes")


def _query_int(request: web.Request, name: str, *, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ApiError(400, f"bad_{name}", f"{name} must be an integer in [{low}, {high}]")
    return int(text)


# -- handlers --------------------------------------------------------------------------------

class Api:
    """The handlers, bound to one node."""

    def __init__(self, node: ApiNode, *, token: str) -> None:
        self.node = node
        self.auth = TokenAuth(token)
        self.token = token
        self.txindex = TxIndex(node.chain)
        # what other rooms add (`node.api.chat`: the swarm): a ``/api/v1/status`` section by
        # name, a ``/ready`` check by name (True, or False and why), ``/metrics`` families
        self.status_sections: dict[str, Callable[[], dict[str, Any]]] = {}
        self.ready_checks: dict[str, Callable[[], tuple[bool, str]]] = {
            "synced": self.synced}
        self.metric_sections: list[MetricsSection] = []
        self.started = time.monotonic()

    async def on_chain(self, fn: Callable[[], T]) -> T:
        """Run a read of store/mempool on the node's chain thread (their only writer), so it
        never sees a half-applied update.

        Peer and miner state belong to the event loop: read those here, never in ``fn``."""
        return await self.node.call_chain(fn)

    def status(self) -> dict[str, Any]:
        node = self.node
        chain = node.chain
        miner = node.miner
        mining: dict[str, Any] = {"enabled": miner is not None}
        if miner is not None:
            mining.update(jsonable(miner.stats()))
        base: dict[str, Any] = dict(jsonable(node.status()))  # node id, listen, ...
        tip = chain.tip_header  # one read: height, id and time of the same block
        return base | {
            "network": node.config.network,
            "chain_id": chain.params.chain_id,
            "genesis": chain.genesis_id.hex(),
            "height": tip.height,
            "tip": tip.block_id().hex(),
            "tip_timestamp": tip.timestamp,
            "peers": len(node.peers.info()),
            "syncing": bool(node.syncing),
            "sync_progress": float(node.sync_progress),
            "mempool": len(node.mempool),
            "mining": mining,
        } | {name: section() for name, section in self.status_sections.items()}

    def synced(self) -> tuple[bool, str]:
        """A ``/ready`` check: not catching up, and no connected peer announced a higher
        tip."""
        node = self.node
        if node.syncing:
            return False, f"syncing ({float(node.sync_progress):.0%})"
        best = int(node.best_peer_height or 0)
        if best > node.chain.height:
            return False, f"height {node.chain.height}, a peer announced {best}"
        return True, f"height {node.chain.height}"

    async def get_health(self, request: web.Request) -> web.Response:
        """``GET /health``: liveness (the event loop answers), nothing else checked."""
        return web.json_response({"status": "ok",
                                  "uptime_s": round(time.monotonic() - self.started, 1)})

    async def get_ready(self, request: web.Request) -> web.Response:
        """``GET /ready``: 200 once every check passes (synced; a swarm node registered and
        calibrated), else ``503 not_ready`` naming the failing checks."""
        checks = {name: check() for name, check in self.ready_checks.items()}
        view = {name: {"ok": ok, "detail": detail} for name, (ok, detail) in checks.items()}
        failing = [f"{name}: {detail}" for name, (ok, detail) in checks.items() if not ok]
        if failing:
            raise ApiError(503, "not_ready", "not ready: " + "; ".join(failing),
                           headers={"Retry-After": "5"}, extra={"checks": view})
        return web.json_response({"ready": True, "checks": view})

    async def get_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())  # attribute reads only: on the loop

    async def get_block(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        chain = self.node.chain
        if ref.isascii() and ref.isdigit() and len(ref) <= 20:
            block_id = chain.block_id_at(int(ref)) if int(ref) < 2**64 else None
            if block_id is None:
                raise ApiError(404, "block_not_found",
                               f"no block at height {ref} (tip is {chain.height})")
        elif len(ref.removeprefix("0x")) == 64:
            block_id = parse_hex32(ref, what="block_id")
        else:
            raise ApiError(400, "bad_block_ref",
                           "expected a height (decimal) or a block id (64 hex digits)")
        block = chain.get_block(block_id)
        if block is None:
            raise ApiError(404, "block_not_found", f"unknown block {block_id.hex()}")
        return web.json_response(block_json(block, chain=chain,
                                            full_txs=_query_flag(request, "txs")))

    async def get_tx(self, request: web.Request) -> web.Response:
        tx_id = parse_hex32(request.match_info["tx_id"], what="tx_id")
        pending = await self.on_chain(lambda: self.node.mempool.get(tx_id))
        if pending is not None:
            return web.json_response({"status": "pending", "tx": tx_json(pending)})
        await self.txindex.catch_up(run=self.on_chain)
        found = self.txindex.lookup(tx_id)
        if found is None:
            raise ApiError(404, "tx_not_found", f"transaction {tx_id.hex()} is neither pending "
                                                "nor on the canonical chain")
        return web.json_response({
            "status": "confirmed",
            "block": found.block_id.hex(),
            "height": found.height,
            "index": found.index,
            "confirmations": self.node.chain.height - found.height + 1,
            "tx": tx_json(found.tx),
        })

    async def post_tx(self, request: web.Request) -> web.Response:
        if request.content_type == "application/octet-stream":
            raw = await read_body(request, limit=MAX_SMALL_BODY)
        elif request.content_type in ("application/json", "text/plain",
                                      "application/x-www-form-urlencoded"):  # curl -d
            body = await read_json_object(request, limit=MAX_SMALL_BODY)
            text = body.get("tx")
            if not isinstance(text, str):
                raise ApiError(400, "missing_tx", 'expected {"tx": "<hex or base64>"}')
            encoding = body.get("encoding")
            if encoding is not None and not isinstance(encoding, str):
                raise ApiError(400, "bad_encoding", "encoding must be 'hex' or 'base64'")
            raw = decode_blob(text, encoding=encoding, what="tx")
        else:
            raise ApiError(415, "unsupported_media_type",
                           "send application/json or application/octet-stream")
        try:
            tx = Transaction.decode(raw)
        except ConsensusError as exc:
            raise ApiError(400, "encoding", f"not a canonical transaction: {exc.message}") from exc
        try:
            tx_id = await self.node.submit_transaction(tx)
        except ConsensusError as exc:
            raise ApiError(400, f"invalid:{exc.rule}",
                           f"transaction rejected: {exc.message}") from exc
        except Exception as exc:
            cause = exc.__cause__
            if isinstance(cause, ConsensusError):  # the node wrapped a consensus rule
                raise ApiError(400, f"invalid:{cause.rule}",
                               f"transaction rejected: {cause.message}") from exc
            reason = getattr(exc, "reason", None)
            if not isinstance(reason, str):
                raise
            raise ApiError(400, reason, f"transaction rejected: {exc}") from exc
        return web.json_response({"id": tx_id.hex(), "status": "pending"})

    async def get_account(self, request: web.Request) -> web.Response:
        address = parse_hex32(request.match_info["address"], what="address")
        return web.json_response(await self.on_chain(lambda: self.account(address)))

    def account(self, address: bytes) -> dict[str, Any]:
        chain = self.node.chain
        state = State(chain.state_view())
        account = state.account(address)
        stake = state.stake(address)
        swarm = state.swarm_node(address)
        escrow = escrow_of(state, address)
        pending = self.node.mempool.pending_of(address)
        return {
            "address": address.hex(),
            "height": chain.height,
            "balance": account.balance,
            "nonce": account.nonce,
            "next_nonce": account.nonce + len(pending),
            "pending_txs": len(pending),
            "stake": {
                "bonded": stake.bonded,
                "unbonding": [{"amount": u.amount, "release_height": u.release_height}
                              for u in stake.unbonding],
                "unbonding_total": sum(u.amount for u in stake.unbonding),
            },
            "escrow": {"locked": escrow.locked, "releasing": escrow.releasing,
                       "release_height": escrow.release_height},
            "reputation": state.reputation(address),
            "swarm_node": None if swarm is None else {
                "models": [m.hex() for m in swarm.models],
                "endpoint": swarm.endpoint.decode("utf-8", "replace"),
            },
        }

    async def get_account_txs(self, request: web.Request) -> web.Response:
        """``GET /api/v1/accounts/{address}/txs?limit=N``: what the address sent or received
        (a transfer's recipient), pending first, then confirmed, newest first."""
        address = parse_hex32(request.match_info["address"], what="address")
        limit = _query_int(request, "limit", default=100, low=1, high=MAX_HISTORY)
        listed = await self.account_history(address, limit)
        return web.json_response({"address": address.hex(), "height": self.node.chain.height,
                                  "txs": listed})

    async def account_history(self, address: bytes, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` newest transactions ``address`` sent or received, pending first
        (`get_account_txs`'s list; the explorer's account page shows it too)."""

        def pending() -> list[dict[str, Any]]:
            txs = [tx for tx in self.node.mempool.transactions() if address in involved(tx)]
            return [{"id": tx.id().hex(), "status": "pending", "height": None, "block": None,
                     "index": None, "direction": "out" if tx.sender == address else "in",
                     "tx": tx_json(tx)} for tx in reversed(txs)][:limit]

        listed = await self.on_chain(pending)
        await self.txindex.catch_up(run=self.on_chain)
        confirmed = await self.on_chain(
            lambda: self.txindex.history(address, limit - len(listed)) if len(listed) < limit
            else [])
        listed += [{"id": loc.tx.id().hex(), "status": "confirmed", "height": loc.height,
                    "block": loc.block_id.hex(), "index": loc.index,
                    "direction": "out" if loc.tx.sender == address else "in",
                    "tx": tx_json(loc.tx)} for loc in confirmed]
        return listed

    async def get_peers(self, request: web.Request) -> web.Response:
        peers = jsonable(self.node.peers.info())
        return web.json_response({"count": len(peers), "peers": peers})

    async def post_peer(self, request: web.Request) -> web.Response:
        self.auth.check(request)
        body = await read_json_object(request, limit=MAX_SMALL_BODY)
        address = body.get("address")
        if not isinstance(address, str):
            raise ApiError(400, "bad_address", 'expected {"address": "host:port"}')
        parse_peer_address(address)
        try:
            result = self.node.peers.connect(address)
            if inspect.isawaitable(result):
                result = await result
        except (ValueError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None)
            reason = reason if isinstance(reason, str) else "connect_failed"
            # the peer's machine is at fault (down, slow): 502; a refusal or bad input: 400
            far = isinstance(exc, OSError | TimeoutError) or reason in ("unreachable", "timeout")
            raise ApiError(502 if far else 400, reason,
                           f"could not connect to {address}: {exc}") from exc
        out: dict[str, Any] = {"connected": True, "address": address}
        if isinstance(result, bytes):
            out["node_id"] = result.hex()
        return web.json_response(out)

    async def delete_peer(self, request: web.Request) -> web.Response:
        self.auth.check(request)
        node_id = parse_hex32(request.match_info["node_id"], what="node_id")
        known = [p.get("node_id") for p in self.node.peers.info() if isinstance(p, dict)]
        if known and all(isinstance(k, str) for k in known) and node_id.hex() not in known:
            raise ApiError(404, "peer_not_found", f"no connected peer {node_id.hex()}")
        result = self.node.peers.disconnect(node_id)
        if inspect.isawaitable(result):
            result = await result
        if result is False:
            raise ApiError(404, "peer_not_found", f"no connected peer {node_id.hex()}")
        return web.json_response({"disconnected": True, "node_id": node_id.hex()})

    async def get_mempool(self, request: web.Request) -> web.Response:
        limit = _query_int(request, "limit", default=100, low=0, high=MAX_MEMPOOL_LIST)
        txs = await self.on_chain(self.node.mempool.transactions)
        sizes = [len(tx.encode()) for tx in txs]
        listed = [{"id": tx.id().hex(), "sender": tx.sender.hex(), "nonce": tx.nonce,
                   "fee": tx.fee, "kind": _kind_name(type(tx.payload)), "size": size}
                  for tx, size in zip(txs[:limit], sizes[:limit], strict=True)]
        return web.json_response({"count": len(txs), "bytes": sum(sizes), "txs": listed})

    async def get_metrics(self, request: web.Request) -> web.Response:
        facts = await self.on_chain(lambda: chain_facts(self.node))
        text = render_metrics(self.node, chain=facts, sections=self.metric_sections)
        return web.Response(text=text, content_type="text/plain",
                            headers={"X-Prometheus-Format": "0.0.4"})


def register_routes(app: web.Application, node: ApiNode, *, token: str | None = None) -> Api:
    """Add the API routes and error middleware to ``app``; writes a fresh API token.

    ``token`` defaults to a new random one written to ``<datadir>/api.token`` (mode 0600).
    """
    api = Api(node, token=token if token is not None else create_token(node.config.datadir))
    app[API_KEY] = api
    install_error_handling(app)
    p = API_PREFIX
    app.router.add_get(f"{p}/status", api.get_status)
    app.router.add_get(f"{p}/blocks/{{ref}}", api.get_block)
    app.router.add_get(f"{p}/txs/{{tx_id}}", api.get_tx)
    app.router.add_post(f"{p}/txs", api.post_tx)
    app.router.add_get(f"{p}/accounts/{{address}}", api.get_account)
    app.router.add_get(f"{p}/accounts/{{address}}/txs", api.get_account_txs)
    app.router.add_get(f"{p}/peers", api.get_peers)
    app.router.add_post(f"{p}/peers", api.post_peer)
    app.router.add_delete(f"{p}/peers/{{node_id}}", api.delete_peer)
    app.router.add_get(f"{p}/mempool", api.get_mempool)
    app.router.add_get("/metrics", api.get_metrics)
    app.router.add_get("/health", api.get_health)
    app.router.add_get("/ready", api.get_ready)
    return api
