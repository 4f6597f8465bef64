"""The API documents (docs/openapi.yaml, docs/api.md) read as the API tests compare them with
the routes the node registers.

The venv has no YAML library, so this reads the block-style skeleton of the spec (keys by
indentation), which is all the route comparison needs; flow values stay opaque text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from aiohttp import web

from tests.framework.util import ROOT

SPEC = ROOT / "docs" / "openapi.yaml"
DOC = SPEC.with_name("api.md")
METHODS = {"get", "post", "put", "delete", "patch"}
KEY = re.compile(r"^( *)([^\s#\-{\[][^:]*?|\"[^\"]+\"):(?:\s|$)")


def key_lines(text: str) -> Iterator[tuple[int, int, tuple[str, ...]]]:
    """(line number, indent, path from the root) of every block-mapping key of the YAML
    text."""
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(text.splitlines()):
        match = KEY.match(line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2).strip('"')
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        yield i, indent, tuple(k for _, k in stack)


def key_paths(text: str) -> list[tuple[str, ...]]:
    """Every block-mapping key of the YAML text as its path from the root."""
    return [path for _, _, path in key_lines(text)]


def spec_routes(text: str) -> set[tuple[str, str]]:
    """(path, METHOD) of every operation the spec lists."""
    return {(p[1], p[2].upper()) for p in key_paths(text)
            if len(p) == 3 and p[0] == "paths" and p[2] in METHODS}


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """API routes of an app: ``/api/``, the OpenAI-compatible ``/v1/``, ``/metrics``,
    ``/health`` and ``/ready`` (HEAD twins, the peer WebSocket and the explorer's pages left
    out)."""
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD" and (path.startswith(("/api/", "/v1/")) or
                                       path in ("/metrics", "/health", "/ready")):
            out.add((path, route.method))
    return out
