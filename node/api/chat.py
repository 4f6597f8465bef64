"""Client routes of the swarm: OpenAI-compatible chat completions and the round view.

- ``POST /v1/chat/completions``: the last user message is the question; the node runs a
  swarm round (`node.swarm.service`) and answers with the chosen answer as an OpenAI
  ``chat.completion`` (or ``chat.completion.chunk`` SSE events with ``"stream": true``).
  ``model`` names the swarm (``pouwchain-swarm``) or one model (id or readable name): the
  round draws from that model's nodes. ``max_tokens``, ``temperature`` and ``stop`` are
  validated and travel to the answerers with the round (`node.swarm.generation`); the
  chosen answer is cut by them here too. A question past the context window is a 400
  ``context_length_exceeded``; an empty one a 400 that starts no round.
  Extra fields: ``round_id``, ``answerer`` (the chosen node), ``judges`` (how many judges
  the round drew), ``score`` (σ(θ), 0..1) and ``settlement_status``. Optional extra
  request field ``fee`` (integer). Errors are
  OpenAI-style ``{"error": {"message", "type", "param", "code"}, "reason"}`` (every route's shape).
- ``POST /v1/completions``: OpenAI's legacy completions, the ``prompt`` as the question
  (`legacy_as_chat`), answered as a ``text_completion`` (streamed: ``text_completion``
  events), with the same options, extras and errors.
- ``POST /api/v1/swarm/requests``: ``{"request": hex}``, a `RequestAnnouncement` its client
  signed (`pouwchain ask --wallet`); the fee comes from the client's swarm escrow, which must
  cover it (402 otherwise). Answers with the round view once the fast path is done.
  A round without an answer is the answerers' reason at once (`round_failed`: 422
  ``unsupported_prompt``, 400 ``context_length_exceeded``, 502 ``answerers_failed``, 504
  ``no_answer``; streamed: an error event), a swarm still forming 503 ``no_swarm_nodes``
  with ``Retry-After``.
- ``GET /api/v1/rounds/{id}``: answers, judgments, strengths, abstentions and settlement
  status; ``GET /api/v1/rounds``: the rounds held here, newest first.
- ``GET /v1/models``: the swarm as one model, ``pouwchain-swarm``, then the models its
  capable nodes serve (registry, or the interim candidates), named where known;
  ``GET /v1/models/{model}`` one of them (404 ``model_not_found`` otherwise).
- ``GET /api/v1/swarm/registration``: the node's registration machine
  (`node.swarm.registration`).

It also adds the swarm's sections to the node API's routes: ``swarm`` in
``/api/v1/status``, the ``swarm_registered`` check of ``/ready`` and the swarm's
``/metrics`` families.

The API imports the swarm room, never the reverse: the builder calls `register_routes`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import math
import time
from typing import Any

from aiohttp import web

from contracts.registry import is_capable, swarm_node_ids
from contracts.swarm import ANY_MODEL
from core.state import State
from node.api.chain import API_KEY
from node.api.errors import ApiError, error_body, read_json
from node.api.metrics import MetricsText
from node.swarm.errors import FeeNotCovered, SwarmUnavailable
from node.swarm.generation import (
    MAX_STOP,
    MAX_STOP_CHARS,
    MAX_TEMPERATURE,
    MAX_TOKENS_LIMIT,
    GenerationOptions,
    bound_words,
    cut_at_stop,
)
from node.swarm.registration import CALIBRATED, OFF, SwarmRegistration
from node.swarm.registration import ROUTE as REGISTRATION_ROUTE
from node.swarm.round import RoundState
from node.swarm.service import SwarmService
from swarm.bradley_terry import FRACTION_BITS
from swarm.messages import MAX_PROMPT, RequestAnnouncement
from swarm.runtime.base import ChatModelBackend, InferenceBackend, file_model_id
from swarm.runtime.llm.shipped import MODEL_ID as SMOLLM2_MODEL_ID
from swarm.runtime.variants import VARIANT_NAMES, variant_path

MODEL_NAME = "pouwchain-swarm"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
MAX_BODY = 1 << 20
#: the context window a prompt must fit (SmolLM2-135M's), in tokens
CONTEXT_WINDOW = 8192
#: tokens the chat template may add around the question (system prompt, role markers)
TEMPLATE_TOKENS = 64
#: the longest question a round can carry, in UTF-8 bytes
MAX_PROMPT_BYTES = MAX_PROMPT
DEFAULT_ROUND_LIST = 20
MAX_ROUND_LIST = 1000  # rounds a node keeps in memory (`node.swarm.service.MAX_ROUNDS`)
#: seconds between SSE comments while a streamed round runs (proxies keep the stream open)
KEEPALIVE_SECONDS = 10.0
#: ``Retry-After`` of a 503 ``no_swarm_nodes``: a forming swarm registers within blocks
RETRY_AFTER_SECONDS = 10
#: HTTP status of a failed round, by its code (`node.swarm.round.RoundState.failure`):
#: the request's own reasons are 4xx (no retry helps), the answerers' failures 5xx
FAILURE_STATUS = {"unsupported_prompt": 422, "context_length_exceeded": 400,
                  "answerers_failed": 502, "no_answer": 504}


class _BadRequest(Exception):
    """A chat request the route answers with 400 (``param``: the offending field)."""

    def __init__(self, message: str, *, param: str | None = None,
                 code: str = "invalid_request") -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class _UnknownModel(Exception):
    """A request naming a model the swarm does not know (404 ``model_not_found``)."""


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


@dataclasses.dataclass(frozen=True)
class ChatRequest:
    """A validated chat completion request."""

    question: str
    stream: bool
    fee: int
    model: bytes  # ANY_MODEL: the whole swarm
    options: GenerationOptions
    include_usage: bool = False  # stream_options.include_usage: a last chunk with usage


@functools.cache
def known_models() -> dict[bytes, str]:
    """Model id -> readable name of the models this code ships (SmolLM2, the arithmetic
    variants)."""
    names = {SMOLLM2_MODEL_ID: SMOLLM2_NAME}
    for name in VARIANT_NAMES:
        path = variant_path(name)
        if path.is_file():
            names[file_model_id(path.read_bytes())] = name
    return names


def model_name(model: bytes) -> str:
    """The readable name of a model id (its hex when unknown)."""
    return MODEL_NAME if model == ANY_MODEL else known_models().get(model, model.hex())


def resolve_model(name: str) -> bytes | None:
    """The model id a request names: ``pouwchain-swarm`` (any model), a readable name from
    `known_models` (case-insensitive) or 64 hex digits; None: unknown."""
    if name == MODEL_NAME:
        return ANY_MODEL
    for model, known in known_models().items():
        if known.lower() == name.lower():
            return model
    try:
        model = bytes.fromhex(name)
    except ValueError:
        return None
    return model if len(model) == 32 else None


def _number(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadRequest(f"'{key}' must be a number", param=key, code="invalid_type")
    if not math.isfinite(value) or not 0 <= value <= MAX_TEMPERATURE:
        raise _BadRequest(f"'{key}' must be between 0 and {MAX_TEMPERATURE:g}", param=key,
                          code="invalid_value")
    return float(value)


def _max_tokens(body: dict[str, Any]) -> int | None:
    key = "max_completion_tokens" if body.get("max_tokens") is None else "max_tokens"
    value = body.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise _BadRequest(f"'{key}' must be an integer", param=key, code="invalid_type")
    if not 1 <= value <= MAX_TOKENS_LIMIT:
        raise _BadRequest(f"'{key}' must be between 1 and {MAX_TOKENS_LIMIT}", param=key,
                          code="invalid_value")
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _BadRequest("'stop' must be a string or an array of strings", param="stop",
                          code="invalid_type")
    if len(stops) > MAX_STOP or any(not s or len(s) > MAX_STOP_CHARS for s in stops):
        raise _BadRequest(f"'stop' takes at most {MAX_STOP} non-empty strings of at most "
                          f"{MAX_STOP_CHARS} characters", param="stop", code="invalid_value")
    return tuple(stops)


def parse_chat_request(body: Any) -> ChatRequest:
    """The validated request; raises _BadRequest (400) or _UnknownModel (404)."""
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
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _BadRequest("'stream' must be a boolean", param="stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and (
            not isinstance(stream_options, dict) or
            not isinstance(stream_options.get("include_usage", False), bool)):
        raise _BadRequest("'stream_options' must be an object with a boolean 'include_usage'",
                          param="stream_options", code="invalid_type")
    include_usage = bool(stream and stream_options and stream_options.get("include_usage"))
    n = body.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise _BadRequest("only n=1 is supported: the swarm returns its one chosen answer",
                          param="n", code="invalid_value")
    fee = body.get("fee", 0)
    if type(fee) is not int or not 0 <= fee < 2**64:
        raise _BadRequest("'fee' must be a non-negative integer", param="fee")
    name = body.get("model", MODEL_NAME)
    if not isinstance(name, str):
        raise _BadRequest("'model' must be a string", param="model")
    options = GenerationOptions(max_tokens=_max_tokens(body),
                                temperature=_number(body, "temperature"), stop=_stop(body))
    model = resolve_model(name)
    if model is None:
        raise _UnknownModel(name)
    return ChatRequest(question, stream, fee, model, options, include_usage)


def _tokenizer(backend: InferenceBackend | None) -> ChatModelBackend | None:
    """The node's language model (SmolLM2), whose tokenizer measures prompts exactly."""
    return backend if isinstance(backend, ChatModelBackend) else None


def count_tokens(backend: InferenceBackend | None, served: bytes | None, text: str, *,
                 chat: bool = False) -> int:
    """``text``'s length in the tokens of the model that ``served`` it: exact with this
    node's own language model when it is that model (``chat``: the prompt in its chat
    template, as the answerer saw it); characters for the built-in arithmetic models (their
    vocabulary is characters). Otherwise (a model this node does not run) an estimate: a
    prompt (``chat``) as one token per 4 UTF-8 bytes, the rule of thumb for byte-level
    BPE, never fewer than one per word; an answer in words, the unit `bound_words` cut it
    to ``max_tokens`` in."""
    llm = _tokenizer(backend)
    if llm is not None and (served is None or served == llm.model_id):
        return llm.prompt_tokens(text) if chat else llm.count_tokens(text)
    if served is not None and known_models().get(served) in VARIANT_NAMES:
        return len(text)
    words = len(text.split())
    return max(words, -(-len(text.encode()) // 4)) if chat else words


def prompt_tokens(backend: InferenceBackend | None, question: str) -> int | None:
    """The question's length in the model's tokens, chat template included (None: this node
    has no tokenizer)."""
    llm = _tokenizer(backend)
    if llm is None:
        return None
    return llm.prompt_tokens(question)


async def check_context(backend: InferenceBackend | None, question: str,
                        max_tokens: int) -> None:
    """Raises _BadRequest ``context_length_exceeded`` if the prompt (in the chat template)
    plus ``max_tokens`` does not fit the context window: measured with the model's tokenizer
    when this node serves SmolLM2, else bounded by the prompt's UTF-8 bytes (a token is at
    least one byte, so a prompt that passes surely fits; a longer one is refused)."""
    size = len(question.encode())
    llm = _tokenizer(backend)
    window = CONTEXT_WINDOW if llm is None else llm.context_length
    if size <= MAX_PROMPT_BYTES and size + TEMPLATE_TOKENS + max_tokens <= window:
        return
    tokens = None if size > MAX_PROMPT_BYTES else \
        await asyncio.to_thread(prompt_tokens, backend, question)
    if tokens is None or tokens + max_tokens > window:
        measured = f"{tokens} tokens" if tokens is not None else f"{size} bytes"
        raise _BadRequest(
            f"This model's maximum context length is {window} tokens. Your prompt is "
            f"{measured} and max_tokens is {max_tokens}; shorten the prompt or lower "
            f"max_tokens.", param="messages", code="context_length_exceeded")


def _score(state: RoundState) -> float | None:
    """The chosen answer's strength σ(θ) in 0..1 (None: not settled)."""
    if state.settlement is None or not state.settlement.outcome.scores:
        return None
    return float(state.settlement.outcome.scores[0] / (1 << FRACTION_BITS))


def _extras(state: RoundState) -> dict[str, Any]:
    """Our fields beyond OpenAI's: which round, who answered, its score, its settlement, and
    how many judges the round drew (docs/swarm.md §5.2a: the coalition bound needs enough)."""
    return {"round_id": state.round_id.hex(),
            "answerer": None if state.chosen is None else state.chosen.hex(),
            "judges": len(state.judges),
            "score": _score(state), "settlement_status": state.settlement_status}


@dataclasses.dataclass(frozen=True)
class Reply:
    """What the client gets of a finished round: the chosen answer under its options."""

    state: RoundState
    model: str
    text: str
    finish_reason: str  # "stop", or "length" when max_tokens bounded the answer
    prompt_tokens: int
    completion_tokens: int

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def make_reply(state: RoundState, chat: ChatRequest, backend: InferenceBackend | None,
               *, served: bytes | None, default_max_tokens: int) -> Reply:
    """The chosen answer cut at the client's stop strings and bounded to its max_tokens
    (answerers already do both, `node.swarm.generation`; a node that did not is cut here);
    ``usage`` in the tokens of ``served``, the chosen answerer's model (`count_tokens`)."""
    options = chat.options
    max_tokens = options.max_tokens or default_max_tokens
    text = bound_words(cut_at_stop(state.answer or "", options.stop), max_tokens)
    completion = count_tokens(backend, served, text)
    return Reply(state=state, model=model_name(chat.model), text=text,
                 finish_reason="length" if options.max_tokens is not None and
                 completion >= options.max_tokens else "stop",
                 prompt_tokens=count_tokens(backend, served, state.prompt, chat=True),
                 completion_tokens=completion)


def completion_json(reply: Reply, created: int) -> dict[str, Any]:
    """A finished round as an OpenAI ``chat.completion``."""
    state = reply.state
    return {"id": f"chatcmpl-{state.round_id.hex()}", "object": "chat.completion",
            "created": created, "model": reply.model,
            "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                         "message": {"role": "assistant", "content": reply.text}}],
            "usage": reply.usage, **_extras(state)}


def _chunk(reply: Reply, created: int, delta: dict[str, str] | None,
           finish: str | None) -> bytes:
    """One ``chat.completion.chunk`` SSE event of a streamed answer (``delta`` None: the
    usage chunk, with no choices, as OpenAI sends for ``include_usage``)."""
    state = reply.state
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": f"chatcmpl-{state.round_id.hex()}", "object": "chat.completion.chunk",
            "created": created, "model": reply.model, "choices": choices,
            **({"usage": reply.usage} if delta is None else {}), **_extras(state)}
    return f"data: {json.dumps(body)}\n\n".encode()


def legacy_as_chat(body: Any) -> Any:
    """A legacy completions body as the chat body it means: its ``prompt`` (a string, or an
    array of one string) as the user message; ``suffix``, ``echo``, ``best_of`` and
    ``logprobs`` are refused (the swarm returns one chosen answer, no token data)."""
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise _BadRequest("'prompt' must be a string (or an array of one string)",
                          param="prompt", code="invalid_type")
    for key in ("suffix", "echo", "best_of", "logprobs"):
        if body.get(key) not in (None, False, 1 if key == "best_of" else None):
            raise _BadRequest(f"'{key}' is not supported: the swarm returns one chosen answer",
                              param=key, code="invalid_value")
    rest = {k: v for k, v in body.items() if k != "prompt"}
    return {**rest, "messages": [{"role": "user", "content": prompt}]}


def text_completion_json(reply: Reply, created: int) -> dict[str, Any]:
    """A finished round as an OpenAI (legacy) ``text_completion``."""
    state = reply.state
    return {"id": f"cmpl-{state.round_id.hex()}", "object": "text_completion",
            "created": created, "model": reply.model,
            "choices": [{"index": 0, "text": reply.text, "logprobs": None,
                         "finish_reason": reply.finish_reason}],
            "usage": reply.usage, **_extras(state)}


def _text_chunk(reply: Reply, created: int, delta: dict[str, str] | None,
                finish: str | None) -> bytes:
    """One streamed ``text_completion`` event (`_chunk`'s legacy twin)."""
    state = reply.state
    choices = [] if delta is None else [{"index": 0, "text": delta.get("content", ""),
                                         "logprobs": None, "finish_reason": finish}]
    body = {"id": f"cmpl-{state.round_id.hex()}", "object": "text_completion",
            "created": created, "model": reply.model, "choices": choices,
            **({"usage": reply.usage} if delta is None else {}), **_extras(state)}
    return _event(body)


def _event(body: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``body``."""
    return f"data: {json.dumps(body)}\n\n".encode()


def swarm_forming(exc: SwarmUnavailable) -> ApiError:
    """No node can be drawn yet (none announced a backend, or none is registered and
    calibrated): 503 with ``Retry-After``, the one failure worth retrying as it is."""
    return ApiError(503, "no_swarm_nodes", f"{exc}; the swarm is still forming, retry later",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def round_failed(state: RoundState) -> ApiError:
    """A round that got no answer, as the client's error: the answerers' own reason
    (`RoundState.failure`), its round and abstentions under ``error``."""
    code = state.error_code or "no_answer"
    return ApiError(FAILURE_STATUS.get(code, 502), code,
                    f"round {state.round_id.hex()}: {state.error}",
                    extra={"round_id": state.round_id.hex(),
                           "abstentions": state.abstention_view()})


class ChatApi:
    """The swarm's client routes over one `SwarmService`."""

    def __init__(self, service: SwarmService, registration: SwarmRegistration) -> None:
        self.service = service
        self.registration = registration

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/chat/completions``: one swarm round, its chosen answer."""
        return await self.serve(request, await self.read_request(request, legacy=False),
                                legacy=False)

    async def text_completions(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/completions`` (OpenAI's legacy completions): the ``prompt`` is the
        question; the same round as a chat, answered as a ``text_completion``."""
        return await self.serve(request, await self.read_request(request, legacy=True),
                                legacy=True)

    async def read_request(self, request: web.Request, *, legacy: bool) -> ChatRequest:
        """The validated request of either route (400s, 404 ``model_not_found``)."""
        body = await read_json(request, limit=MAX_BODY, too_large="too_large",
                               bad="invalid_json")
        backend = self.service.backend
        try:
            chat = parse_chat_request(legacy_as_chat(body) if legacy else body)
            await check_context(backend, chat.question,
                                chat.options.max_tokens or self.service.max_tokens)
        except _BadRequest as exc:
            raise ApiError(400, exc.code, str(exc), param=exc.param) from exc
        except _UnknownModel as exc:
            raise ApiError(404, "model_not_found", f"The model '{exc}' does not exist; "
                           "GET /v1/models lists the models the swarm serves",
                           param="model") from exc
        if chat.model != ANY_MODEL and chat.model not in self.served_models():
            raise ApiError(404, "model_not_found", f"No capable swarm node serves the model "
                           f"'{model_name(chat.model)}'; GET /v1/models lists the models "
                           "the swarm serves", param="model")
        return chat

    async def serve(self, request: web.Request, chat: ChatRequest, *,
                    legacy: bool) -> web.StreamResponse:
        """Run the round and answer: JSON, or a stream that starts at once."""
        created = int(time.time())
        try:
            round_id, running = self.service.begin(chat.question, fee=chat.fee,
                                                   model=chat.model, options=chat.options)
        except SwarmUnavailable as exc:
            raise swarm_forming(exc) from exc
        if not chat.stream:
            state = await asyncio.shield(running)
            if state.answer is None:
                raise round_failed(state)
            reply = self.reply(state, chat)
            return web.json_response(text_completion_json(reply, created) if legacy
                                     else completion_json(reply, created))
        # the stream starts at once (the first chunk names the round); a round that fails
        # ends it with an error event, as OpenAI's streams do
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        head = {"id": f"{'cmpl' if legacy else 'chatcmpl'}-{round_id.hex()}",
                "object": "text_completion" if legacy else "chat.completion.chunk",
                "created": created, "model": model_name(chat.model), "round_id": round_id.hex()}
        first = {"index": 0, "text": "", "logprobs": None, "finish_reason": None} if legacy \
            else {"index": 0, "delta": {"role": "assistant", "content": ""},
                  "finish_reason": None}
        await response.write(_event({**head, "choices": [first]}))
        while True:
            done, _ = await asyncio.wait({running}, timeout=KEEPALIVE_SECONDS)
            if done:
                break
            await response.write(b": the swarm round is running\n\n")  # an SSE comment
        state = running.result()
        if state.answer is None:
            error = round_failed(state)
            await response.write(_event(error_body(request.path, error.status, error.reason,
                                                   error.message, extra=error.extra)))
            await response.write_eof()
            return response
        reply = self.reply(state, chat)
        chunk = _text_chunk if legacy else _chunk
        words = reply.text.split(" ")
        for i, word in enumerate(words):
            await response.write(chunk(reply, created,
                                       {"content": word if i == 0 else " " + word}, None))
        await response.write(chunk(reply, created, {}, reply.finish_reason))
        if chat.include_usage:
            await response.write(chunk(reply, created, None, None))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def reply(self, state: RoundState, chat: ChatRequest) -> Reply:
        """The client's view of an answered round (usage in the serving model's tokens)."""
        return make_reply(state, chat, self.service.backend,
                          served=self.model_of(state.chosen),
                          default_max_tokens=self.service.max_tokens)

    def model_of(self, node: bytes | None) -> bytes | None:
        """The model ``node`` serves (registry, or what it announced), None if unknown."""
        if node is None:
            return None
        return next((model for model, nodes in sorted(self.served_models().items())
                     if node in nodes), None)

    async def signed_request(self, request: web.Request) -> web.Response:
        """``POST /api/v1/swarm/requests``: a round for a request its client signed."""
        body = await read_json(request, limit=MAX_BODY, too_large="too_large",
                               bad="bad_request")
        text = body.get("request") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise ApiError(400, "bad_request",
                           'body must be {"request": hex of a signed swarm request}')
        try:
            announcement = RequestAnnouncement.decode(bytes.fromhex(text))
        except ValueError as exc:  # not hex, or EncodingError: not a request
            raise ApiError(400, "bad_request", f"not a signed swarm request: {exc}") from exc
        try:
            state = await self.service.ask_signed(announcement)
        except ValueError as exc:
            raise ApiError(400, "bad_request", str(exc)) from exc
        except FeeNotCovered as exc:
            raise ApiError(402, "fee_not_covered", str(exc)) from exc
        except SwarmUnavailable as exc:
            raise swarm_forming(exc) from exc
        return web.json_response(self._round_json(state))

    def _round_json(self, state: RoundState) -> dict[str, Any]:
        """The round's view with its settlement refreshed from chain state first: the
        refresh fills ``settled``, so one answer never says "settled at height h" beside
        ``settled: null`` (seen once under load in tests/functional/test_swarm.py)."""
        status = self.service.settlement_status(state)
        view = state.view()
        view["settlement_status"] = status
        return view

    async def round_view(self, request: web.Request) -> web.Response:
        """``GET /api/v1/rounds/{id}``: the round as this node holds it."""
        text = request.match_info["round_id"]
        try:
            round_id = bytes.fromhex(text)
        except ValueError:
            round_id = b""
        if len(round_id) != 32:
            raise ApiError(400, "bad_round_id", "round id must be 64 hex digits")
        state = self.service.rounds.get(round_id)
        if state is None:
            raise ApiError(404, "not_found", "unknown round")
        return web.json_response(self._round_json(state))

    async def round_list(self, request: web.Request) -> web.Response:
        """``GET /api/v1/rounds?limit=N``: the rounds this node holds, newest first."""
        text = request.query.get("limit", str(DEFAULT_ROUND_LIST))
        if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_ROUND_LIST):
            raise ApiError(400, "bad_limit", f"limit must be an integer 1..{MAX_ROUND_LIST}",
                           param="limit")
        rounds = sorted(self.service.rounds.values(), key=lambda s: s.started,
                        reverse=True)[:int(text)]
        return web.json_response({"count": len(self.service.rounds), "rounds": [
            {"round_id": s.round_id.hex(), "status": s.status, "origin": s.origin.hex(),
             "fee": s.announcement.request.fee, "model": model_name(
                 s.announcement.request.model), "height": s.height,
             "prompt": s.prompt[:120], "answerers": len(s.answerers),
             "chosen": None if s.chosen is None else s.chosen.hex(),
             "error_code": s.error_code, "settlement_status": s.settlement_status}
            for s in rounds]})

    # -- status, readiness, metrics (sections of the node API's routes) -----------------------

    def unsettled(self) -> list[RoundState]:
        """Complete on-chain rounds this node holds that have not settled yet."""
        return [s for s in self.service.rounds.values()
                if s.height and s.status == "complete" and s.settled is None]

    def swarm_status(self) -> dict[str, Any]:
        """The ``swarm`` section of ``/api/v1/status``: registration, rounds, abstentions,
        settlement lag (`node.swarm.stats`)."""
        service = self.service
        registration = self.registration.status()
        view = service.stats.view()
        unsettled = self.unsettled()
        height = service.host.chain.height
        view["settlement"] |= {
            "unsettled": len(unsettled),
            "oldest_unsettled_blocks": max((height - s.height for s in unsettled),
                                           default=None)}
        backend = service.backend
        return {"enabled": backend is not None,
                "model": None if backend is None else model_name(backend.model_id),
                "registration": {k: registration[k] for k in (
                    "enabled", "phase", "stake", "calibration", "last_error")},
                **self.registry_entry(), **view}

    def registry_entry(self) -> dict[str, bool]:
        """Whether the chain's swarm registry lists this node, and as capable (calibrated):
        what drawing it in on-chain rounds needs, however it registered."""
        state = State(self.service.host.chain.state_view())
        node = self.service.node_id
        listed = state.swarm_node(node) is not None
        return {"registered": listed, "capable": listed and is_capable(state, node)}

    def registered(self) -> tuple[bool, str]:
        """A ``/ready`` check: a node that registers itself is ready once calibrated."""
        phase = self.registration.phase
        if phase == OFF:
            return True, "not registering (swarm_register off)"
        return phase == CALIBRATED, f"registration {phase}"

    def swarm_metrics(self, out: MetricsText) -> None:
        """The swarm's ``/metrics`` families."""
        stats = self.service.stats
        outcomes = {"answered": 0, "unsupported_prompt": 0, "context_length_exceeded": 0,
                    "answerers_failed": 0, "no_answer": 0} | dict(stats.originated)
        out.family("swarm_rounds_total", "counter",
                   "Swarm rounds this node originated, by outcome (answered, or the code the "
                   "client got).", [({"outcome": k}, v) for k, v in sorted(outcomes.items())])
        out.family("swarm_commitments_total", "counter",
                   "Answers and judgments this node committed to in rounds it was drawn for.",
                   [({"role": "answer"}, stats.answered), ({"role": "judgment"}, stats.judged)])
        out.family("swarm_abstentions_total", "counter",
                   "Signed abstentions this node sent, by role and reason.",
                   [({"role": role, "reason": reason}, n)
                    for (role, reason), n in sorted(stats.abstained.items())])
        out.histogram("swarm_round_seconds",
                      "Latency of the rounds this node originated, announce to complete.",
                      [({"outcome": k}, h) for k, h in sorted(stats.round_seconds.items())])
        out.histogram("swarm_settlement_lag_blocks",
                      "Blocks from a round's height to the block that settled it.",
                      [({}, stats.settlement_lag)])
        unsettled = self.unsettled()
        height = self.service.host.chain.height
        out.one("swarm_unsettled_rounds", "gauge",
                "Complete on-chain rounds held here, not settled yet.", len(unsettled))
        out.one("swarm_oldest_unsettled_blocks", "gauge",
                "Blocks since the oldest unsettled round's height (0: none).",
                max((height - s.height for s in unsettled), default=0))
        out.one("swarm_registered", "gauge",
                "1 once this node is registered and calibrated in the swarm registry.",
                self.registration.phase == CALIBRATED)

    async def registration_status(self, request: web.Request) -> web.Response:
        """``GET /api/v1/swarm/registration``: where the node is in joining the registry."""
        return web.json_response(self.registration.status())

    def served_models(self) -> dict[bytes, set[bytes]]:
        """Model id -> the capable nodes serving it: the chain registry's calibrated nodes
        once any is registered, else (interim rule) us and the connected peers that
        announced a backend."""
        state = State(self.service.host.chain.state_view())
        served: dict[bytes, set[bytes]] = {}
        registered = swarm_node_ids(state)
        if registered:
            for node in registered:
                record = state.swarm_node(node)
                if record is not None and is_capable(state, node):
                    for model in record.models:
                        served.setdefault(model, set()).add(node)
            return served
        peers = self.service.peers
        pairs = [(n, m) for n, m in self.service.capable_peers.items()
                 if peers.get(n) is not None]
        if self.service.backend is not None:
            pairs.append((self.service.node_id, self.service.backend.model_id))
        for node, model in pairs:
            served.setdefault(model, set()).add(node)
        return served

    def model_list(self) -> list[dict[str, Any]]:
        """The swarm as one model, then every served model (`served_models`)."""
        served = self.served_models()
        swarm = {"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "pouwchain",
                 "name": MODEL_NAME, "nodes": len(set().union(*served.values()))}
        return [swarm] + [
            {"id": model.hex(), "object": "model", "created": 0, "owned_by": "pouwchain",
             "name": model_name(model), "nodes": len(nodes)}
            for model, nodes in sorted(served.items())]

    async def models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the swarm as one model, then every model its capable nodes
        serve (id: the model id in hex; name: readable where this code knows it)."""
        return web.json_response({"object": "list", "data": self.model_list()})

    async def model(self, request: web.Request) -> web.Response:
        """``GET /v1/models/{model}``: one served model, by id or readable name."""
        name = request.match_info["model"]
        wanted = resolve_model(name)
        for entry in self.model_list():
            if wanted is not None and resolve_model(entry["id"]) == wanted:
                return web.json_response(entry)
        raise ApiError(404, "model_not_found", f"The model '{name}' does not exist or no capable "
                       "node serves it; GET /v1/models lists the models the swarm serves",
                       param="model")


def register_routes(app: web.Application, service: SwarmService,
                    registration: SwarmRegistration) -> None:
    """Serve the swarm's client routes (module docstring) and the registration status."""
    api = ChatApi(service, registration)
    node_api = app.get(API_KEY)
    if node_api is not None:  # the node API's sections: status, readiness, metrics
        node_api.status_sections["swarm"] = api.swarm_status
        node_api.ready_checks["swarm_registered"] = api.registered
        node_api.metric_sections.append(api.swarm_metrics)
    app.router.add_post("/v1/chat/completions", api.completions)
    app.router.add_post("/v1/completions", api.text_completions)
    app.router.add_get("/v1/models", api.models)
    app.router.add_get("/v1/models/{model}", api.model)
    app.router.add_get("/api/v1/rounds", api.round_list)
    app.router.add_get("/api/v1/rounds/{round_id}", api.round_view)
    app.router.add_post("/api/v1/swarm/requests", api.signed_request)
    app.router.add_get(REGISTRATION_ROUTE, api.registration_status)

