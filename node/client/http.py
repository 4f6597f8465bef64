"""The one client of the node's HTTP API (stdlib only, blocking): the CLI and the testnet.

`request` sends one JSON request and raises `HttpError` for an error status (connection
errors propagate: callers polling a starting or stopping node catch them); the launcher's
status table and the functional tests use it (through `testnet.client`). `ApiClient`, for
the CLI commands, turns the API's JSON errors (``{"error", "reason"}``) and connection
failures into one exception type, so a command can print a clear line and exit non-zero.
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


def default_node_url() -> str:
    return os.environ.get(NODE_ENV, DEFAULT_NODE_URL)


def node_url(*, node: str | None, datadir: Path | None) -> str:
    """The API URL to use: ``--node``, else the running node's ``<datadir>/node.json``
    (which a node writes at start: its port may be random), else $POUWCHAIN_NODE or the
    default."""
    if node:
        return node
    if datadir is not None:
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
    return default_node_url()


class HttpError(Exception):
    """The node answered with an HTTP error status (``status``, decoded ``body``)."""

    def __init__(self, method: str, url: str, status: int, body: Any, *,
                 phrase: str = "") -> None:
        super().__init__(f"{method} {url} -> {status}: {body}")
        self.status = status
        self.body = body
        self.phrase = phrase  # the status line's reason phrase ("Not Found")


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
        raise HttpError(method, url, exc.code, detail, phrase=str(exc.reason)) from None
    if raw:
        return payload.decode(errors="replace")
    return json.loads(payload) if payload else None


class ApiClientError(Exception):
    """The node refused the request (``status`` >= 400) or could not be reached (0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{message} ({reason})" if status else message)


class ApiClient:
    """GET/POST JSON against ``base_url`` (e.g. ``http://127.0.0.1:7645``)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.token = token

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            result = request(self.base_url, method, path, token=self.token, body=body,
                             timeout=self.timeout, headers={"Accept": "application/json"})
        except HttpError as exc:
            err = exc.body
            if isinstance(err, dict) and "reason" in err and "error" in err:
                reason, message = str(err["reason"]), str(err["error"])
            else:
                reason, message = f"http_{exc.status}", f"HTTP {exc.status} {exc.phrase}"
            raise ApiClientError(exc.status, reason, message) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ApiClientError(0, "unreachable",
                                 f"cannot reach the node at {self.base_url}: {exc}") from exc
        if result is None:  # an empty body: not the API's JSON
            raise ApiClientError(0, "unreachable",
                                 f"cannot reach the node at {self.base_url}: empty answer")
        return result

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)
