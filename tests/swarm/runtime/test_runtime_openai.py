"""The OpenAI-compatible HTTP backend against a fake model server on 127.0.0.1.

The fake speaks the real chat-completions protocol (JSON and SSE streaming); the official
`openai` client is run against it too, so the fake cannot drift from the protocol.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from aiohttp import web

from swarm.runtime.base import (
    BackendError,
    BackendTimeout,
    InferenceBackend,
    Outcome,
    name_model_id,
)
from swarm.runtime.openai_http import (
    JUDGE_SYSTEM,
    SCREEN_SYSTEM,
    OpenAIBackend,
    parse_judgment,
    parse_screen,
)

MODEL = "fake-llm-7b"


@dataclass
class FakeServer:
    """Scripted replies; records every request body it received."""

    reply: str = "42"
    status: int = 200
    delay: float = 0.0
    hold: asyncio.Event | None = None  # set: the reply waits until the test releases it
    raw_body: bytes | None = None  # sent verbatim instead of a completion
    stream_raw: list[str] | None = None  # SSE data payloads sent verbatim
    logprobs: list[float] = field(default_factory=lambda: [-0.5, -0.25])
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


FAKE = web.AppKey("fake", FakeServer)


async def _chat(request: web.Request) -> web.StreamResponse:
    fake: FakeServer = request.app[FAKE]
    body = await request.json()
    fake.requests.append(body)
    fake.auth.append(request.headers.get("Authorization"))
    if fake.delay:
        await asyncio.sleep(fake.delay)
    if fake.hold is not None:
        await fake.hold.wait()
    if fake.status != 200:
        return web.json_response({"error": {"message": "model overloaded", "type": "server"}},
                                 status=fake.status)
    if fake.raw_body is not None:
        return web.Response(body=fake.raw_body, content_type="application/json")
    created = int(time.time())
    tokens: list[dict[str, Any]] = [{"token": "t", "logprob": x, "bytes": None, "top_logprobs": []}
              for x in fake.logprobs]
    lp: dict[str, Any] | None = {"content": tokens} if body.get("logprobs") else None
    if not body.get("stream"):
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "created": created,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": fake.reply},
                         "logprobs": lp, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        })
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    if fake.stream_raw is not None:
        for data in fake.stream_raw:
            await resp.write(f"data: {data}\n\n".encode())
        await resp.write_eof()
        return resp

    def chunk(delta: dict[str, str], finish: str | None) -> str:
        return json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                           "created": created, "model": body["model"],
                           "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                        "finish_reason": finish}]})

    await resp.write(f"data: {chunk({'role': 'assistant', 'content': ''}, None)}\n\n".encode())
    for i in range(0, len(fake.reply), 3):
        await resp.write(f"data: {chunk({'content': fake.reply[i:i + 3]}, None)}\n\n".encode())
    await resp.write(b": keep-alive comment\n\n")
    await resp.write(f"data: {chunk({}, 'stop')}\n\n".encode())
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [
        {"id": MODEL, "object": "model", "created": 0, "owned_by": "fake"}]})


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeServer, str]]:
    fake = FakeServer()
    app = web.Application()
    app[FAKE] = fake
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/v1/models", _models)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_fake_server_speaks_the_real_protocol(server: tuple[FakeServer, str]) -> None:
    fake, url = server
    fake.reply = "The answer is 296."
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="k")
    done = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert done.choices[0].message.content == fake.reply
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == fake.reply
    await client.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_answer(server: tuple[FakeServer, str], stream: bool) -> None:
    fake, url = server
    fake.reply = "  37*8+5 = 301\n301 "
    async with OpenAIBackend(url, model=MODEL, stream=stream, api_key="sk-x") as backend:
        assert isinstance(backend, InferenceBackend)
        ans = await backend.answer("What is 37*8+5?", max_tokens=64)
    assert ans.text == "37*8+5 = 301\n301"
    assert ans.model_id == name_model_id(MODEL) and len(ans.model_id) == 32
    req = fake.requests[-1]
    assert req["model"] == MODEL and req["max_tokens"] == 64 and req["stream"] is stream
    assert req["messages"][-1] == {"role": "user", "content": "What is 37*8+5?"}
    assert fake.auth[-1] == "Bearer sk-x"


async def test_logprobs_summed(server: tuple[FakeServer, str]) -> None:
    _fake, url = server
    async with OpenAIBackend(url, model=MODEL, logprobs=True) as backend:
        ans = await backend.answer("q", max_tokens=8)
    assert ans.token_logprob == pytest.approx(-0.75)
    async with OpenAIBackend(url, model=MODEL) as backend:
        assert (await backend.answer("q", max_tokens=8)).token_logprob is None


async def test_discover_uses_declared_model(server: tuple[FakeServer, str]) -> None:
    _fake, url = server
    backend = await OpenAIBackend.discover(url + "/v1/")
    assert backend.model == MODEL and backend.model_id == name_model_id(MODEL)
    await backend.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_judge_prompt_and_verdict(server: tuple[FakeServer, str], stream: bool) -> None:
    fake, url = server
    fake.reply = ("FLAWS A: 37*8 is 296, not 286, so 291 is wrong\nFLAWS B: none\n"
                  "VERDICT: B")
    async with OpenAIBackend(url, model=MODEL, stream=stream) as backend:
        j = await backend.judge("What is 37*8-5?", "291", "291 + 0 = 291? no: 296-5 = 291")
    assert j.outcome is Outcome.B
    assert "296, not 286" in j.reason
    system = fake.requests[-1]["messages"][0]
    assert system == {"role": "system", "content": JUDGE_SYSTEM}
    assert "Do not write your own solution" in system["content"]
    user = fake.requests[-1]["messages"][1]["content"]
    assert user.index("Answer A:\n291") < user.index("Answer B:")


async def test_screen_prompt_and_verdict(server: tuple[FakeServer, str]) -> None:
    fake, url = server
    fake.reply = "FLAWS: 37*8 is 296, so 37*8-5 is 291, not 281\nVERDICT: BAD"
    async with OpenAIBackend(url, model=MODEL) as backend:
        assert await backend.screen("What is 37*8-5?", "281") is False
        fake.reply = "<think>VERDICT: BAD?</think>FLAWS: none\nVERDICT: GOOD"
        assert await backend.screen("What is 37*8-5?", "291") is True
        fake.reply = "FLAWS: cannot check\nVERDICT: unsure"
        assert await backend.screen("What is 37*8-5?", "291") is None
        fake.reply = "looks fine to me"
        with pytest.raises(BackendError, match="no verdict"):
            await backend.screen("What is 37*8-5?", "291")
    system = fake.requests[-1]["messages"][0]
    assert system == {"role": "system", "content": SCREEN_SYSTEM}
    assert "Do not write your own solution" in system["content"]
    assert fake.requests[-1]["messages"][1]["content"].endswith("Answer:\n291")


async def test_batched_judging_runs_concurrently_and_in_order(
        server: tuple[FakeServer, str]) -> None:
    fake, url = server
    fake.reply = "FLAWS A: none\nFLAWS B: none\nVERDICT: A"
    async with OpenAIBackend(url, model=MODEL, max_concurrency=2) as backend:
        judgments = await backend.judge_pairs("q", [("1", "2"), ("3", "4"), ("5", "6")])
        assert [j.outcome for j in judgments] == [Outcome.A] * 3
        fake.reply = "VERDICT: BAD"
        assert await backend.screen_answers("q", ["1", "2"]) == [False, False]
    users = [r["messages"][1]["content"] for r in fake.requests[-5:-2]]
    assert sorted(users) == sorted(f"Question:\nq\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"
                                   for a, b in [("1", "2"), ("3", "4"), ("5", "6")])
    with pytest.raises(ValueError):
        OpenAIBackend(url, model=MODEL, max_concurrency=0)


def test_parse_screen() -> None:
    assert parse_screen("**VERDICT:** good") is True
    assert parse_screen("VERDICT: GOOD\nVERDICT: BAD") is False


@pytest.mark.parametrize(("reply", "outcome"), [
    ("VERDICT: A", Outcome.A),
    ("verdict: tie", Outcome.TIE),
    ("**Verdict:** **B**", Outcome.B),
    ("<think>VERDICT: A maybe</think>\nFLAWS A: wrong sign\nFLAWS B: none\nVERDICT: B",
     Outcome.B),
    ("The format is VERDICT: A|B|TIE.\nFLAWS A: none\nFLAWS B: none\nVERDICT: TIE.",
     Outcome.TIE),
    ("  b  ", Outcome.B),
    ("Verdict - \"A\"", Outcome.A),
])
def test_parse_judgment_variants(reply: str, outcome: Outcome) -> None:
    assert parse_judgment(reply).outcome is outcome


@pytest.mark.parametrize("reply", ["", "I think both are fine.", "VERDICT: maybe",
                                   "Answer: C"])
def test_parse_judgment_rejects_replies_without_verdict(reply: str) -> None:
    with pytest.raises(BackendError, match="no verdict"):
        parse_judgment(reply)


async def test_unparseable_judgment_is_an_error(server: tuple[FakeServer, str]) -> None:
    fake, url = server
    fake.reply = "Both answers look plausible to me."
    async with OpenAIBackend(url, model=MODEL) as backend:
        with pytest.raises(BackendError, match="no verdict"):
            await backend.judge("q", "1", "2")


@pytest.mark.parametrize("stream", [False, True])
async def test_http_error_status(server: tuple[FakeServer, str], stream: bool) -> None:
    fake, url = server
    fake.status = 503
    async with OpenAIBackend(url, model=MODEL, stream=stream) as backend:
        with pytest.raises(BackendError, match="HTTP 503: model overloaded"):
            await backend.answer("q", max_tokens=8)


@pytest.mark.parametrize("stream", [False, True])
async def test_timeout(server: tuple[FakeServer, str], stream: bool) -> None:
    fake, url = server
    fake.hold = asyncio.Event()  # no reply until the backend has given up
    try:
        async with OpenAIBackend(url, model=MODEL, stream=stream, timeout=0.2) as backend:
            with pytest.raises(BackendTimeout):  # asyncio's TimeoutError if it never gives up
                await asyncio.wait_for(backend.answer("q", max_tokens=8), 60)
    finally:
        fake.hold.set()


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"choices": []}',
                                  b'{"choices": [{"message": {"content": 7}}]}'])
async def test_malformed_completion(server: tuple[FakeServer, str], body: bytes) -> None:
    fake, url = server
    fake.raw_body = body
    async with OpenAIBackend(url, model=MODEL) as backend:
        with pytest.raises(BackendError):
            await backend.answer("q", max_tokens=8)


@pytest.mark.parametrize("events", [
    ["{bad json"],
    ['{"choices": [{"delta": {"content": "4"}}]}'],  # no [DONE]: truncated stream
    ['{"error": {"message": "boom"}}', "[DONE]"],
])
async def test_malformed_stream(server: tuple[FakeServer, str], events: list[str]) -> None:
    fake, url = server
    fake.stream_raw = events
    async with OpenAIBackend(url, model=MODEL, stream=True) as backend:
        with pytest.raises(BackendError):
            await backend.answer("q", max_tokens=8)


async def test_connection_refused() -> None:
    async with OpenAIBackend("http://127.0.0.1:9", model=MODEL, timeout=5) as backend:
        with pytest.raises(BackendError) as info:
            await backend.answer("q", max_tokens=8)
    assert not isinstance(info.value, BackendTimeout)
