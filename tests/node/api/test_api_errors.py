"""Malformed HTTP gets a JSON 4xx with a stable reason on every route, a bug gets a logged JSON
500 with a request id, and the server's limits (header timeout, body timeout, connections
per IP) hold: on a real node over real sockets on 127.0.0.1 (issue 12)."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core.errors import EncodingError
from node.api.auth import read_token
from node.api.errors import MAX_JSON_DEPTH, ApiError, HttpLimits, json_depth, parse_json
from node.node import Node
from tests.framework.apidocs import SPEC, spec_routes
from tests.framework.nodes import LiveNode, node_config, wired
from tests.framework.util import wait_for

NESTED = b"[" * 1500 + b"]" * 1500
WAIT = 30.0  # generous bound on waiting for an event (never a timing assertion)


async def started(tmp_path: Path, limits: HttpLimits | None = None,
                  routes: list[web.RouteDef] | None = None) -> Node:
    """A wired node (every route) with ``limits`` and extra ``routes``, started."""
    node = wired(node_config(tmp_path, "node"))
    if limits is not None:
        node.http_limits = limits
    if routes:
        node.app.add_routes(routes)
    await node.start()
    return node


def reason_of(path: str, body: Any) -> str:
    """The stable code of an error body: one shape on every route, OpenAI's, with the code
    also at the top level as ``reason`` (issue 13)."""
    assert isinstance(body, dict), body
    error = body["error"]
    assert set(error) >= {"message", "type", "param", "code"}, (path, body)
    assert isinstance(error["message"], str) and error["message"], (path, body)
    assert body["reason"] == error["code"], (path, body)
    return str(error["code"])


async def error_of(response: aiohttp.ClientResponse, path: str) -> tuple[int, str]:
    """(status, reason) of a JSON error response; fails on anything else."""
    assert response.content_type == "application/json", (path, await response.text())
    return response.status, reason_of(path, await response.json())


POST_ROUTES = sorted(path for path, method in spec_routes(SPEC.read_text()) if method == "POST")


def test_encoding_error_is_a_value_error() -> None:
    # decoders of untrusted bytes raise one family: hex, JSON and canonical encodings alike
    assert issubclass(EncodingError, ValueError)
    with pytest.raises(ValueError):
        raise EncodingError("not canonical")


async def test_deeply_nested_json_is_a_400_on_every_post_route(
        node: LiveNode, client: aiohttp.ClientSession) -> None:
    assert len(POST_ROUTES) >= 6, POST_ROUTES  # the spec's POST routes, not a stale list
    for path in POST_ROUTES:
        async with client.post(path, data=NESTED, headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {read_token(node.config.datadir)}"}) as response:
            status, reason = await error_of(response, path)
        assert status == 400, (path, status, reason)
        assert reason in ("bad_json", "invalid_json", "bad_request"), (path, reason)


async def test_broken_bodies_are_400s(node: LiveNode, client: aiohttp.ClientSession) -> None:
    # a Content-Encoding the body does not have
    for encoding in ("gzip", "deflate"):
        async with client.post("/api/v1/txs", data=b"not compressed at all", headers={
                "Content-Type": "application/json",
                "Content-Encoding": encoding}) as response:
            assert await error_of(response, "/api/v1/txs") == (400, "bad_body")
    # a real gzip body is fine (and then judged on its content)
    async with client.post("/api/v1/txs", data=gzip.compress(b'{"tx": "zz"}'), headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"}) as response:
        assert await error_of(response, "/api/v1/txs") == (400, "bad_encoding")
    # multipart without a boundary, or with one the body never uses
    for content_type in ("multipart/form-data", "multipart/form-data; boundary=zz"):
        async with client.post("/api/v1/jobs/matmul", data=b"--x\r\n\r\n", headers={
                "Content-Type": content_type}) as response:
            status, reason = await error_of(response, "/api/v1/jobs/matmul")
        assert (status, reason) == (400, "bad_multipart"), content_type
    # NaN is not JSON; neither is an integer of 5000 digits (past Python's int limit)
    for body in (b'{"tx": NaN}', b'{"tx": ' + b"9" * 5000 + b"}", b'{"tx": "\xff"}'):
        async with client.post("/api/v1/txs", data=body,
                                headers={"Content-Type": "application/json"}) as response:
            assert await error_of(response, "/api/v1/txs") == (400, "bad_json"), body


async def test_a_malformed_peer_address_is_bad_address(
        node: LiveNode, client: aiohttp.ClientSession) -> None:
    token = f"Bearer {read_token(node.config.datadir)}"
    for address in ("127.0.0.1:1:2", "127.0.0.1", ":80", "a b:80", "::1:80", "[1.2.3.4]:80",
                    "x" * 300 + ":80", "-bad-.example:80", "127.0.0.1:0", "127.0.0.1:65536"):
        async with client.post("/api/v1/peers", json={"address": address},
                                headers={"Authorization": token}) as response:
            assert await error_of(response, "/api/v1/peers") == (400, "bad_address"), address


async def test_aiohttp_errors_are_json(node: LiveNode, client: aiohttp.ClientSession) -> None:
    async with client.get("/api/v1/nowhere") as response:
        assert await error_of(response, "/api/v1/nowhere") == (404, "not_found")
    async with client.delete("/api/v1/status") as response:
        assert await error_of(response, "/api/v1/status") == (405, "method_not_allowed")
        assert "GET" in response.headers["Allow"]
    async with client.get("/v1/nowhere") as response:  # the OpenAI shape under /v1/
        assert await error_of(response, "/v1/nowhere") == (404, "not_found")
    async with client.get("/nowhere") as response:  # outside the API too
        assert await error_of(response, "/nowhere") == (404, "not_found")
    async with client.get("/") as response:  # the root is the explorer's page (issue 15)
        assert response.status == 200 and response.content_type == "text/html"
    async with client.get("/p2p") as response:  # a peer route without the WebSocket upgrade
        status, _ = await error_of(response, "/p2p")
        assert 400 <= status < 500


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()


def parse_response(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


async def test_malformed_http_is_answered_in_json(node: LiveNode) -> None:
    for request in (b"GARBAGE\r\n\r\n", b"GET /api/v1/status HTTP/1.1\r\nBad Header\r\n\r\n",
                    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 9000 + b"\r\n\r\n",
                    b"POST /api/v1/txs HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                    b"POST /api/v1/txs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                    b"\r\nzz\r\n"):
        status, headers, body = parse_response(await raw_exchange(node.node.port, request))
        assert 400 <= status < 500 and headers["content-type"].startswith("application/json")
        assert reason_of("/", body) == body["reason"], body


async def test_a_bug_is_a_logged_json_500_with_a_request_id(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug in a handler")

    node = await started(tmp_path, routes=[web.get("/api/v1/broken", broken),
                                           web.get("/v1/broken", broken)])
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/api/v1/broken", "/v1/broken"):
                with caplog.at_level(logging.ERROR, logger="pouwchain.api"):
                    async with session.get(f"http://127.0.0.1:{node.port}{path}") as response:
                        assert await error_of(response, path) == (500, "internal")
                        body = await response.json()
                request_id = body.get("request_id") or body["error"]["request_id"]
                assert response.headers["X-Request-Id"] == request_id
                assert "Traceback" not in json.dumps(body)
                logged = [r for r in caplog.records if request_id in r.getMessage()]
                assert logged and logged[0].exc_info is not None  # the log has the traceback
    finally:
        await node.stop()


async def test_slowloris_headers_are_cut_at_the_header_timeout(tmp_path: Path) -> None:
    node = await started(tmp_path, HttpLimits(header_timeout=1.0))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        closed = asyncio.Event()

        async def trickle() -> None:
            """One byte of a never-ending header every 0.2 s, until the server hangs up."""
            writer.write(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            while not closed.is_set():
                writer.write(b"a")
                try:
                    await writer.drain()
                except ConnectionError:
                    return
                await asyncio.sleep(0.2)

        sender = asyncio.create_task(trickle())
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # closed, nothing answered
        closed.set()
        await sender
        writer.close()
        # a prompt client on the same server is served as usual
        status, _, body = parse_response(await raw_exchange(
            node.port, b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        assert status == 200 and body["height"] == 0
    finally:
        await node.stop()


async def test_a_slow_body_is_a_408(tmp_path: Path) -> None:
    node = await started(tmp_path, HttpLimits(body_timeout=1.0))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(b"POST /api/v1/txs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 1000\r\n\r\n{\"tx\": \"")
        await writer.drain()  # ... and the other 992 bytes never come
        status, headers, body = parse_response(await asyncio.wait_for(reader.read(), WAIT))
        writer.close()
        assert (status, body["reason"]) == (408, "body_timeout")
        assert headers["connection"].lower() == "close"
    finally:
        await node.stop()


async def test_connections_per_ip_are_capped(tmp_path: Path) -> None:
    node = await started(tmp_path, HttpLimits(max_connections_per_ip=2))
    gate = node.http_gate
    assert gate is not None
    try:
        held = [await asyncio.open_connection("127.0.0.1", node.port) for _ in range(2)]
        await wait_for(lambda: gate.open["127.0.0.1"] == 2)
        status, headers, body = parse_response(await raw_exchange(
            node.port, b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert (status, body["reason"]) == (429, "too_many_connections")
        assert headers["connection"].lower() == "close"
        assert gate.refused == 1
        held[0][1].close()  # one of the two hangs up: a new connection fits again
        await wait_for(lambda: gate.open["127.0.0.1"] == 1)
        status, _, body = parse_response(await raw_exchange(
            node.port, b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        assert status == 200 and body["height"] == 0
        held[1][1].close()
        await wait_for(lambda: "127.0.0.1" not in gate.open)
    finally:
        await node.stop()


async def test_a_client_that_never_reads_is_aborted_at_the_write_timeout(
        tmp_path: Path) -> None:
    node = await started(tmp_path, HttpLimits(write_timeout=1.0))
    gate = node.http_gate
    assert gate is not None
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", node.port))
        _, writer = await asyncio.open_connection(sock=sock)
        # thousands of pipelined requests (megabytes of answers), none of them read
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 4000)
        await writer.drain()
        await wait_for(lambda: gate.open.get("127.0.0.1") == 1)
        # the node's send buffer fills, the write stalls, the node aborts the connection
        await wait_for(lambda: "127.0.0.1" not in gate.open, WAIT,
                       message="the stalled connection to be aborted")
        writer.close()
    finally:
        await node.stop()


def test_json_depth_is_checked_before_parsing_whatever_the_recursion_limit() -> None:
    """A library that raises the recursion limit on import (py_ecc sets 100000) must not let
    a nested body overflow the C stack in ``json.loads``: the depth is counted first."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        for raw in (b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 600 + b"1" + b"}" * 600):
            with pytest.raises(ApiError) as err:
                parse_json(raw)
            assert err.value.status == 400 and "deeper than" in err.value.message
    finally:
        sys.setrecursionlimit(limit)
    assert json_depth(b"[" * 600 + b'"' + b"[" * 900 + b'\\""' + b"]" * 600) == 600
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
