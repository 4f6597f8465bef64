"""docs/openapi.yaml matches the routes the node really registers, and is self-consistent
(the spec is read by `tests.framework.apidocs`)."""

from __future__ import annotations

import re

import pytest
from aiohttp import web

from node.api import miner as miner_api
from node.api.chat import register_routes as swarm_routes
from node.api.finality import register_routes as finality_routes
from tests.framework.apidocs import DOC, SPEC, app_routes, key_paths, spec_routes
from tests.framework.nodes import ApiTestNode

pytestmark = pytest.mark.api_node

def external_routes() -> set[tuple[str, str]]:
    """The miner/job, swarm and finality routes, registered by their owners' code on a
    throwaway app."""
    app = web.Application()
    miner_api.register(app, object(), miner=object(), jobs=object())  # type: ignore[arg-type]
    # the swarm's chat, round view and registration status
    swarm_routes(app, object(), object())  # type: ignore[arg-type]
    # finality (node/api/finality.py)
    finality_routes(app, object(), object())  # type: ignore[arg-type]
    return app_routes(app)


def test_spec_lists_exactly_the_registered_routes(node: ApiTestNode) -> None:
    text = SPEC.read_text()
    assert text.startswith("openapi: 3.1.0")
    ours = app_routes(node.app)
    spec = spec_routes(text)
    assert ours, "no routes registered"
    assert ours <= spec, f"undocumented routes: {sorted(ours - spec)}"
    extra = spec - ours
    assert extra == external_routes(), f"documented but not registered: {sorted(extra)}"


def test_path_parameters_are_declared() -> None:
    text = SPEC.read_text()
    sections = re.split(r"\n  (?=/)", text.split("\npaths:\n", 1)[1])
    params_in_components = set(re.findall(r"\n      name: (\w+)\n      in: path", text))
    for section in sections:
        path = section.split(":", 1)[0].strip()
        for name in re.findall(r"\{(\w+)\}", path):
            assert f"name: {name}" in section or name in params_in_components, (path, name)


def test_refs_resolve() -> None:
    text = SPEC.read_text()
    keys = set(key_paths(text))
    refs = set(re.findall(r'\$ref: "#/([^"]+)"', text))
    assert refs
    for ref in refs:
        assert tuple(ref.split("/")) in keys, ref


def test_markdown_documents_every_route(node: ApiTestNode) -> None:
    doc = DOC.read_text()
    for path, method in spec_routes(SPEC.read_text()):
        assert f"{method} {path}" in doc, f"docs/api.md lacks '{method} {path}'"


def test_skeleton_parser_sees_methods() -> None:
    # the parser must not be vacuous: a made-up document yields exactly its routes
    text = "openapi: 3.1.0\npaths:\n  /a/{x}:\n    get:\n      summary: s\n" \
           "    delete:\n      responses: {}\n  /b:\n    post:\n      x: 1\ncomponents:\n" \
           "  schemas:\n    get:\n      type: object\n"
    assert spec_routes(text) == {("/a/{x}", "GET"), ("/a/{x}", "DELETE"), ("/b", "POST")}
