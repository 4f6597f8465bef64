"""Client routes of the swarm: OpenAI-compatible chat completions and the round view.

- ``POST /v1/chat/completions``: the last user message is the question; the node runs a
  swarm round (`node.swarm.service`) and answers with the chosen answer as an OpenAI
  ``chat.completion`` (or ``chat.completion.chunk`` SSE events with ``"stream": true``).
  Extra fields: ``round_id``, ``answerer`` (the chosen node), ``score`` (σ(θ), 0..1) and
  ``settlement_status``. Optional extra request field ``fee`` (integer). Errors are
  OpenAI-style ``{"error": {"message", "type", "param", "code"}}``.
- ``POST /api/v1/swarm/requests``: ``{"request": hex}``, a `RequestAnnouncement` its client
  signed (`pouwchain ask --wallet`); the fee comes from the client's swarm escrow, which must
  cover it (402 otherwise). Answers with the round view once the fast path is done.
- ``GET /api/v1/rounds/{id}``: answers, judgments, strengths and settlement status.
- ``GET /v1/models``: the swarm as one model, ``pouwchain-swarm``.
- ``GET /api/v1/swarm/registration``: the node's registration machine
  (`node.swarm.registration`).

The API imports the swarm room, never the reverse: the builder calls `register_routes`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from core.errors import EncodingError
from node.swarm.errors import FeeNotCovered, SwarmUnavailable
from node.swarm.registration import ROUTE as REGISTRATION_ROUTE
from node.swarm.registration import SwarmRegistration
from node.swarm.round import RoundState
from node.swarm.service import SwarmService
from swarm.bradley_terry import FRACTION_BITS
from swarm.messages import RequestAnnouncement

MODEL_NAME = "pouwchain-swarm"
MAX_BODY = 1 << 20
MAX_PROMPT_CHARS = 16_000


async def read_body(request: web.Request) -> bytes:
    """The whole body, or its first MAX_BODY + 1 bytes (too large: the caller says 413);
    `StreamReader.read(n)` alone returns whatever the first chunk held."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY:
        chunk = await request.content.read(MAX_BODY + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def openai_error(status: int, message: str, *, code: str, param: str | None = None,
                 kind: str = "invalid_request_error") -> web.Response:
    """An OpenAI-style error body, so OpenAI clients show the message."""
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status=status)


class _BadRequest(Exception):
    """A chat request the route answers with 400 (``param``: the offending field)."""

    def __init__(self, message: str, *, param: str | None = None,
                 code: str = "invalid_request") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def _content_text(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if parts and all(isinstance(p, str) for p in parts):
            return "\n".join(str(p) for p in parts)
    raise _BadRequest("message content must be a string or a list of text parts",
                      param="messages")


def parse_chat_request(body: Any) -> tuple[str, bool, int]:
    """(question, stream, fee) of a chat completion request; raises _BadRequest."""
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty array", param="messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if any(not isinstance(m, dict) or not isinstance(m.get("role"), str) for m in messages):
        raise _BadRequest("every message needs a string 'role'", param="messages")
    if not users:
        raise _BadRequest("no user message", param="messages")
    question = _content_text(users[-1].get("content")).strip()
    if not question:
        raise _BadRequest("the user message is empty", param="messages")
    if len(question) > MAX_PROMPT_CHARS:
        raise _BadRequest(f"question longer than {MAX_PROMPT_CHARS} characters",
                          param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _BadRequest("'stream' must be a boolean", param="stream")
    fee = body.get("fee", 0)
    if type(fee) is not int or not 0 <= fee < 2**64:
        raise _BadRequest("'fee' must be a non-negative integer", param="fee")
    model = body.get("model", MODEL_NAME)
    if not isinstance(model, str):
        raise _BadRequest("'model' must be a string", param="model")
    return question, stream, fee


def _score(state: RoundState) -> float | None:
    """The chosen answer's strength σ(θ) in 0..1 (None: not settled)."""
    if state.settlement is None or not state.settlement.outcome.scores:
        return None
    return float(state.settlement.outcome.scores[0] / (1 << FRACTION_BITS))


def _extras(state: RoundState) -> dict[str, Any]:
    """Our fields beyond OpenAI's: which round, who answered, its score, its settlement."""
    return {"round_id": state.round_id.hex(),
            "answerer": None if state.chosen is None else state.chosen.hex(),
            "score": _score(state), "settlement_status": state.settlement_status}


def completion_json(state: RoundState, created: int) -> dict[str, Any]:
    """A finished round as an OpenAI ``chat.completion``."""
    text = state.answer or ""
    return {"id": f"chatcmpl-{state.round_id.hex()}", "object": "chat.completion",
            "created": created, "model": MODEL_NAME,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": len(state.prompt.split()),
                      "completion_tokens": len(text.split()),
                      "total_tokens": len(state.prompt.split()) + len(text.split())},
            **_extras(state)}


def _chunk(state: RoundState, created: int, delta: dict[str, str],
           finish: str | None) -> bytes:
    """One ``chat.completion.chunk`` SSE event of a streamed answer."""
    body = {"id": f"chatcmpl-{state.round_id.hex()}", "object": "chat.completion.chunk",
            "created": created, "model": MODEL_NAME,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **_extras(state)}
    return f"data: {json.dumps(body)}\n\n".encode()


class ChatApi:
    """The swarm's client routes over one `SwarmService`."""

    def __init__(self, service: SwarmService, registration: SwarmRegistration) -> None:
        self.service = service
        self.registration = registration

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``: one swarm round, its chosen answer."""
        raw = await read_body(request)
        if len(raw) > MAX_BODY:
            return openai_error(413, "request body too large", code="too_large")
        try:
            question, stream, fee = parse_chat_request(json.loads(raw or b"null"))
        except json.JSONDecodeError:
            return openai_error(400, "request body is not valid JSON", code="invalid_json")
        except _BadRequest as exc:
            return openai_error(400, str(exc), code=exc.code, param=exc.param)
        created = int(time.time())
        try:
            state = await self.service.ask(question, fee=fee)
        except SwarmUnavailable as exc:
            return openai_error(503, str(exc), code="no_swarm_nodes", kind="server_error")
        if state.answer is None:
            return openai_error(503, f"round {state.round_id.hex()}: {state.error}",
                                code="no_answer", kind="server_error")
        if not stream:
            return web.json_response(completion_json(state, created))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(_chunk(state, created, {"role": "assistant"}, None))
        words = state.answer.split(" ")
        for i, word in enumerate(words):
            await response.write(_chunk(state, created,
                                        {"content": word if i == 0 else " " + word}, None))
        await response.write(_chunk(state, created, {}, "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def signed_request(self, request: web.Request) -> web.Response:
        """``POST /api/v1/swarm/requests``: a round for a request its client signed."""
        raw = await read_body(request)
        if len(raw) > MAX_BODY:
            return _error(413, "request body too large", "too_large")
        try:
            body = json.loads(raw or b"null")
            announcement = RequestAnnouncement.decode(bytes.fromhex(body["request"]))
        except (ValueError, TypeError, KeyError, EncodingError) as exc:
            return _error(400, f"body must be {{\"request\": hex of a signed swarm request}}: "
                          f"{exc}", "bad_request")
        try:
            state = await self.service.ask_signed(announcement)
        except ValueError as exc:
            return _error(400, str(exc), "bad_request")
        except FeeNotCovered as exc:
            return _error(402, str(exc), "fee_not_covered")
        except SwarmUnavailable as exc:
            return _error(503, str(exc), "no_swarm_nodes")
        view = state.view()
        view["settlement_status"] = self.service.settlement_status(state)
        return web.json_response(view)

    async def round_view(self, request: web.Request) -> web.Response:
        """``GET /api/v1/rounds/{id}``: the round as this node holds it."""
        text = request.match_info["round_id"]
        try:
            round_id = bytes.fromhex(text)
        except ValueError:
            round_id = b""
        if len(round_id) != 32:
            return web.json_response({"error": "round id must be 64 hex digits",
                                      "reason": "bad_round_id"}, status=400)
        state = self.service.rounds.get(round_id)
        if state is None:
            return web.json_response({"error": "unknown round", "reason": "not_found"},
                                     status=404)
        view = state.view()
        view["settlement_status"] = self.service.settlement_status(state)
        return web.json_response(view)

    async def registration_status(self, request: web.Request) -> web.Response:
        """``GET /api/v1/swarm/registration``: where the node is in joining the registry."""
        return web.json_response(self.registration.status())

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the swarm as one model."""
        return web.json_response({"object": "list", "data": [
            {"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "pouwchain"}]})


def register_routes(app: web.Application, service: SwarmService,
                    registration: SwarmRegistration) -> None:
    """Serve the swarm's client routes (module docstring) and the registration status."""
    api = ChatApi(service, registration)
    app.router.add_post("/v1/chat/completions", api.completions)
    app.router.add_get("/v1/models", api.models)
    app.router.add_get("/api/v1/rounds/{round_id}", api.round_view)
    app.router.add_post("/api/v1/swarm/requests", api.signed_request)
    app.router.add_get(REGISTRATION_ROUTE, api.registration_status)


def _error(status: int, message: str, reason: str) -> web.Response:
    """The node API's error shape (docs/api.md)."""
    return web.json_response({"error": message, "reason": reason}, status=status)
