"""The OpenAI-compatible chat API on in-process nodes over real sockets (issue 10): bad values
are OpenAI-style 400s and never start a round, the context window, the models list and
routing a round to a named model's nodes, ``stop``/``max_tokens``/``temperature`` reaching the
answerers, and streaming with the official ``openai`` client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from node.api.chat import check_context
from node.builder import build_node
from node.node import Node
from node.swarm.generation import GenerationOptions
from swarm.runtime.base import Answer, Judgment, Outcome, name_model_id
from swarm.runtime.factory import make_backend
from swarm.runtime.llm.batched import LLMSwarmBackend
from swarm.runtime.llm.engine import load_engine
from tests.framework.nodes import node_config
from tests.framework.nodes import swarm_service as svc
from tests.framework.swarm import registered_swarm, stop_all

QUESTION = "What is 40+13?"


class WordyBackend:
    """Answers every question with ten words, ignoring ``max_tokens`` (as a backend without
    a tokenizer may), and records what it was asked."""

    WORDS = "one two three four five six seven eight nine ten"

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    @property
    def model_id(self) -> bytes:
        return name_model_id("wordy")

    async def answer(self, prompt: str, *, max_tokens: int) -> Answer:
        self.asked.append((prompt, max_tokens))
        return Answer(self.WORDS, self.model_id)

    async def judge(self, question: str, answer_a: str, answer_b: str) -> Judgment:
        return Judgment(Outcome.TIE, "wordy")

    async def screen(self, question: str, answer: str) -> bool | None:
        return None

    async def judge_pairs(self, question: str,
                          pairs: Sequence[tuple[str, str]]) -> list[Judgment]:
        return [Judgment(Outcome.TIE, "wordy") for _ in pairs]

    async def screen_answers(self, question: str, answers: Sequence[str]) -> list[bool | None]:
        return [None for _ in answers]


async def solo_chat_node(tmp_path: Path, backend: Any = None) -> Node:
    """One started node answering alone (interim rule: itself the only candidate) with the
    built-in arith-m model, or ``backend``."""
    config = node_config(tmp_path, "solo", swarm_backend="builtin:arith-m")
    node = build_node(config, swarm_backend=backend, swarm_options={
        "answer_timeout": 20.0, "judge_timeout": 20.0, "reveal_timeout": 3.0})
    await node.start()
    return node


@pytest.fixture
async def chat_node(tmp_path: Path) -> AsyncIterator[Node]:
    node = await solo_chat_node(tmp_path)
    try:
        yield node
    finally:
        await node.stop()


def chat_url(node: Node) -> str:
    return f"http://127.0.0.1:{node.port}"


def openai_client(node: Node) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{chat_url(node)}/v1", api_key="x", max_retries=0)


async def post_chat(node: Node, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
            f"{chat_url(node)}/v1/chat/completions", json=body) as resp:
        return resp.status, await resp.json()


def ask_body(content: str = QUESTION, **extra: Any) -> dict[str, Any]:
    return {"model": "pouwchain-swarm", "messages": [{"role": "user", "content": content}],
            **extra}


# (extra request fields, the param the 400 names, its code)
BAD_VALUES: list[tuple[dict[str, Any], str, str]] = [
    ({"max_tokens": 0}, "max_tokens", "invalid_value"),
    ({"max_tokens": -5}, "max_tokens", "invalid_value"),
    ({"max_tokens": 5000}, "max_tokens", "invalid_value"),
    ({"max_tokens": "16"}, "max_tokens", "invalid_type"),
    ({"max_tokens": 1.5}, "max_tokens", "invalid_type"),
    ({"max_tokens": True}, "max_tokens", "invalid_type"),
    ({"max_completion_tokens": 0}, "max_completion_tokens", "invalid_value"),
    ({"temperature": -0.1}, "temperature", "invalid_value"),
    ({"temperature": 2.5}, "temperature", "invalid_value"),
    ({"temperature": "hot"}, "temperature", "invalid_type"),
    ({"temperature": False}, "temperature", "invalid_type"),
    ({"stop": 7}, "stop", "invalid_type"),
    ({"stop": ["a", 1]}, "stop", "invalid_type"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value"),
    ({"stop": [""]}, "stop", "invalid_value"),
    ({"stop": "x" * 300}, "stop", "invalid_value"),
    ({"stream": "yes"}, "stream", "invalid_request"),
    ({"n": 2}, "n", "invalid_value"),
    ({"stream": True, "stream_options": []}, "stream_options", "invalid_type"),
    ({"stream": True, "stream_options": {"include_usage": 1}}, "stream_options",
     "invalid_type"),
]


async def test_bad_values_are_openai_400s_and_start_no_round(chat_node: Node) -> None:
    for extra, param, code in BAD_VALUES:
        status, body = await post_chat(chat_node, ask_body(**extra))
        assert status == 400, (extra, body)
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
        assert error["param"] == param and error["code"] == code, (extra, body)
        assert error["type"] == "invalid_request_error" and error["message"]
    for blank in ("", "   ", " \n\t "):
        status, body = await post_chat(chat_node, ask_body(blank))
        assert status == 400 and body["error"]["param"] == "messages", body
    status, body = await post_chat(chat_node, {"model": "pouwchain-swarm", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "  "}]}]})
    assert status == 400 and body["error"]["param"] == "messages", body
    assert svc(chat_node).rounds == {}  # none of them became a round


async def test_prompt_past_the_context_window_is_context_length_exceeded(
        chat_node: Node) -> None:
    for content, extra in (("1+1 " * 3000, {}),  # 12 000 bytes, no tokenizer on this node
                           ("2+2 " * 1100, {"max_tokens": 4096}),  # fits only without
                           ("x" * 70_000, {})):  # more than a round can carry
        status, body = await post_chat(chat_node, ask_body(content, **extra))
        assert status == 400, body
        assert body["error"]["code"] == "context_length_exceeded", body
        assert body["error"]["param"] == "messages" and "8192" in body["error"]["message"]
    client = openai_client(chat_node)
    try:
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(
                model="pouwchain-swarm", messages=[{"role": "user", "content": "9" * 9000}])
        assert err.value.code == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(
                model="pouwchain-swarm", messages=[{"role": "user", "content": " \n "}])
        assert err.value.param == "messages"
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(
                model="pouwchain-swarm", temperature=3.0,
                messages=[{"role": "user", "content": QUESTION}])
        assert err.value.param == "temperature"
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(
                model="gpt-4", messages=[{"role": "user", "content": QUESTION}])
        assert missing.value.code == "model_not_found"
    finally:
        await client.close()
    assert svc(chat_node).rounds == {}


async def test_stop_cuts_the_answer_at_the_answerer(chat_node: Node) -> None:
    status, plain = await post_chat(chat_node, ask_body())
    assert status == 200, plain
    answer = plain["choices"][0]["message"]["content"]
    assert len(answer) >= 2 and plain["model"] == "pouwchain-swarm"
    for stop in (answer[1:], [answer[1:], "zzz"]):
        status, body = await post_chat(chat_node, ask_body(stop=stop, temperature=0))
        assert status == 200, body
        assert body["choices"][0]["message"]["content"] == answer[:1]
        assert body["choices"][0]["finish_reason"] == "stop"
        state = svc(chat_node).rounds[bytes.fromhex(body["round_id"])]
        # the answerer itself cut it: the committed, settled answer is the cut one
        assert state.answer == answer[:1]
        assert state.options == GenerationOptions(
            temperature=0.0, stop=(stop,) if isinstance(stop, str) else tuple(stop))


async def test_max_tokens_bounds_the_answer_and_reaches_the_backend(tmp_path: Path) -> None:
    backend = WordyBackend()
    node = await solo_chat_node(tmp_path, backend)
    client = openai_client(node)
    try:
        completion = await client.chat.completions.create(
            model="pouwchain-swarm", max_tokens=3,
            messages=[{"role": "user", "content": "Count."}])
        assert completion.choices[0].message.content == "one two three"
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage is not None and completion.usage.completion_tokens == 3
        assert backend.asked[-1] == ("Count.", 3)
        completion = await client.chat.completions.create(
            model="pouwchain-swarm", stop=["four"],
            messages=[{"role": "user", "content": "Count."}])
        assert completion.choices[0].message.content == "one two three "
        assert completion.choices[0].finish_reason == "stop"
        assert backend.asked[-1] == ("Count.", svc(node).max_tokens)  # the node's default
    finally:
        await client.close()
        await node.stop()


async def test_streaming_with_the_openai_client(chat_node: Node) -> None:
    client = openai_client(chat_node)
    try:
        whole = await client.chat.completions.create(
            model="pouwchain-swarm", messages=[{"role": "user", "content": QUESTION}])
        stream = await client.chat.completions.create(
            model="pouwchain-swarm", stream=True,
            messages=[{"role": "user", "content": QUESTION}])
        pieces, finishes, objects = [], [], set()
        async for chunk in stream:
            objects.add(chunk.object)
            choice = chunk.choices[0]
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
        assert objects == {"chat.completion.chunk"} and finishes == ["stop"]
        assert "".join(pieces) == whole.choices[0].message.content
        # stream_options.include_usage: one last chunk without choices, with the usage
        stream = await client.chat.completions.create(
            model="pouwchain-swarm", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": QUESTION}])
        chunks = [chunk async for chunk in stream]
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
        assert all(c.usage is None for c in chunks[:-1])
    finally:
        await client.close()
    # the raw stream: server-sent events ending with [DONE]
    async with aiohttp.ClientSession() as session, session.post(
            f"{chat_url(chat_node)}/v1/chat/completions",
            json=ask_body(stream=True, max_tokens=1)) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        text = (await resp.read()).decode()
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


async def test_models_list_and_a_named_model_routes_to_its_nodes(tmp_path: Path) -> None:
    _chain, nodes = await registered_swarm(tmp_path, registered=3, count=3)
    client = openai_client(nodes[0])
    try:
        listed = (await client.models.list()).data
        ids = {make_backend(f"builtin:{name}").model_id.hex(): name
               for name in ("arith-xs", "arith-s", "arith-m")}
        assert listed[0].id == "pouwchain-swarm" and (listed[0].model_extra or {})["nodes"] == 3
        assert {m.id: (m.model_extra or {})["name"] for m in listed[1:]} == ids
        assert all(m.object == "model" and (m.model_extra or {})["nodes"] == 1
                   for m in listed[1:])
        served_by = {nodes[i].node_id: name
                     for i, name in enumerate(("arith-xs", "arith-s", "arith-m"))}
        for model in ("arith-m", next(k for k, v in ids.items() if v == "arith-s")):
            completion = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": QUESTION}])
            state = svc(nodes[0]).rounds[bytes.fromhex((completion.model_extra or {})[
                "round_id"])]
            name = ids.get(model, model)
            assert completion.model == name
            assert state.announcement.request.model.hex() in ids
            assert [served_by[n] for n in state.answerers] == [name]
    finally:
        await client.close()
        await stop_all(nodes)


async def test_models_list_under_the_interim_rule(chat_node: Node) -> None:
    async with aiohttp.ClientSession() as session, session.get(
            f"{chat_url(chat_node)}/v1/models") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["object"] == "list"
    arith_m = make_backend("builtin:arith-m").model_id.hex()
    assert [(m["id"], m["name"], m["nodes"]) for m in body["data"]] == [
        ("pouwchain-swarm", "pouwchain-swarm", 1), (arith_m, "arith-m", 1)]
    client = openai_client(chat_node)
    try:
        for name in ("arith-m", "ARITH-M", arith_m):
            assert (await client.models.retrieve(name)).id == arith_m
        assert (await client.models.retrieve("pouwchain-swarm")).id == "pouwchain-swarm"
        for missing in ("gpt-4", "arith-l", "ab" * 32):  # unknown, or known but not served
            with pytest.raises(openai.NotFoundError) as err:
                await client.models.retrieve(missing)
            assert err.value.code == "model_not_found"
            with pytest.raises(openai.NotFoundError) as err:
                await client.chat.completions.create(
                    model=missing, messages=[{"role": "user", "content": QUESTION}])
            assert err.value.code == "model_not_found" and err.value.param == "model"
        assert svc(chat_node).rounds == {}
    finally:
        await client.close()


@pytest.mark.slow
async def test_smollm2_node_honours_options_and_measures_tokens(tmp_path: Path,
                                                               llm_cache: Path) -> None:
    """The node's SmolLM2 backend (`LLMSwarmBackend`, float path) on one node: the answer,
    stop and max_tokens at the answerer, and the context window measured with the model's
    tokenizer."""
    backend = LLMSwarmBackend(load_engine(cache_dir=llm_cache, int8=False))
    node = await solo_chat_node(tmp_path, backend)
    client = openai_client(node)
    france = [{"role": "user", "content": "What is the capital of France?"}]
    try:
        listed = (await client.models.list()).data
        assert [(m.model_extra or {})["name"] for m in listed] == [
            "pouwchain-swarm", "SmolLM2-135M-Instruct"]
        completion = await client.chat.completions.create(
            model="SmolLM2-135M-Instruct", messages=france, max_tokens=24)  # type: ignore[arg-type]
        assert "Paris" in (completion.choices[0].message.content or "")
        assert completion.model == "SmolLM2-135M-Instruct"
        cut = await client.chat.completions.create(
            model="pouwchain-swarm", messages=france, stop=["Paris"])  # type: ignore[arg-type]
        assert "Paris" not in (cut.choices[0].message.content or "")
        short = await client.chat.completions.create(
            model="pouwchain-swarm", messages=france, max_tokens=2)  # type: ignore[arg-type]
        assert short.usage is not None and short.usage.completion_tokens <= 2
        assert short.choices[0].finish_reason == "length"
        # 12 000 bytes but ~2 000 tokens: fits by the tokenizer (a byte bound would refuse it)
        await check_context(backend, "hello " * 2000, 16)
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(
                model="pouwchain-swarm", messages=[{"role": "user", "content": "hello " * 9000}])
        assert err.value.code == "context_length_exceeded" and "tokens" in str(err.value)
    finally:
        await client.close()
        await node.stop()


def test_generation_options_wire_round_trip_and_checks() -> None:
    options = GenerationOptions(max_tokens=12, temperature=0.5, stop=("\n", "END"))
    assert GenerationOptions.from_wire(options.wire()) == options
    assert GenerationOptions.from_wire([None, 1, []]) == GenerationOptions(temperature=1.0)
    assert GenerationOptions().is_default and not options.is_default
    bads: list[Any] = [[0, None, []], [5000, None, []], [None, -1.0, []],
                       [None, None, ["a"] * 5], [None, None, [""]], [None, None, "stop"],
                       [1, 2], "x", [True, None, []]]
    for bad in bads:
        with pytest.raises(ValueError):
            GenerationOptions.from_wire(bad)


async def test_usage_counts_the_serving_models_tokens(tmp_path: Path) -> None:
    """Issue 13: ``usage.prompt_tokens`` was 2 for a 5,000-character prompt (words). The
    built-in models count characters (their vocabulary); a model this node does not run is
    estimated at 4 bytes a token."""
    arith = await solo_chat_node(tmp_path / "arith")
    wordy = await solo_chat_node(tmp_path / "wordy", WordyBackend())
    try:
        client = openai_client(arith)
        try:
            done = await client.chat.completions.create(
                model="pouwchain-swarm", messages=[{"role": "user", "content": QUESTION}])
        finally:
            await client.close()
        assert done.usage is not None
        assert done.usage.prompt_tokens == len(QUESTION)
        assert done.usage.completion_tokens == len(done.choices[0].message.content or "")
        client = openai_client(wordy)
        try:
            long = await client.chat.completions.create(
                model="pouwchain-swarm", messages=[{"role": "user", "content": "x" * 5000}])
        finally:
            await client.close()
        assert long.usage is not None and long.usage.prompt_tokens == 1250
        assert long.usage.total_tokens == 1250 + long.usage.completion_tokens
    finally:
        await arith.stop()
        await wordy.stop()


async def test_legacy_completions_with_the_openai_client(chat_node: Node) -> None:
    """``POST /v1/completions``: the prompt is the question, the same round and options,
    answered as a ``text_completion`` (streamed too); its errors are the chat route's."""
    client = openai_client(chat_node)
    try:
        chat = await client.chat.completions.create(
            model="pouwchain-swarm", messages=[{"role": "user", "content": QUESTION}])
        done = await client.completions.create(model="pouwchain-swarm", prompt=QUESTION)
        assert done.object == "text_completion" and done.id.startswith("cmpl-")
        assert done.choices[0].text == chat.choices[0].message.content
        assert done.choices[0].finish_reason == "stop"
        assert done.usage is not None and done.usage.prompt_tokens == len(QUESTION)
        listed = await client.completions.create(model="arith-m", prompt=[QUESTION])
        assert listed.choices[0].text == done.choices[0].text and listed.model == "arith-m"
        stream = await client.completions.create(model="pouwchain-swarm", prompt=QUESTION,
                                                 stream=True)
        pieces = [c.choices[0].text async for c in stream if c.choices]
        assert "".join(pieces) == done.choices[0].text
        with pytest.raises(openai.UnprocessableEntityError) as unservable:
            await client.completions.create(model="pouwchain-swarm", prompt="Write a poem.")
        assert unservable.value.code == "unsupported_prompt"
        for bad, param in (({"prompt": 7}, "prompt"), ({"prompt": ["a", "b"]}, "prompt"),
                           ({"prompt": "x", "echo": True}, "echo"),
                           ({"prompt": "x", "best_of": 3}, "best_of"),
                           ({"prompt": "x", "max_tokens": 0}, "max_tokens")):
            async with aiohttp.ClientSession() as session, session.post(
                    f"{chat_url(chat_node)}/v1/completions", json=bad) as resp:
                body = await resp.json()
            assert resp.status == 400 and body["error"]["param"] == param, body
        with pytest.raises(openai.NotFoundError) as unknown:
            await client.completions.create(model="gpt-3.5-turbo-instruct", prompt=QUESTION)
        assert unknown.value.code == "model_not_found"
    finally:
        await client.close()
