"""The one interface every inference backend implements, and the values it returns.

The swarm round only ever talks to an `InferenceBackend`: the built-in int-matmul model,
an OpenAI-compatible HTTP endpoint or a local Hugging Face checkpoint look the same to it.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Outcome(StrEnum):
    """A pairwise judgment: which of two answers is better (tie counts half a win each)."""

    A = "A"
    B = "B"
    TIE = "tie"


@dataclass(frozen=True)
class Answer:
    """One model's answer. token_logprob: summed log-probability of the generated tokens,
    when the backend can tell (a confidence signal, never used for consensus)."""

    text: str
    model_id: bytes
    token_logprob: float | None = None


@dataclass(frozen=True)
class Judgment:
    """A judge's verdict on (answer_a, answer_b) with a short human-readable reason."""

    outcome: Outcome
    reason: str


class BackendError(Exception):
    """The backend could not produce an answer or judgment (the node abstains)."""


class BackendTimeout(BackendError):
    """The backend did not respond in time."""


class UnsupportedPrompt(BackendError):
    """The prompt is outside what this backend can answer (e.g. not arithmetic)."""


class UnsupportedArchitecture(BackendError):
    """A checkpoint's architecture has no loader here."""


class PromptTooLong(BackendError, ValueError):
    """Prompt plus max_tokens exceed the model's context window."""


@runtime_checkable
class InferenceBackend(Protocol):
    """Answers questions and judges pairs of answers."""

    @property
    def model_id(self) -> bytes:
        """32 bytes: hash of the weights file, or of the declared model name (external)."""
        ...

    async def answer(self, prompt: str, *, max_tokens: int) -> Answer:
        """Answer `prompt` in at most `max_tokens` tokens."""
        ...

    async def judge(self, question: str, answer_a: str, answer_b: str) -> Judgment:
        """Which answer to `question` is better (A, B or tie), and why."""
        ...

    async def screen(self, question: str, answer: str) -> bool | None:
        """Is `answer` acceptable (True good, False bad), or None for no opinion.

        The round's GOOD/BAD screen: answers a weighted majority of judges calls good rank
        above the rest, and only they are paid (docs/swarm.md §5)."""
        ...

    async def judge_pairs(self, question: str,
                          pairs: Sequence[tuple[str, str]]) -> list[Judgment]:
        """`judge` of every (answer_a, answer_b) pair, in order: a round's judging in one
        call, so a backend can batch it (one forward pass, or concurrent requests)."""
        ...

    async def screen_answers(self, question: str, answers: Sequence[str]) -> list[bool | None]:
        """`screen` of every answer, in order (batched like `judge_pairs`)."""
        ...


class ChatModelBackend(abc.ABC):
    """A chat language model run in this process with its own tokenizer (SmolLM2: the
    swarm.runtime.llm backend): it answers a batch with generation options, and measures
    prompts exactly. Declared here, without torch, so the node can tell one apart without
    importing the model's code (issue 12)."""

    @property
    @abc.abstractmethod
    def model_id(self) -> bytes: ...

    @property
    @abc.abstractmethod
    def context_length(self) -> int:
        """Tokens the model attends to: prompt (chat template included) plus answer."""

    @abc.abstractmethod
    def answer_many(self, prompts: Sequence[str], *, max_tokens: int,
                    seeds: Sequence[int] | None = None, stop: Sequence[str] = (),
                    temperature: float | None = None,
                    top_p: float | None = None) -> list[Answer]:
        """Answers to every prompt in one batch (blocking)."""

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """``text``'s length in the model's tokens."""

    @abc.abstractmethod
    def prompt_tokens(self, question: str) -> int:
        """``question``'s length in tokens as the model sees it: in its chat template,
        with the backend's system prompt."""


class CharacterModelBackend:
    """A model whose tokens are characters and whose answer is one number (the built-in
    arithmetic variants): it needs its own max_tokens, whatever a client asks. A marker,
    declared here so the node can tell one apart without importing torch."""


def file_model_id(data: bytes) -> bytes:
    """Model id of a weights file: SHA-256 of its bytes."""
    return hashlib.sha256(data).digest()


def name_model_id(name: str) -> bytes:
    """Model id of an external model known only by its declared name."""
    return hashlib.sha256(b"pouwchain.model-name.v1:" + name.encode()).digest()
