"""A minimal synchronous HTTP client for a node's JSON API (stdlib only, loopback use).

Synchronous on purpose: the launcher's status table and the functional tests are sequential
scripts, and a blocking client with a timeout on every call keeps them simple and bounded.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ApiError(Exception):
    """The node answered with an HTTP error status (``status``, decoded ``body``)."""

    def __init__(self, method: str, url: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {url} -> {status}: {body}")
        self.status = status
        self.body = body


def request(
    base_url: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    timeout: float = 10.0,
    raw: bool = False,
) -> Any:
    """Send one request; return decoded JSON (or text with ``raw``), raise `ApiError`.

    Connection errors (``OSError``/``URLError``) propagate: callers that poll a starting or
    stopping node catch them.
    """
    url = base_url.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method.upper())
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
        raise ApiError(method, url, exc.code, detail) from None
    if raw:
        return payload.decode(errors="replace")
    return json.loads(payload) if payload else None


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {name: value}, summing samples that differ only by labels."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        # "name{labels} value [timestamp]"; labels may contain spaces, so split around them
        if "}" in line:
            name = line[: line.index("{")]
            tail = line[line.rindex("}") + 1 :].split()
        else:
            name, *tail = line.split()
        if not tail:
            continue
        try:
            value = float(tail[0])
        except ValueError:
            continue
        out[name] = out.get(name, 0.0) + value
    return out
