"""The one client of the node's HTTP API (stdlib only, blocking): the CLI and the testnet.

`request` sends one JSON request and raises `HttpError` for an error status (connection
errors propagate: callers polling a starting or stopping node catch them); the launcher's
status table and the functional tests use it (through `testnet.client`). `ApiClient`, for
the CLI commands, turns the API's JSON errors (``{"error": {"message", "code"}}`` or
``{"error", "reason"}``), timeouts and connection failures into one exception type, so a
command can print a clear line and exit non-zero.
Blocking on purpose: its users are sequential scripts, and a timeout on every call keeps
them bounded.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_NODE_URL = "http://127.0.0.1:7645"
NODE_ENV = "POUWCHAIN_NODE"


def _node_json_api(datadir: Path) -> str:
    path = Path(datadir) / "node.json"
    try:
        api = json.loads(path.read_text())["api"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ApiClientError(0, "no_node_json",
                             f"cannot read the node's address from {path} "
                             f"(is a node running with --datadir {datadir}?): {exc}") from exc
    if not isinstance(api, str):
        raise ApiClientError(0, "no_node_json", f"{path} has no 'api' URL")
    return api


def node_url(*, node: str | None, datadir: Path | None, configured: str | None = None,
             default_datadir: Path | None = None) -> str:
    """The API URL to use, the same for every command: ``--node``; else, for an explicit
    ``--datadir``, that datadir's configured node (client.toml's ``node``, passed as
    ``configured``) or its running node's ``node.json`` (its port may be random; an error if
    there is none); else ``$POUWCHAIN_NODE``; else ``configured``; else the node.json in
    ``default_datadir`` if a node runs there; else http://127.0.0.1:7645."""
    if node:
        return node
    if datadir is not None:
        return configured or _node_json_api(datadir)
    env = os.environ.get(NODE_ENV)
    if env:
        return env
    if configured:
        return configured
    if default_datadir is not None and (Path(default_datadir) / "node.json").exists():
        try:
            return _node_json_api(default_datadir)
        except ApiClientError:
            pass  # a stale or partial file: fall back to the default address
    return DEFAULT_NODE_URL


class HttpError(Exception):
    """The node answered with an HTTP error status (``status``, decoded ``body``)."""

    def __init__(self, method: str, url: str, status: int, body: Any, *,
                 phrase: str = "", retry_after: str | None = None) -> None:
        super().__init__(f"{method} {url} -> {status}: {body}")
        self.status = status
        self.body = body
        self.phrase = phrase  # the status line's reason phrase ("Not Found")
        self.retry_after = retry_after  # the Retry-After header (a 503 of a forming swarm)


def request(base_url: str, method: str, path: str, *, token: str | None = None,
            body: Any = None, timeout: float = 10.0, raw: bool = False,
            headers: dict[str, str] | None = None) -> Any:
    """Send one request; return decoded JSON (or text with ``raw``), raise `HttpError`.

    Connection errors (``OSError``/``URLError``) propagate.
    """
    url = base_url.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method.upper(), headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = resp.read()
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            detail: Any = json.loads(text)
        except ValueError:
            detail = text
        raise HttpError(method, url, exc.code, detail, phrase=str(exc.reason),
                        retry_after=exc.headers.get("Retry-After")) from None
    if raw:
        return payload.decode(errors="replace")
    return json.loads(payload) if payload else None


def error_fields(body: Any) -> tuple[str, str] | None:
    """(code, message) of an API error body: ``{"error": {"message", "code", ...}}`` (the
    OpenAI shape) or ``{"error": "message", "reason": "code"}``; None for anything else."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code") or error.get("reason") or error.get("type") or "error"
        message = error.get("message") or str(code)
        return str(code), str(message)
    if isinstance(error, str):
        return str(body.get("reason") or body.get("code") or "error"), error
    return None


class ApiClientError(Exception):
    """The node refused the request (``status`` >= 400) or could not be reached or did not
    answer in time (status 0; ``reason`` ``unreachable`` or ``timeout``).

    ``str()`` is the message with the code appended once (not when the message names it)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        text = message if not status or reason in message else f"{message} ({reason})"
        super().__init__(text)


def _is_timeout(exc: BaseException) -> bool:
    reason = getattr(exc, "reason", None)
    return isinstance(exc, TimeoutError) or isinstance(reason, TimeoutError)


class ApiClient:
    """GET/POST JSON against ``base_url`` (e.g. ``http://127.0.0.1:7645``); every call takes
    at most ``timeout`` seconds."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token = token

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            result = request(self.base_url, method, path, token=self.token, body=body,
                             timeout=self.timeout, headers={"Accept": "application/json"})
        except HttpError as exc:
            fields = error_fields(exc.body)
            if fields is not None:
                reason, message = fields
            else:
                reason, message = f"http_{exc.status}", f"HTTP {exc.status} {exc.phrase}"
            if exc.retry_after:
                message += f"; the node says to retry in {exc.retry_after} s"
            raise ApiClientError(exc.status, reason, message) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if _is_timeout(exc):
                raise ApiClientError(
                    0, "timeout",
                    f"timed out: {self.base_url} did not answer {method} {path} within "
                    f"{self.timeout:g} s (the node may be busy; allow more with "
                    "--timeout/--http-timeout)") from exc
            raise ApiClientError(0, "unreachable",
                                 f"cannot reach the node at {self.base_url}: "
                                 f"{getattr(exc, 'reason', exc)}") from exc
        if result is None:  # an empty body: not the API's JSON
            raise ApiClientError(0, "unreachable",
                                 f"cannot reach the node at {self.base_url}: empty answer")
        return result

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)
