"""The ``node`` and ``client`` fixtures of the node tests.

``node`` is a started `LiveNode` (the real node, wired like ``pouwchain node``); in a test or
module marked ``api_node`` it is an `ApiTestNode` instead (the API over a real chain store,
for tests that set what a real node derives from its network). ``client`` talks HTTP to it:
an ``aiohttp.ClientSession`` on the live node's URL, or a ``TestClient`` serving the
`ApiTestNode`'s app on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.framework.nodes import ApiTestNode, LiveNode, serve

NodeUnderTest = LiveNode | ApiTestNode
Client = aiohttp.ClientSession | TestClient[web.Request, web.Application]


@pytest.fixture
async def node(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NodeUnderTest]:
    if request.node.get_closest_marker("api_node") is not None:
        api_node = ApiTestNode(tmp_path)
        yield api_node
        api_node.close()
        return
    live = await LiveNode.start(tmp_path / "node")
    yield live
    await live.stop()


@pytest.fixture
async def client(node: NodeUnderTest) -> AsyncIterator[Client]:
    if isinstance(node, ApiTestNode):
        test_client = await serve(node.app)
        yield test_client
        await test_client.close()
        return
    async with node.session() as session:
        yield session
