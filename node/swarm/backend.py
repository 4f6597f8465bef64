"""The node's inference backend: built from ``config.swarm_backend``, its int8 products mined
by the node's miner when the node mines, warmed up at start.

Two kinds of model run here (`swarm.runtime.factory` builds any other spec):

- the built-in arithmetic variants (``builtin:arith-l``, ...): every weight matmul goes
  through `swarm.runtime.builtin.mining_hook`;
- the shipped language model, SmolLM2-135M-Instruct (``smollm2``, ``smollm2:<cache dir>``;
  `swarm.runtime.llm`): int8 W8A8 linears whose every product goes through the same hook.
  Its conversion cache lives beside the node's data (``<datadir>/llm-cache``) unless the
  spec names a directory. `LLMSwarmBackend` adapts it to the round: the sampling seed of a
  round's answer is drawn from (round id, node id) (`round_seed`), answers asked at the same
  time are generated in one batch, and a round's judging (pairs and screen) is one batched
  scoring pass (`LLMSwarmBackend.judge_round`).

On a mining node (``miner``) each product is `Miner.mine_product`: its transcript yields
tickets on the current block template, so the swarm's inference is the useful work. A
non-mining node computes the same products plainly (the same bits).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs

import numpy as np

from node.config import LLM_BACKEND_KIND, is_llm_spec
from node.logging import get_logger, log_event
from node.swarm.host import MinedProduct, ProductMiner
from swarm.runtime.base import Answer, BackendError, InferenceBackend, Judgment
from swarm.runtime.builtin import mining_hook
from swarm.runtime.factory import make_backend
from swarm.runtime.llm.backend import SmolLM2Backend
from swarm.runtime.llm.engine import LlamaEngine, load_engine

log = get_logger("swarm")
LLM_CACHE_DIR = "llm-cache"  # the language model's conversion cache, in the node's datadir
#: answers generated in one batch at most (pending prompts beyond wait for the next batch)
MAX_ANSWER_BATCH = 8


class MinedProducts:
    """The model's int8 products, mined by the node's miner (`Miner.mine_product`): on a
    mining node the swarm's inference is the useful work, and a winning ticket is a block."""

    r: int | None = None  # pouw's default chunk size for the padded shapes

    def __init__(self, miner: ProductMiner) -> None:
        self.miner = miner

    def mine(self, a: np.ndarray, b: np.ndarray) -> MinedProduct:
        """A·B through the miner (`swarm.runtime.builtin.mining_hook` calls this)."""
        return self.miner.mine_product(a, b)


@runtime_checkable
class RoundBackend(Protocol):
    """A backend that takes the round's seed and judges a round in one call (the LLM)."""

    async def answer_seeded(self, prompt: str, *, max_tokens: int, seed: int,
                            stop: Sequence[str] = (),
                            temperature: float | None = None) -> Answer:
        """An answer sampled with ``seed`` (greedy at temperature 0), cut at ``stop``;
        ``temperature`` overrides the node's."""
        ...

    async def judge_round(self, question: str, pairs: Sequence[tuple[str, str]],
                          screened: Sequence[str], seen: Sequence[str] | None = None
                          ) -> tuple[list[Judgment], list[bool | None]]:
        """`judge_pairs` of ``pairs`` and `screen_answers` of ``screened``, in one pass;
        ``seen``: every answer of the round, the judge's own included (what agrees)."""
        ...

    def inference_stats(self) -> dict[str, int]:
        """The model's int8 products and multiply-accumulates so far."""
        ...


def round_seed(round_id: bytes, node_id: bytes) -> int:
    """The sampling seed of ``node_id``'s answer in round ``round_id`` (63 bits): every node
    samples its own answer, and a round replayed samples the same."""
    digest = hashlib.sha256(b"pouwchain.swarm.seed.v1" + round_id + node_id).digest()
    return int.from_bytes(digest[:8], "big") >> 1


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


def load_llm(spec: str, *, datadir: Path | None, miner: ProductMiner | None = None,
             temperature: float | None = None,
             system_prompt: str | None = None) -> LLMSwarmBackend:
    """The shipped language model of ``spec`` (``smollm2`` or ``smollm2:<cache dir>?...``,
    options as `swarm.runtime.factory`), its cache in ``datadir/llm-cache`` unless the spec
    names one; ``temperature`` and ``system_prompt`` (node config) override the spec's."""
    target, _, query = spec.partition(":")[2].partition("?")
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    if target:
        cache = Path(target)
    elif datadir is not None:
        cache = Path(datadir) / LLM_CACHE_DIR
    else:
        raise BackendError("smollm2 without a cache directory needs the node's datadir")
    product = None if miner is None else mining_hook(MinedProducts(miner))
    engine = load_engine(cache_dir=cache, int8=options.get("float", "0") not in ("1", "true"),
                         product=product)
    return LLMSwarmBackend(
        engine,
        system_prompt=system_prompt if system_prompt is not None else options.get("system"),
        temperature=temperature if temperature is not None else float(
            options.get("temperature", "0")),
        top_p=float(options.get("top_p", "1")), seed=int(options.get("seed", "0")))


def make_swarm_backend(spec: str | None, *, miner: ProductMiner | None = None,
                       datadir: Path | None = None, temperature: float | None = None,
                       system_prompt: str | None = None) -> InferenceBackend | None:
    """The backend of ``spec`` (None: the node answers and judges nothing); on a mining node
    (``miner``) the model's int8 products are mined. ``smollm2`` specs load the language
    model (`load_llm`, with the node's sampling settings); any other spec goes to
    `swarm.runtime.factory.make_backend`."""
    if not spec:
        return None
    if is_llm_spec(spec):
        return load_llm(spec, datadir=datadir, miner=miner, temperature=temperature,
                        system_prompt=system_prompt)
    return make_backend(spec, matmul_hook=None if miner is None
                        else mining_hook(MinedProducts(miner)))


def inference_stats(backend: InferenceBackend | None) -> Mapping[str, int]:
    """The backend's own product counters (the language model's), or nothing."""
    return backend.inference_stats() if isinstance(backend, RoundBackend) else {}


async def warm_up(backend: InferenceBackend) -> None:
    """One answer and one judgment, so the first client does not pay the warm-up (~1 s)."""
    try:
        answer = await backend.answer("What is 1+1?", max_tokens=64)
        await backend.judge("What is 1+1?", answer.text, "3")
    except Exception as exc:  # an unreachable endpoint: rounds will say so, not the warm-up
        log_event(log, "swarm.warm_up_failed", error=str(exc))


__all__ = ["LLM_BACKEND_KIND", "LLMSwarmBackend", "MinedProducts", "RoundBackend",
           "inference_stats", "load_llm", "make_swarm_backend", "round_seed", "warm_up"]
