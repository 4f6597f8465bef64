"""HTTP errors and request bodies: the one place every route reads its body and reports a
failure.

- `ApiError` is a failure the client caused (or, for 502/503/504, another machine): an HTTP
  status, a stable machine-readable ``reason`` and a message for humans.
- `error_middleware` renders it, aiohttp's own `web.HTTPException` (unknown route, wrong
  method, body over ``client_max_size``) and a broken body (bad ``Content-Encoding``,
  truncated chunks, a body timeout) as JSON in one shape on every route, OpenAI's:
  ``{"error": {"message", "type", "param", "code"}, "reason": code}`` (``reason`` repeats
  ``error.code`` for clients of the node API's older ``{"error": str, "reason": str}``). Any
  other exception is the node's bug: logged with a request id, answered ``500 internal``
  with that id (never a traceback, never plain text).
- `read_body` / `read_json` read a body with a size limit and a time limit (`HttpLimits`);
  `parse_json` refuses what ``json.loads`` refuses, nesting past its recursion limit and the
  non-JSON constants ``NaN``/``Infinity``.

Errors aiohttp writes before any handler runs (a malformed request line or header) are made
JSON by the server's request handler (`node.api.server`), with the same `error_body`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

log = logging.getLogger("pouwchain.api")



@dataclasses.dataclass(frozen=True)
class HttpLimits:
    """Time and connection limits of the node's HTTP server (docs/api.md, "Limits").

    ``header_timeout``: a connection must deliver a complete request line and headers within
    this many seconds of opening, or of its previous response (a keep-alive connection idle
    this long is closed too). ``body_timeout``: a handler gets the whole body within this many
    seconds of starting to read it (``408 body_timeout``). ``max_connections_per_ip``: open
    connections from one IP address; one more is answered ``429 too_many_connections`` and
    closed (peers' WebSockets count too). ``write_timeout``: a client that reads nothing of
    what the node sends it for this long (the send buffer stays full) is disconnected.
    """

    header_timeout: float = 20.0
    body_timeout: float = 60.0
    max_connections_per_ip: int = 128
    write_timeout: float = 60.0

    def __post_init__(self) -> None:
        if not (self.header_timeout > 0 and self.body_timeout > 0 and self.write_timeout > 0):
            raise ValueError("HTTP timeouts must be positive")
        if self.max_connections_per_ip < 1:
            raise ValueError("max_connections_per_ip must be at least 1")


LIMITS_KEY: web.AppKey[HttpLimits] = web.AppKey("pouwchain_http_limits", HttpLimits)
# set on a request once its response started (headers sent): no error response can follow
_STARTED_KEY: web.RequestKey[bool] = web.RequestKey("pouwchain_response_started", bool)


class ApiError(Exception):
    """An API failure with an HTTP status, a machine-readable ``reason`` and a message;
    ``param`` names the offending field; ``extra``: more fields under ``error``."""

    def __init__(self, status: int, reason: str, message: str, *,
                 headers: Mapping[str, str] | None = None, param: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = dict(headers or {})
        self.param = param
        self.extra = dict(extra or {})
        super().__init__(f"{status} {reason}: {message}")


# -- rendering -------------------------------------------------------------------------------

def error_type(status: int) -> str:
    """OpenAI's ``error.type`` for an HTTP status."""
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            429: "rate_limit_error"}.get(status, "invalid_request_error")


def error_body(path: str, status: int, reason: str, message: str, *,
               param: str | None = None, request_id: str | None = None,
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON error of every route (OpenAI's shape; ``reason`` repeats the code for the
    node API's older clients). ``extra``: more fields under ``error`` (a failed round's
    ``round_id`` and abstentions). ``path`` is kept for callers; the shape no longer
    depends on it."""
    error: dict[str, Any] = {"message": message, "type": error_type(status), "param": param,
                             "code": reason}
    if request_id is not None:
        error["request_id"] = request_id
    if extra:
        error.update(extra)
    return {"error": error, "reason": reason}


def error_response(request: web.BaseRequest, status: int, reason: str, message: str, *,
                   headers: Mapping[str, str] | None = None, param: str | None = None,
                   request_id: str | None = None,
                   extra: Mapping[str, Any] | None = None) -> web.Response:
    """The JSON error; a ``Connection: close`` header closes the connection after it."""
    more_headers = dict(headers or {})
    close = more_headers.pop("Connection", "").lower() == "close"
    response = web.json_response(
        error_body(request.path, status, reason, message, param=param, request_id=request_id,
                   extra=extra),
        status=status, headers=more_headers)
    if close:
        response.force_close()  # aiohttp then sends Connection: close itself
    return response


def slug(text: str) -> str:
    """``"Method Not Allowed"`` -> ``method_not_allowed``: a reason from an HTTP phrase."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "error"


def http_exception_response(request: web.BaseRequest, exc: web.HTTPException) -> web.Response:
    """aiohttp's own 4xx/5xx (no route, wrong method, too large...) as our JSON."""
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    if exc.status == 404 and message == exc.reason:  # the router's: no such route
        message = f"Invalid URL ({request.method} {request.path[:200]}): no such route"
        message += ("; the OpenAI-compatible routes are POST /v1/chat/completions, POST "
                    "/v1/completions and GET /v1/models" if request.path.startswith("/v1/") else
                    "; docs/api.md lists the routes")
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    reason = "body_too_large" if exc.status == 413 else slug(exc.reason)
    return error_response(request, exc.status, reason, message or exc.reason, headers=headers)


def internal_error(request: web.BaseRequest, exc: BaseException | None) -> web.Response:
    """A logged 500 with a request id (the log line has the traceback, the client the id)."""
    request_id = secrets.token_hex(8)
    log.error("http.internal_error request_id=%s %s %s", request_id, request.method,
              request.path, exc_info=exc)
    return error_response(request, 500, "internal",
                          f"internal error (request id {request_id}, in the node's log)",
                          request_id=request_id, headers={"X-Request-Id": request_id})


async def _on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    request[_STARTED_KEY] = True


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    """Every failure of every route as a JSON error (module docstring)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(request, exc.status, exc.reason, exc.message,
                              headers=exc.headers, param=exc.param, extra=exc.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_exception_response(request, exc)
    except (RequestPayloadError, HttpProcessingError) as exc:  # a body aiohttp cannot decode
        return error_response(request, 400, "bad_body", f"unreadable body: {_first_line(exc)}",
                              headers={"Connection": "close"})
    except ConnectionError:
        raise  # the client left: nobody to answer
    except Exception as exc:
        if request.get(_STARTED_KEY):
            raise  # a streamed response is under way: aiohttp logs it and drops the connection
        return internal_error(request, exc)


def install_error_handling(app: web.Application) -> None:
    """Put `error_middleware` on ``app`` (once, outermost) and note when responses start."""
    if error_middleware not in app.middlewares:
        app.middlewares.insert(0, error_middleware)
        app.on_response_prepare.append(_on_response_prepare)


def _first_line(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").strip()
    return re.sub(r"\s+", " ", text)[:200]


# -- bodies ----------------------------------------------------------------------------------

def _limits(request: web.Request) -> HttpLimits:
    return request.app.get(LIMITS_KEY) or HttpLimits()


@contextlib.asynccontextmanager
async def receiving(request: web.Request) -> AsyncIterator[None]:
    """Bound reading ``request``'s body by the server's body timeout (``408 body_timeout``);
    a body that does not decode is a ``400 bad_body``. Wrap every read of a body in it."""
    seconds = _limits(request).body_timeout
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise ApiError(408, "body_timeout", f"the body did not arrive within {seconds:g} s",
                       headers={"Connection": "close"}) from exc
    except (RequestPayloadError, HttpProcessingError) as exc:
        raise ApiError(400, "bad_body", f"unreadable body: {_first_line(exc)}",
                       headers={"Connection": "close"}) from exc


async def read_body(request: web.Request, *, limit: int,
                    too_large: str = "body_too_large") -> bytes:
    """The whole body, refusing more than ``limit`` bytes (413 ``too_large``) even without a
    Content-Length, and a body slower than the body timeout (408)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, too_large, f"body of {request.content_length} bytes > {limit}",
                       headers={"Connection": "close"})
    data = bytearray()
    async with receiving(request):
        async for chunk in request.content.iter_chunked(1 << 16):
            data += chunk
            if len(data) > limit:
                raise ApiError(413, too_large, f"body larger than {limit} bytes",
                               headers={"Connection": "close"})
    return bytes(data)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: deepest JSON nesting a body may have: checked before parsing, so a hostile body never
#: depends on the interpreter's recursion limit (a library that raises it, as py_ecc does
#: on import, would let ``json.loads`` overflow the C stack instead of raising)
MAX_JSON_DEPTH = 512
_JSON_STRUCTURE = re.compile(rb'\\.|["\[\]{}]')


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (strings skipped), without
    parsing it; cheap when ``raw`` has few brackets."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return raw.count(b"[") + raw.count(b"{")  # an upper bound is enough here
    depth = deepest = 0
    in_string = False
    for match in _JSON_STRUCTURE.finditer(raw):
        token = match.group()
        if token == b'"':
            in_string = not in_string
        elif in_string or len(token) == 2:  # inside a string, or an escape
            continue
        elif token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(raw: bytes, *, bad: str = "bad_json") -> Any:
    """``raw`` as JSON, else a 400 with reason ``bad`` (not UTF-8, not JSON, nested past
    `MAX_JSON_DEPTH`, an integer past Python's digit limit, NaN or Infinity)."""
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise ApiError(400, bad, f"body is not JSON: nested deeper than {MAX_JSON_DEPTH} "
                                 "levels")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError as exc:
        raise ApiError(400, bad, "body is not JSON: nested too deep") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        raise ApiError(400, bad, f"body is not JSON: {_first_line(exc)}") from exc


async def read_json(request: web.Request, *, limit: int, too_large: str = "body_too_large",
                    empty: Any = None, bad: str = "bad_json") -> Any:
    """The body as JSON (`read_body`, `parse_json`); an empty body is ``empty``."""
    raw = await read_body(request, limit=limit, too_large=too_large)
    return empty if not raw.strip() else parse_json(raw, bad=bad)


async def read_json_object(request: web.Request, *, limit: int,
                           too_large: str = "body_too_large") -> dict[str, Any]:
    """The body as a JSON object, else ``400 bad_json``."""
    value = await read_json(request, limit=limit, too_large=too_large)
    if not isinstance(value, dict):
        raise ApiError(400, "bad_json", "body must be a JSON object")
    return value
