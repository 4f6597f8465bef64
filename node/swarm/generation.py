"""A client's generation options (OpenAI ``max_tokens``, ``temperature``, ``stop``) and how an
answerer applies them to its backend.

The options travel like the prompt: in the round's ``req`` gossip (`node.swarm.service`), as
an optional list ``[max_tokens, temperature, [stop, ...]]`` after the draw; never in the
signed `swarm.messages.SwarmRequest`. Answers are committed text and the settlement never
re-derives them, so the options are outside consensus: a node that ignores them only answers
worse.

`generate` is the one place an answerer calls its backend:

- the SmolLM2 backend gets them as they are (its ``answer_many`` takes ``stop`` and
  ``temperature``);
- any other `InferenceBackend` gets ``answer(prompt, max_tokens=)`` (the Protocol is
  unchanged: openai_http and hf keep working); the built-in arithmetic models count
  characters, not words, and answer one number, so they keep the node's own max_tokens;
- then every answer is cut at the first stop string and bounded to ``max_tokens``
  whitespace-separated words (a backend without a tokenizer may ignore ``max_tokens``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Any

from node.swarm.backend import RoundBackend
from swarm.runtime.base import (
    Answer,
    CharacterModelBackend,
    ChatModelBackend,
    InferenceBackend,
)

#: the most tokens a client may ask for (a reveal carries at most 64 KiB of answer)
MAX_TOKENS_LIMIT = 4096
#: OpenAI's limits on ``stop``: at most 4 sequences
MAX_STOP = 4
MAX_STOP_CHARS = 256
MAX_TEMPERATURE = 2.0


@dataclasses.dataclass(frozen=True)
class GenerationOptions:
    """A client's options (None / empty: the answering node's defaults)."""

    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_tokens is not None and (
                type(self.max_tokens) is not int or
                not 1 <= self.max_tokens <= MAX_TOKENS_LIMIT):
            raise ValueError(f"max_tokens must be an integer in 1..{MAX_TOKENS_LIMIT}")
        if self.temperature is not None and (
                not isinstance(self.temperature, float) or not math.isfinite(self.temperature)
                or not 0.0 <= self.temperature <= MAX_TEMPERATURE):
            raise ValueError(f"temperature must be a number in 0..{MAX_TEMPERATURE:g}")
        if len(self.stop) > MAX_STOP or any(
                not isinstance(s, str) or not s or len(s) > MAX_STOP_CHARS for s in self.stop):
            raise ValueError(f"stop must be at most {MAX_STOP} non-empty strings of at most "
                             f"{MAX_STOP_CHARS} characters")

    @property
    def is_default(self) -> bool:
        return self == GenerationOptions()

    def wire(self) -> list[Any]:
        """The msgpack list the ``req`` gossip carries."""
        return [self.max_tokens, self.temperature, list(self.stop)]

    @classmethod
    def from_wire(cls, obj: Any) -> GenerationOptions:
        """The options of a ``req`` message; raises ValueError (the message is dropped)."""
        if not isinstance(obj, list | tuple) or len(obj) != 3 or \
                not isinstance(obj[2], list | tuple):
            raise ValueError("generation options must be [max_tokens, temperature, stop]")
        temperature = obj[1]
        if isinstance(temperature, int) and not isinstance(temperature, bool):
            temperature = float(temperature)
        return cls(max_tokens=obj[0], temperature=temperature, stop=tuple(obj[2]))


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """``text`` up to (not including) the earliest stop string."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


def bound_words(text: str, max_tokens: int) -> str:
    """At most ``max_tokens`` whitespace-separated words of ``text`` (a token is never more
    than a word, so this bound is never tighter than a tokenizer's)."""
    words = text.split()
    return text if len(words) <= max_tokens else " ".join(words[:max_tokens])


async def generate(backend: InferenceBackend, prompt: str, options: GenerationOptions, *,
                   default_max_tokens: int, seed: int | None = None) -> Answer:
    """The backend's answer to ``prompt`` under ``options`` (module docstring); a node's
    language model (`node.swarm.backend.RoundBackend`) samples with ``seed`` (the round's
    for this node), batched with the other answers it owes."""
    max_tokens = options.max_tokens or default_max_tokens
    if isinstance(backend, RoundBackend):
        answer = await backend.answer_seeded(prompt, max_tokens=max_tokens,
                                             seed=0 if seed is None else seed,
                                             stop=options.stop,
                                             temperature=options.temperature)
    elif isinstance(backend, ChatModelBackend):
        answer = (await asyncio.to_thread(
            backend.answer_many, [prompt], max_tokens=max_tokens, stop=options.stop,
            temperature=options.temperature))[0]
    else:
        asked = max(max_tokens, default_max_tokens) if isinstance(backend, CharacterModelBackend) \
            else max_tokens
        answer = await backend.answer(prompt, max_tokens=asked)
    text = bound_words(cut_at_stop(answer.text, options.stop), max_tokens)
    return answer if text == answer.text else dataclasses.replace(answer, text=text)
