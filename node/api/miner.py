"""HTTP routes of the miner and the matmul job service (`node.builder` registers them).

- ``POST /api/v1/jobs/matmul``: multipart fields ``a``, ``b`` (.npy files) and ``tx`` (the
  signed JobRequest, canonical bytes as hex, base64 or raw), or a JSON object
  ``{"a": <npy base64>, "b": <npy base64>, "tx": <hex or base64>}``. Answers 202 with the
  job's view. Errors are JSON ``{"error", "reason"}`` with 400/409/413/415/503.
- ``GET /api/v1/jobs/{id}``: status (queued/running/done/failed), the exact product
  (``product_npy_b64``, int32 .npy) when done, who computed it and the on-chain record; for
  a job submitted to another node, status ``elsewhere`` and the on-chain record only.
- ``GET /api/v1/jobs``: the jobs this node holds (no products), newest first.
- ``GET /api/v1/miner``: the miner's stats.
- ``POST /api/v1/miner/generate`` ``{"count": n}`` (bearer token): mine n blocks now and
  return their ids (functional tests, like Bitcoin's ``generate``).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Protocol

import numpy as np
from aiohttp import BodyPartReader, web

from consensus.tx import Transaction
from core.errors import EncodingError
from node.api.auth import TokenAuth, read_token
from node.api.chain import API_KEY, decode_blob
from node.api.errors import ApiError, read_json, receiving
from node.chain.chainstore import ChainStore
from node.mining.jobs import JobInputError, JobService, load_matrix, npy_bytes
from node.mining.miner import Miner

API_PREFIX = "/api/v1"
MAX_GENERATE = 1000


def _tx(raw: bytes) -> Transaction:
    try:
        return Transaction.decode(raw)
    except EncodingError as exc:
        raise ApiError(400, "bad_tx", f"tx: not a canonical transaction: {exc.message}") from exc


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await part.read_chunk(1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"field {part.name!r} larger than {limit} bytes")
        chunks.append(chunk)


async def _multipart_fields(request: web.Request, limit: int) -> dict[str, bytes]:
    """Fields a, b and tx of a multipart body, each at most ``limit`` bytes; a body that is
    not multipart (no boundary, broken framing, an unknown field) is a 400."""
    fields: dict[str, bytes] = {}
    async with receiving(request):
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name not in ("a", "b", "tx"):
                    raise ApiError(400, "bad_field", "multipart fields are a, b and tx")
                if part.name in fields:
                    raise ApiError(400, "bad_field", f"field {part.name!r} sent twice")
                fields[part.name] = await _read_part(part, limit)
        except (ValueError, LookupError, RuntimeError, AssertionError) as exc:
            # aiohttp's multipart reader on a missing boundary or broken framing
            raise ApiError(400, "bad_multipart", f"not a multipart/form-data body: {exc}") \
                from exc
    return fields


class DatadirConfig(Protocol):
    @property
    def datadir(self) -> Path: ...


class MinerApiNode(Protocol):
    """What the miner routes read of the node (`node.node.Node` provides it)."""

    @property
    def config(self) -> DatadirConfig: ...
    @property
    def chain(self) -> ChainStore: ...
    @property
    def miner(self) -> Miner | None: ...


class MinerApi:
    """Handlers bound to one node's miner and job service."""

    def __init__(self, node: MinerApiNode, *, miner: Miner, jobs: JobService) -> None:
        self.node = node
        self.miner = miner
        self.jobs = jobs

    def _check_token(self, request: web.Request) -> None:
        api = request.app.get(API_KEY)  # the chain API holds the node's token checker
        auth = api.auth if api is not None else None
        if auth is None:
            try:
                auth = TokenAuth(read_token(Path(self.node.config.datadir)))
            except OSError as exc:
                raise ApiError(503, "no_token", "the node has no API token yet") from exc
        auth.check(request)

    async def post_matmul(self, request: web.Request) -> web.Response:
        limit = self.jobs.limits.max_matrix_bytes
        fields: dict[str, bytes] = {}
        if request.content_type.startswith("multipart/"):
            fields = await _multipart_fields(request, limit)
            tx_field = fields.get("tx", b"")
            try:
                tx_raw = decode_blob(tx_field.decode("ascii"), what="tx")
            except (UnicodeDecodeError, ApiError):
                tx_raw = tx_field  # raw canonical bytes
        elif request.content_type == "application/json":
            obj = await read_json(request, limit=2 * (limit * 4 // 3 + 4) + 65536,
                                  too_large="too_large")
            if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str)
                                                    for k in ("a", "b", "tx")):
                raise ApiError(400, "bad_json",
                               'expected {"a": npy base64, "b": npy base64, "tx": hex/base64}')
            for name in ("a", "b"):
                fields[name] = decode_blob(obj[name], what=name)
            tx_raw = decode_blob(obj["tx"], what="tx")
            fields["tx"] = tx_raw
        else:
            raise ApiError(415, "unsupported_media_type",
                           "send multipart/form-data (a, b, tx) or application/json")
        missing = [name for name in ("a", "b", "tx") if not fields.get(name)]
        if missing:
            raise ApiError(400, "missing_field", f"missing fields: {', '.join(missing)}")
        tx = _tx(tx_raw)
        try:
            a = load_matrix(fields["a"], "a", max_bytes=limit)
            b = load_matrix(fields["b"], "b", max_bytes=limit)
            job = await self.jobs.submit(a, b, tx)
        except JobInputError as exc:
            raise ApiError(exc.status, exc.reason, exc.message) from exc
        return web.json_response(self.jobs.describe(job, with_product=False), status=202)

    async def get_job(self, request: web.Request) -> web.Response:
        text = request.match_info["job_id"]
        try:
            job_id = bytes.fromhex(text)
        except ValueError:
            job_id = b""
        if len(job_id) != 32:
            raise ApiError(400, "bad_job_id", "job id must be 64 hex digits")
        job = self.jobs.jobs.get(job_id)
        if job is not None:
            return web.json_response(self.jobs.describe(job))
        record = self.jobs.describe_record(job_id)
        if record is None:
            raise ApiError(404, "job_not_found", f"unknown job {text}")
        return web.json_response(record)

    async def get_jobs(self, request: web.Request) -> web.Response:
        return web.json_response({"jobs": self.jobs.summaries(), "stats": self.jobs.stats()})

    async def get_miner(self, request: web.Request) -> web.Response:
        stats = self.miner.stats()
        stats["enabled"] = self.node.miner is not None
        stats["jobs"] = self.jobs.stats()
        return web.json_response(stats)

    async def post_generate(self, request: web.Request) -> web.Response:
        self._check_token(request)
        obj = await read_json(request, limit=4096, too_large="too_large", empty={})
        count = obj.get("count", 1) if isinstance(obj, dict) else None
        if type(count) is not int or not 1 <= count <= MAX_GENERATE:
            raise ApiError(400, "bad_count", f"count must be an integer in [1, {MAX_GENERATE}]")
        timeout = 30.0 + 2.0 * count
        try:
            ids = await self.miner.generate(count, timeout=timeout)
        except TimeoutError as exc:
            raise ApiError(504, "timeout", f"{count} blocks not mined in {timeout:.0f} s") from exc
        return web.json_response({"blocks": ids, "height": int(self.node.chain.height)})


def register(app: web.Application, node: MinerApiNode, *, miner: Miner,
             jobs: JobService) -> MinerApi:
    """Add the job and miner routes to ``app``."""
    api = MinerApi(node, miner=miner, jobs=jobs)
    p = API_PREFIX
    app.router.add_post(f"{p}/jobs/matmul", api.post_matmul)
    app.router.add_get(f"{p}/jobs", api.get_jobs)
    app.router.add_get(f"{p}/jobs/{{job_id}}", api.get_job)
    app.router.add_get(f"{p}/miner", api.get_miner)
    app.router.add_post(f"{p}/miner/generate", api.post_generate)
    return api


def npy_b64(x: np.ndarray) -> str:
    """Client helper: an array as base64 .npy (the JSON form of the matmul route)."""
    return base64.b64encode(npy_bytes(x)).decode()
