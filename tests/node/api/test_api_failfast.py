"""Fail fast (issue 13): answerers that cannot serve a prompt gossip a signed abstention with
their reason, the origin stops waiting for them, and the client gets one 4xx naming the
reason, with the official ``openai`` client, streamed or not; a swarm still forming is a 503
with ``Retry-After``. In-process nodes on real sockets, registered on a test chain."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from node.builder import build_node
from node.node import Node
from node.swarm.round import RoundState
from swarm.messages import KIND_ANSWER, sign_abstention
from testnet.client import request
from tests.framework.nodes import TestNetwork, node_config
from tests.framework.nodes import swarm_service as svc
from tests.framework.swarm import registered_swarm, stop_all
from tests.framework.util import wait_until

#: outside what the built-in arithmetic models serve: every answerer abstains
POEM = "Write a short poem about the sea."
#: the round's answer phase would wait this long for a silent answerer (fail fast never does)
SLOW: dict[str, Any] = {"answer_timeout": 300.0, "judge_timeout": 300.0, "reveal_timeout": 60.0}
WAIT = 60.0  # generous bound on waiting for the failure (never a timing assertion)


@pytest.fixture
async def swarm3(tmp_path: Path) -> AsyncIterator[list[Node]]:
    _chain, nodes = await registered_swarm(tmp_path, registered=3, count=3, **SLOW)
    try:
        yield nodes
    finally:
        await stop_all(nodes)


class CountingClient:
    """The official client with its default retries, over an httpx client that counts every
    HTTP request it sends (a retry would be a second one)."""

    def __init__(self, node: Node) -> None:
        self.requests: list[str] = []

        async def count(request: Any) -> None:  # an httpx request
            self.requests.append(f"{request.method} {request.url.path}")

        self.http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [count]})
        self.client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{node.port}/v1",
                                         api_key="x", http_client=self.http)
        assert self.client.max_retries >= 1  # retries stay on: the 4xx must not be retried

    async def close(self) -> None:
        await self.client.close()
        await self.http.aclose()


def originated(node: Node) -> list[RoundState]:
    return [s for s in svc(node).rounds.values() if s.origin == node.node_id]


async def test_unservable_prompt_fails_fast_with_one_4xx(swarm3: list[Node]) -> None:
    origin = swarm3[0]
    counting = CountingClient(origin)
    try:
        started = time.perf_counter()
        with pytest.raises(openai.UnprocessableEntityError) as err:
            await asyncio.wait_for(counting.client.chat.completions.create(
                model="pouwchain-swarm", messages=[{"role": "user", "content": POEM}]), WAIT)
        elapsed = time.perf_counter() - started
    finally:
        await counting.close()
    print(f"\nunservable prompt: one 422 after {elapsed:.2f} s (answer timeout "
          f"{SLOW['answer_timeout']:g} s)")
    assert counting.requests == ["POST /v1/chat/completions"]  # one request, no retry
    assert err.value.status_code == 422 and err.value.code == "unsupported_prompt"
    body = err.value.body
    assert isinstance(body, dict)
    assert "built-in models answer" in body["message"]  # what the models serve
    [state] = originated(origin)
    assert body["round_id"] == state.round_id.hex()
    # every selected answerer abstained, signed, with its reason; none committed
    assert state.abstained(KIND_ANSWER) == set(state.answerers) and state.answerers
    assert not state.committed(KIND_ANSWER)
    assert {a["reason"] for a in body["abstentions"] if a["role"] == "answer"} == {
        "unsupported_prompt"}
    assert state.error_code == "unsupported_prompt" and state.status == "complete"
    stats = svc(origin).stats
    assert stats.originated == {"unsupported_prompt": 1}
    assert stats.round_seconds["failed"].count == 1
    # the round view shows the abstentions too
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{origin.port}/api/v1/rounds/{state.round_id.hex()}") as resp:
        view = await resp.json()
    assert view["error_code"] == "unsupported_prompt"
    assert len([a for a in view["abstentions"] if a["role"] == "answer"]) == len(
        state.answerers)


async def test_unservable_prompt_streamed_ends_with_an_error_event(swarm3: list[Node]) -> None:
    origin = swarm3[0]
    counting = CountingClient(origin)
    chunks: list[Any] = []
    try:
        stream = await asyncio.wait_for(counting.client.chat.completions.create(
            model="pouwchain-swarm", stream=True,
            messages=[{"role": "user", "content": POEM}]), WAIT)
        with pytest.raises(openai.APIError) as err:
            async for chunk in stream:
                chunks.append(chunk)
    finally:
        await counting.close()
    assert counting.requests == ["POST /v1/chat/completions"]
    # the stream opened with the round's first chunk, then the error event
    [state] = originated(origin)
    assert [c.id for c in chunks] == [f"chatcmpl-{state.round_id.hex()}"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert err.value.code == "unsupported_prompt"
    assert isinstance(err.value.body, dict) and err.value.body["type"] == "invalid_request_error"


async def test_a_node_that_can_answer_still_answers(swarm3: list[Node]) -> None:
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{swarm3[0].port}/v1",
                                api_key="x", max_retries=0)
    try:
        completion = await asyncio.wait_for(client.chat.completions.create(
            model="pouwchain-swarm", messages=[{"role": "user", "content": "What is 40+13?"}]),
            WAIT)
    finally:
        await client.close()
    assert (completion.choices[0].message.content or "").strip().lstrip("-").isdigit()
    [state] = originated(swarm3[0])
    assert not state.abstentions and state.error_code is None
    assert svc(swarm3[0]).stats.originated == {"answered": 1}


async def test_forged_and_unselected_abstentions_are_ignored(swarm3: list[Node]) -> None:
    origin = swarm3[0]
    _round_id, running = svc(origin).begin("What is 2+2?")
    state = await running
    answerer = state.answerers[0]
    wrong_key = sign_abstention(bytes(32), round_id=state.round_id, kind=KIND_ANSWER,
                                reason=0, detail="forged")
    forged = type(wrong_key)(round_id=state.round_id, node=answerer, kind=KIND_ANSWER,
                             reason=0, detail=b"forged", signature=wrong_key.signature)
    assert not state.add_abstention(forged)  # claims a selected node, signed by another key
    assert not state.add_abstention(wrong_key)  # signed, but by a node nobody selected
    assert state.abstentions == {}


async def test_swarm_still_forming_is_503_with_retry_after(tmp_path: Path) -> None:
    node = build_node(node_config(tmp_path, "alone"))  # no backend anywhere
    await node.start()
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{node.port}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "What is 1+1?"}]}) as resp:
            body = await resp.json()
            assert resp.status == 503 and int(resp.headers["Retry-After"]) > 0
        assert body["error"]["code"] == body["reason"] == "no_swarm_nodes"
        assert "forming" in body["error"]["message"]
        assert svc(node).rounds == {}
    finally:
        await node.stop()


@pytest.mark.slow
def test_unservable_prompt_fails_fast_across_node_processes(tmp_path: Path) -> None:
    """The issue's scenario end to end: three ``pouwchain node`` processes serving the
    built-in arithmetic models (interim rule: no registry), the official client with its
    default retries asking one of them for a poem."""
    network = TestNetwork(tmp_path)
    try:
        nodes = [network.add_node(config={"swarm_backend": f"builtin:{name}"}, start=False)
                 for name in ("arith-s", "arith-m", "arith-l")]
        network.start_all(nodes)
        network.connect_all(nodes)
        origin = nodes[0]
        wait_until(lambda: origin.api("GET", "/v1/models", auth=False)["data"][0]["nodes"] == 3,
                   WAIT, message="every node's backend announced")
        sent: list[str] = []
        http = openai.DefaultHttpxClient(event_hooks={"request": [
            lambda request: sent.append(f"{request.method} {request.url.path}")]})
        client = openai.OpenAI(base_url=f"{origin.url}/v1", api_key="x", http_client=http)
        assert client.max_retries >= 1
        started = time.perf_counter()
        with pytest.raises(openai.UnprocessableEntityError) as err:
            client.chat.completions.create(
                model="pouwchain-swarm", messages=[{"role": "user", "content": POEM}])
        elapsed = time.perf_counter() - started
        client.close()
        print(f"\nnode processes: unservable prompt -> one {err.value.status_code} "
              f"{err.value.code} after {elapsed:.2f} s")
        assert sent == ["POST /v1/chat/completions"]  # one request: no retry
        assert err.value.code == "unsupported_prompt"
        body = err.value.body
        assert isinstance(body, dict) and len(body["abstentions"]) == 3
        metrics = request(origin.url, "GET", "/metrics", raw=True)
        assert 'pouwchain_swarm_rounds_total{outcome="unsupported_prompt"} 1' in metrics
        assert origin.status()["swarm"]["rounds"]["failed"] == {"unsupported_prompt": 1}
    finally:
        network.teardown()
