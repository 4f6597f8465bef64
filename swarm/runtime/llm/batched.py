"""SmolLM2 for the swarm round (`LLMSwarmBackend`): seeded answers pending at the same time
are generated in one batch, and a round's judging (pairs and screen) is one scoring pass.

The node builds it through `swarm.runtime.factory.make_round_llm` (node.swarm.backend says
how it is wired: cache beside the node's data, products mined by the node's miner).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from swarm.runtime.base import Answer, BackendError
from swarm.runtime.llm.backend import SmolLM2Backend
from swarm.runtime.llm.engine import LlamaEngine

#: answers generated in one batch at most (pending prompts beyond wait for the next batch)
MAX_ANSWER_BATCH = 8


@dataclasses.dataclass
class _Pending:
    prompt: str
    max_tokens: int
    seed: int
    future: asyncio.Future[Answer]
    stop: tuple[str, ...] = ()
    temperature: float | None = None

    @property
    def batch_key(self) -> tuple[int, tuple[str, ...], float | None]:
        """Answers batch together when they share these."""
        return self.max_tokens, self.stop, self.temperature


class LLMSwarmBackend(SmolLM2Backend):
    """`SmolLM2Backend` for the swarm round (see the module docstring): the
    `InferenceBackend` methods, plus `answer_seeded` (answers pending at the same time are
    generated in one batch, each with its own seed) and `judge_round` (one scoring pass for
    a round's pairs and screen). Being a `SmolLM2Backend`, its tokenizer and engine are
    there for whoever measures prompts (the chat API)."""

    def __init__(self, engine: LlamaEngine, *, system_prompt: str | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                 max_batch: int = MAX_ANSWER_BATCH) -> None:
        super().__init__(engine, system_prompt=system_prompt, temperature=temperature,
                         top_p=top_p, seed=seed)
        self.max_batch = max_batch
        self._pending: list[_Pending] = []
        self._drain: asyncio.Task[None] | None = None
        self.answer_batches = 0  # generate calls made for answers
        self.answers_generated = 0

    def inference_stats(self) -> dict[str, int]:
        stats = self.engine.stats
        return {"products": 0 if stats is None else stats.products,
                "macs": 0 if stats is None else stats.macs,
                "answer_batches": self.answer_batches, "answers": self.answers_generated}

    # -- answering: pending prompts in one batch ---------------------------------------------

    async def answer_seeded(self, prompt: str, *, max_tokens: int, seed: int,
                            stop: Sequence[str] = (),
                            temperature: float | None = None) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(prompt, max_tokens, seed, future, tuple(stop),
                                      temperature))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._answer_pending())
        return await future

    async def _answer_pending(self) -> None:
        """Generate every pending answer, a batch (same max_tokens) at a time: the prompts
        that came while a batch ran share the next one."""
        while self._pending:
            first = self._pending[0]
            batch = [p for p in self._pending if p.batch_key == first.batch_key and
                     not p.future.done()][:self.max_batch]
            taken = {id(p) for p in batch}
            self._pending = [p for p in self._pending
                             if id(p) not in taken and not p.future.done()]
            if not batch:
                continue
            try:
                answers = await asyncio.to_thread(
                    self.answer_many, [p.prompt for p in batch], max_tokens=first.max_tokens,
                    seeds=[p.seed for p in batch], stop=first.stop,
                    temperature=first.temperature)
            except Exception as exc:  # one bad prompt: answer the others one by one
                if len(batch) == 1:
                    _fail(batch[0].future, exc)
                    continue
                for p in batch:
                    await self._answer_one(p)
                continue
            self._deliver(batch, answers)

    async def _answer_one(self, pending: _Pending) -> None:
        """``pending`` alone (its batch failed): its own answer, or its own error."""
        try:
            answers = await asyncio.to_thread(self.answer_many, [pending.prompt],
                                              max_tokens=pending.max_tokens,
                                              seeds=[pending.seed], stop=pending.stop,
                                              temperature=pending.temperature)
        except Exception as exc:
            _fail(pending.future, exc)
            return
        self._deliver([pending], answers)

    def _deliver(self, batch: list[_Pending], answers: list[Answer]) -> None:
        self.answer_batches += 1
        self.answers_generated += len(batch)
        for p, answer in zip(batch, answers, strict=True):
            if not p.future.done():
                p.future.set_result(answer)

    async def answer(self, prompt: str, *, max_tokens: int) -> Answer:
        return await self.answer_seeded(prompt, max_tokens=max_tokens, seed=self.seed)

    # judging (`judge_round`: a round's pairs and screen in one scoring pass) is
    # SmolLM2Backend's


def _fail(future: asyncio.Future[Answer], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc if isinstance(exc, BackendError)
                             else BackendError(f"{type(exc).__name__}: {exc}"))
