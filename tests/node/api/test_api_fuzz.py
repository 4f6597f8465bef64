"""HTTP fuzz of every route in docs/openapi.yaml against a real node on 127.0.0.1 (issue 12):
Hypothesis draws requests from the spec's schemas and from garbage (`bench.http_fuzz`, whose
long run is ``python bench/http_fuzz.py``); no answer may be a 5xx and every error is JSON
with a stable code. Derandomized: the same requests every run."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.http_fuzz import (
    Answer,
    FuzzRequest,
    Tally,
    error_code,
    fuzz_route,
    judge,
    load_spec,
    make_harmless,
    operations,
    spec_routes,
)
from node.api.auth import read_token
from node.builder import build_node
from node.node import Node
from tests.framework.apidocs import SPEC, app_routes
from tests.framework.apidocs import spec_routes as skeleton_routes
from tests.framework.nodes import node_config

EXAMPLES_PER_ROUTE = 40


@pytest.fixture
async def fuzz_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A node wired like ``pouwchain node``, answering chat rounds alone (built-in model),
    whose ``generate`` does not pace blocks."""
    config = node_config(tmp_path, "fuzz", swarm_backend="builtin:arith-m",
                         mining_block_interval=0.0)  # generate mines at once
    node = build_node(config, swarm_options={
        "answer_timeout": 20.0, "judge_timeout": 20.0, "reveal_timeout": 3.0})
    await node.start()
    yield node
    await node.stop()


def test_the_fuzz_covers_exactly_the_spec_routes() -> None:
    spec = load_spec()
    routes = [op.route for op in operations(spec)]
    assert len(routes) == len(set(routes))
    # the YAML reading of the fuzz and the skeleton reading of the doc tests agree
    assert set(routes) == skeleton_routes(SPEC.read_text()) == spec_routes(spec)


def test_judge_flags_5xx_and_errors_without_a_code() -> None:
    request = FuzzRequest(("/api/v1/txs", "POST"), "POST", "/api/v1/txs", {}, b"{}")
    chat = FuzzRequest(("/v1/chat/completions", "POST"), "POST", "/v1/chat/completions", {},
                       b"{}")
    ok = Answer(400, "application/json", b'{"error": "no", "reason": "bad_json"}')
    openai = Answer(400, "application/json; charset=utf-8",
                    b'{"error": {"message": "m", "type": "t", "param": null, "code": "c"}}')
    assert judge(request, ok) is None and error_code(request.route, ok) == "bad_json"
    assert judge(chat, openai) is None and error_code(chat.route, openai) == "c"
    assert judge(request, Answer(500, "application/json", ok.body)) is not None
    assert judge(request, Answer(502, "application/json", ok.body)) is not None
    assert judge(request, Answer(400, "text/plain", b"400: Bad Request")) is not None
    assert judge(request, Answer(404, "application/json", b'{"error": "no"}')) is not None
    assert judge(request, Answer(200, "text/plain", b"ok")) is None


def test_harmless_requests_do_not_act_on_the_world() -> None:
    generate = FuzzRequest(("/api/v1/miner/generate", "POST"), "POST", "/", {},
                           b'{"count": 1000}')
    assert json.loads(make_harmless(generate, own_address="127.0.0.1:9").body or b"") == \
        {"count": 1}
    for address, kept in (("10.1.2.3:80", False), ("example.com:443", False),
                          ("127.0.0.1:1:2", True), ("nonsense", True)):
        peers = FuzzRequest(("/api/v1/peers", "POST"), "POST", "/", {},
                            json.dumps({"address": address}).encode())
        body = json.loads(make_harmless(peers, own_address="127.0.0.1:9").body or b"")
        assert body["address"] == (address if kept else "127.0.0.1:9")
    # the node reads compressed bodies, and passes unknown encodings through: so does this
    for encoding, body in (("gzip", gzip.compress(b'{"address": "10.0.0.1:7645"}')),
                           ("deflate", zlib.compress(b'{"address": "10.0.0.1:7645"}')),
                           ("x-unknown", b'{"address": "10.0.0.1:7645"}')):
        peers = FuzzRequest(("/api/v1/peers", "POST"), "POST", "/",
                            {"Content-Encoding": encoding}, body)
        harmless = make_harmless(peers, own_address="127.0.0.1:9")
        assert "Content-Encoding" not in harmless.headers
        assert json.loads(harmless.body or b"") == {"address": "127.0.0.1:9"}
    # harmless already: untouched
    compressed = FuzzRequest(("/api/v1/miner/generate", "POST"), "POST", "/",
                             {"Content-Encoding": "gzip"}, gzip.compress(b'{"count": 1}'))
    assert make_harmless(compressed, own_address="x:1") is compressed


async def test_no_route_answers_5xx_to_fuzzed_requests(fuzz_node: Node) -> None:
    spec = load_spec()
    ops = operations(spec)
    assert {op.route for op in ops} == app_routes(fuzz_node.app)  # every served route
    token = read_token(fuzz_node.config.datadir)
    tally = Tally()

    def run() -> None:
        for op in ops:
            fuzz_route(spec, op, port=fuzz_node.port, token=token,
                       own_address=fuzz_node.listen_address, tally=tally,
                       examples=EXAMPLES_PER_ROUTE, seed=None, strict=True)

    await asyncio.to_thread(run)
    assert set(tally.requests) == {op.route for op in ops}
    assert sum(tally.requests.values()) >= len(ops) * EXAMPLES_PER_ROUTE // 2
    assert not tally.server_errors and not tally.not_json, tally.failures
    # the fuzz reached past the first checks: valid requests were served, bad ones refused
    # for many different reasons
    statuses = {s for counter in tally.statuses.values() for s in counter}
    assert 200 in statuses and 400 in statuses and 404 in statuses
    assert len(tally.codes) >= 15, tally.codes
