"""A small blocking client for the node's HTTP API, for the CLI commands (stdlib only).

Turns the API's JSON errors (``{"error", "reason"}``) and connection failures into one
exception type, so commands can print a clear line and exit non-zero.
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
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read())
                reason, message = str(err["reason"]), str(err["error"])
            except (ValueError, KeyError, TypeError):
                reason, message = f"http_{exc.code}", f"HTTP {exc.code} {exc.reason}"
            raise ApiClientError(exc.code, reason, message) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ApiClientError(0, "unreachable",
                                 f"cannot reach the node at {self.base_url}: {exc}") from exc

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)
