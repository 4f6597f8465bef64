"""The node's HTTP listener: aiohttp's request handler with the node's limits (`HttpLimits`).

aiohttp serves each connection with a `RequestHandler` (its asyncio protocol). The node
listens with `GatedRequestHandler`, which adds what aiohttp lacks, at the connection level:

- **Header timeout.** aiohttp's keep-alive timer closes a connection that is waiting for a
  request once it fires, and it runs from the moment the connection opens and from each
  response, whatever bytes trickle in meanwhile. Set to ``header_timeout``, it closes a
  client that has not sent a complete request head in time (slowloris: one header byte every
  few seconds), and a keep-alive connection idle that long. A request being handled (or an
  upgraded WebSocket) is never cut by it.
- **Write timeout.** A client that stops reading (slow read: the node's send buffer stays
  full, so a response's write waits) is aborted after ``write_timeout``, freeing its socket
  even when the node already asked to close it (a close waits for the buffer to drain).
- **Per-IP connection cap.** One IP address holds at most ``max_connections_per_ip`` open
  connections; the next is answered ``429 too_many_connections`` (JSON) and closed.
- **JSON for aiohttp's own errors.** A malformed request line or header (answered before any
  handler or middleware runs) gets the same JSON error as every route (`error_body`), never
  aiohttp's plain text, and is logged at debug level (it is the client's mistake).

The body timeout is the handlers' (`node.api.errors.receiving`): a body is read inside one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from node.api.errors import (
    HttpLimits,
    error_body,
    http_exception_response,
    internal_error,
    slug,
)

log = logging.getLogger("pouwchain.api")


class ConnectionGate:
    """Open connections per IP address, admitted up to a cap."""

    def __init__(self, max_per_ip: int) -> None:
        self.max_per_ip = max_per_ip
        self.open: Counter[str] = Counter()
        self.refused = 0  # connections answered 429 (metrics, tests)

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip``; False (not counted) once it holds the cap."""
        if self.open[ip] >= self.max_per_ip:
            self.refused += 1
            return False
        self.open[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]


def _raw_response(status: int, phrase: str, body: dict[str, Any]) -> bytes:
    """A complete HTTP/1.1 response that closes the connection (written before aiohttp has
    parsed anything)."""
    payload = json.dumps(body).encode()
    head = (f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n")
    return head.encode() + payload


class GatedRequestHandler(RequestHandler):
    """aiohttp's connection protocol with the node's connection cap and JSON parse errors."""

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop,
                 gate: ConnectionGate, write_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._gate = gate
        self._counted_ip: str | None = None
        self._write_timeout = write_timeout
        self._write_timer: asyncio.TimerHandle | None = None
        # the socket itself: aiohttp forgets it on close() while it still flushes
        self._socket_transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if isinstance(transport, asyncio.Transport):
            self._socket_transport = transport
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self._gate.admit(ip):
            self._counted_ip = ip
            return
        body = error_body("/", 429, "too_many_connections",
                          f"more than {self._gate.max_per_ip} open connections from {ip}")
        if self.transport is not None:
            self.transport.write(_raw_response(429, "Too Many Requests", body))
        self.force_close()

    def pause_writing(self) -> None:
        """The send buffer is full: the client must read within the write timeout."""
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self._loop.call_later(self._write_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_stalled(self) -> None:
        self._write_timer = None
        if self._socket_transport is not None:
            log.debug("http.write_timeout %s", self._counted_ip)
            self._socket_transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._socket_transport = None
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        if self._counted_ip is not None:
            self._gate.release(self._counted_ip)
            self._counted_ip = None
        super().connection_lost(exc)

    async def finish_response(self, request: web.BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        """An aiohttp error raised outside the app's middlewares (an ``Expect`` header it
        refuses, say) is JSON too."""
        if isinstance(resp, web.HTTPException) and resp.status >= 400 and \
                resp.content_type != "application/json":
            resp = http_exception_response(request, resp)
            resp.force_close()
        return await super().finish_response(request, resp, start_time)

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """A body the client broke (bad Content-Encoding, truncated chunks) surfaces again
        when aiohttp drains it after the response: the client's mistake, logged at debug."""
        if isinstance(kwargs.get("exc_info"), RequestPayloadError | HttpProcessingError):
            self.logger.debug(*args, **kwargs)
            return
        super().log_exception(*args, **kwargs)

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse or handle, as JSON."""
        if request.writer.output_size > 0:
            raise ConnectionError("the response started: no error response can follow")
        if status >= 500:
            response = internal_error(request, exc)
        else:
            log.debug("http.bad_request %s %s", status, message or exc)
            reason = "bad_http" if status == 400 else slug(HTTPStatus(status).phrase)
            text = (message or str(exc or "bad request")).splitlines()[0][:200]
            response = web.json_response(error_body(request.path, status, reason, text),
                                         status=status)
        response.force_close()
        return response


async def start_server(runner: web.AppRunner, host: str, port: int,
                       limits: HttpLimits) -> tuple[asyncio.Server, ConnectionGate]:
    """Listen on ``host:port`` for ``runner``'s app (set up) with ``limits``; the caller
    closes the returned server before ``runner.cleanup()``."""
    server = runner.server
    if server is None:
        raise RuntimeError("the runner is not set up")
    loop = asyncio.get_running_loop()
    gate = ConnectionGate(limits.max_connections_per_ip)

    def protocol() -> GatedRequestHandler:
        return GatedRequestHandler(server, loop=loop, gate=gate, access_log=None,
                                   keepalive_timeout=limits.header_timeout,
                                   write_timeout=limits.write_timeout)

    listener = await loop.create_server(protocol, host, port, backlog=128)
    return listener, gate
