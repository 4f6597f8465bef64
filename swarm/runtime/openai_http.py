"""Backend for any OpenAI-compatible chat endpoint (llama.cpp server, Ollama, vLLM).

Answers and judgments are both chat completions. The judging prompt asks the model to find
flaws in each answer rather than solve the question afresh (a fresh solution would make the
judge an answerer with extra position bias), and fixes a strict output format that
`parse_judgment` reads robustly (markdown, reasoning blocks, case, trailing chatter).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from swarm.runtime.base import (
    Answer,
    BackendError,
    BackendTimeout,
    Judgment,
    Outcome,
    name_model_id,
)

ANSWER_SYSTEM = (
    "Answer the user's question correctly and concisely. End with the final answer on its "
    "own line."
)

JUDGE_SYSTEM = (
    "You are a strict reviewer comparing two candidate answers to the same question. Do not "
    "write your own solution. Check each answer for flaws: factual or arithmetic errors, "
    "invalid reasoning steps, missing parts, or not answering the question. Length and "
    "confidence are not merits. Reply in exactly this format and nothing else:\n"
    "FLAWS A: <the most serious flaw in answer A, or none>\n"
    "FLAWS B: <the most serious flaw in answer B, or none>\n"
    "VERDICT: <A if answer A is better, B if answer B is better, TIE if equally good or bad>"
)

JUDGE_USER = "Question:\n{question}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"

SCREEN_SYSTEM = (
    "You are a strict reviewer checking one candidate answer to a question. Do not write "
    "your own solution. Look for flaws: factual or arithmetic errors, invalid reasoning "
    "steps, missing parts, or not answering the question. Reply in exactly this format and "
    "nothing else:\n"
    "FLAWS: <the most serious flaw, or none>\n"
    "VERDICT: <GOOD if the answer is correct and complete, BAD otherwise, UNSURE if you "
    "cannot tell>"
)

SCREEN_USER = "Question:\n{question}\n\nAnswer:\n{answer}"
_SCREEN = re.compile(r"verdict\W{0,6}(good|bad|unsure)\b", re.IGNORECASE)

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_VERDICT = re.compile(r"verdict\W{0,6}(A|B|tie)\b", re.IGNORECASE)
_FLAWS = re.compile(r"flaws\s*(?:in\s*)?(?:answer\s*)?([AB])\W{0,4}\s*(.+)", re.IGNORECASE)
_BARE = re.compile(r"^\W*(A|B|tie)\W*$", re.IGNORECASE)
MAX_REASON = 400
T = TypeVar("T")


def parse_judgment(text: str) -> Judgment:
    """Read a judge's reply in the JUDGE_SYSTEM format; raises BackendError if it has none.

    The last VERDICT line wins (models sometimes restate the format first); a reply that is
    only "A", "B" or "tie" is accepted too.
    """
    body = _THINK.sub("", text).strip()
    verdicts = _VERDICT.findall(body)
    if verdicts:
        word = verdicts[-1]
    else:
        bare = _BARE.match(body)
        if bare is None:
            raise BackendError(f"judge reply has no verdict: {body[:120]!r}")
        word = bare.group(1)
    outcome = {"a": Outcome.A, "b": Outcome.B, "tie": Outcome.TIE}[word.lower()]
    flaws = [f"{m.group(1).upper()}: {m.group(2).strip()}" for m in _FLAWS.finditer(body)]
    reason = "; ".join(flaws) if flaws else body
    return Judgment(outcome, reason[:MAX_REASON])


def parse_screen(text: str) -> bool | None:
    """Read a reply in the SCREEN_SYSTEM format: True good, False bad, None unsure; raises
    BackendError if it has no verdict. The last VERDICT line wins."""
    verdicts = _SCREEN.findall(_THINK.sub("", text))
    if not verdicts:
        raise BackendError(f"screen reply has no verdict: {text.strip()[:120]!r}")
    return {"good": True, "bad": False, "unsure": None}[verdicts[-1].lower()]


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        if isinstance(err, str):
            return err
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace")


def _content_of(data: Any) -> tuple[str, float | None]:
    """Message text and summed token log-probs of a non-streaming completion."""
    try:
        choice = data["choices"][0]
        content = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BackendError(f"completion has no message: {str(data)[:200]}") from exc
    if not isinstance(content, str):
        raise BackendError("completion content is not text")
    return content, _logprob_sum(choice.get("logprobs"))


def _logprob_sum(logprobs: Any) -> float | None:
    try:
        items = logprobs["content"]
        return float(sum(float(t["logprob"]) for t in items)) if items else None
    except (KeyError, TypeError, ValueError):
        return None


class OpenAIBackend:
    """InferenceBackend over `POST {base_url}/v1/chat/completions`."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        stream: bool = False,
        logprobs: bool = False,
        temperature: float = 0.0,
        max_concurrency: int = 4,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._concurrency = asyncio.Semaphore(max_concurrency)  # judge_pairs, screen_answers
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[:-3]
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.stream = stream
        self.logprobs = logprobs
        self.temperature = temperature
        self._session: aiohttp.ClientSession | None = None

    @property
    def model_id(self) -> bytes:
        return name_model_id(self.model)

    @classmethod
    async def discover(cls, base_url: str, *, api_key: str | None = None,
                       timeout: float = 10.0, **kwargs: Any) -> OpenAIBackend:
        """A backend for the first model the endpoint declares at GET /v1/models."""
        probe = cls(base_url, model="", api_key=api_key, timeout=timeout)
        try:
            data = await probe._request("GET", "/v1/models", None)
        finally:
            await probe.close()
        try:
            name = str(data["data"][0]["id"])
        except (KeyError, IndexError, TypeError) as exc:
            raise BackendError("endpoint declares no model at /v1/models") from exc
        return cls(base_url, model=name, api_key=api_key, timeout=timeout, **kwargs)

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._session = aiohttp.ClientSession(headers=headers)
        return self._session

    async def _request(self, method: str, path: str, payload: Mapping[str, Any] | None) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().request(method, self.base_url + path,
                                                   json=payload) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise BackendError(f"HTTP {resp.status}: {_error_message(body)}")
                    try:
                        return json.loads(body)
                    except ValueError as exc:
                        raise BackendError(f"malformed JSON from endpoint: {exc}") from exc
        except TimeoutError as exc:
            raise BackendTimeout(f"no response within {self.timeout} s") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"request failed: {exc}") from exc

    async def _stream(self, payload: Mapping[str, Any]) -> tuple[str, float | None]:
        parts: list[str] = []
        logprob: float | None = None
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().post(self.base_url + "/v1/chat/completions",
                                               json=payload) as resp:
                    if resp.status != 200:
                        raise BackendError(
                            f"HTTP {resp.status}: {_error_message(await resp.read())}")
                    async for data in _sse_events(resp.content):
                        if data == "[DONE]":
                            return "".join(parts), logprob
                        try:
                            chunk = json.loads(data)
                        except ValueError as exc:
                            raise BackendError(f"malformed JSON in stream: {exc}") from exc
                        if isinstance(chunk, dict) and "error" in chunk:
                            raise BackendError(f"stream error: {chunk['error']}")
                        try:
                            choice = chunk["choices"][0] if chunk["choices"] else {}
                            piece = choice.get("delta", {}).get("content") or ""
                        except (KeyError, IndexError, TypeError, AttributeError) as exc:
                            raise BackendError(f"malformed stream chunk: {data[:200]}") from exc
                        parts.append(str(piece))
                        lp = _logprob_sum(choice.get("logprobs"))
                        if lp is not None:
                            logprob = (logprob or 0.0) + lp
        except TimeoutError as exc:
            raise BackendTimeout(f"stream not finished within {self.timeout} s") from exc
        except aiohttp.ClientError as exc:
            raise BackendError(f"stream failed: {exc}") from exc
        raise BackendError("stream ended without [DONE]")

    async def complete(self, messages: list[dict[str, str]], *,
                       max_tokens: int) -> tuple[str, float | None]:
        """One chat completion: (text, summed token log-prob if the endpoint gave them)."""
        payload: dict[str, Any] = {
            "model": self.model, "messages": messages, "max_tokens": max_tokens,
            "temperature": self.temperature, "stream": self.stream,
        }
        if self.logprobs:
            payload["logprobs"] = True
        if self.stream:
            return await self._stream(payload)
        return _content_of(await self._request("POST", "/v1/chat/completions", payload))

    async def answer(self, prompt: str, *, max_tokens: int) -> Answer:
        text, lp = await self.complete(
            [{"role": "system", "content": ANSWER_SYSTEM}, {"role": "user", "content": prompt}],
            max_tokens=max_tokens)
        return Answer(text.strip(), self.model_id, lp)

    async def judge(self, question: str, answer_a: str, answer_b: str,
                    *, max_tokens: int = 512) -> Judgment:
        text, _ = await self.complete(
            [{"role": "system", "content": JUDGE_SYSTEM},
             {"role": "user", "content": JUDGE_USER.format(question=question, a=answer_a,
                                                           b=answer_b)}],
            max_tokens=max_tokens)
        return parse_judgment(text)

    async def judge_pairs(self, question: str,
                          pairs: Sequence[tuple[str, str]]) -> list[Judgment]:
        """Concurrent requests, at most `max_concurrency` at a time."""
        return list(await asyncio.gather(*(self._bounded(self.judge(question, a, b))
                                           for a, b in pairs)))

    async def screen_answers(self, question: str, answers: Sequence[str]) -> list[bool | None]:
        return list(await asyncio.gather(*(self._bounded(self.screen(question, a))
                                           for a in answers)))

    async def _bounded(self, call: Awaitable[T]) -> T:
        async with self._concurrency:
            return await call

    async def screen(self, question: str, answer: str, *, max_tokens: int = 256) -> bool | None:
        text, _ = await self.complete(
            [{"role": "system", "content": SCREEN_SYSTEM},
             {"role": "user", "content": SCREEN_USER.format(question=question, answer=answer)}],
            max_tokens=max_tokens)
        return parse_screen(text)


async def _sse_events(content: aiohttp.StreamReader) -> AsyncIterator[str]:
    """The data payloads of a server-sent event stream (multi-line data joined by \\n)."""
    data: list[str] = []
    async for raw in content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
