"""`InferenceBackend` over SmolLM2-135M-Instruct (the shipped GGUF) with the own engine.

Answers are chat completions (the file's template, optional system prompt, greedy or
seeded sampling).

Judging is consensus-aware and uses the model (self-consistency, minimum Bayes risk with a
0/1 match). A judge sees every answer of the round, so for each answer it knows
- its support: how many of the round's answers say the same (`agreement.support`: the
  final number, yes/no, or content words, as the bench's majority vote reads them), and
- the model's likelihood of it, the mean log-probability per token of the answer (plus end
  of turn) given the question: one batched pass per round, the question's prompt run once
  and its KV cache shared by every answer (`LlamaEngine.continuation_logprobs`).

- judge: the answer with more support wins; at equal support the likelier one (a tie
  within TIE_MARGIN nats per token).
- screen (from the same scores, no second pass): an answer that says something, has the
  round's most support and a mean likelihood of at least SCREEN_FLOOR is GOOD, everything
  else BAD; every answer gets an opinion, so a minority of dishonest judges cannot pass
  their pick alone.

Measured with `bench/swarm_llm.py` (docs/llm.md, "Benches"): the likelihood alone, and the
earlier PMI judge (log P(answer | question) - log P(answer | "Say something.")), pick the
right answer less often than a majority vote over the same answers; a 135M model is a weak
judge of facts, and agreement between samples is the stronger signal.
Heavy work runs in a worker thread, one call at a time (the product callable may be a miner).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swarm.runtime.base import (
    Answer,
    ChatModelBackend,
    Judgment,
    Outcome,
    UnsupportedPrompt,
)
from swarm.runtime.llm.agreement import answer_key, support
from swarm.runtime.llm.engine import LlamaEngine, QuantConfig, load_engine
from swarm.runtime.llm.quant import ProductFn

NAME = "smollm2-135m-instruct"
#: likelihood gap (mean nats per token) under which the judge calls a tie at equal support
TIE_MARGIN = 0.01
#: the screen's likelihood floor (mean nats per token): an answer the model finds less likely
#: than this given the question is BAD (off-topic, garbled)
SCREEN_FLOOR = -3.0
#: (question, answer) scores a backend remembers (a round's screen reuses its judging's)
SCORE_CACHE_SIZE = 4096


@dataclass(frozen=True)
class AnswerScore:
    """The model's likelihood of an answer (plus end of turn) given the question."""

    loglik: float  # summed log-probability, nats
    tokens: int

    @property
    def mean(self) -> float:
        """Mean log-probability per token (not biased towards short answers as the sum)."""
        return self.loglik / self.tokens


@dataclass(frozen=True)
class RoundView:
    """What a judge ranks an answer by: its support in the round, then its likelihood (None:
    not scored, as it cannot matter: only the most supported answers are)."""

    support: int
    mean_loglik: float | None


def round_support(question: str, answers: Sequence[str], seen: Sequence[str]
                  ) -> tuple[dict[str, int], list[str]]:
    """Each answer's support among ``seen`` (the round's answers the judge sees, with
    repeats), and the answers the model must score: those with the most support (the
    likelihood breaks their ties and screens them; every other answer loses to them on
    support and is screened out anyway)."""
    counts = dict(zip(answers, support(question, answers, seen), strict=True))
    top = max(counts.values(), default=0)
    return counts, [a for a, n in counts.items() if n == top]


def round_views(counts: Mapping[str, int], scores: Mapping[str, AnswerScore]
                ) -> dict[str, RoundView]:
    """The views of answers with support ``counts`` and (some) likelihood ``scores``."""
    return {a: RoundView(n, scores[a].mean if a in scores else None)
            for a, n in counts.items()}


def judgment_from_views(a: RoundView, b: RoundView) -> Judgment:
    """More support wins; at equal support the likelier answer (tie within TIE_MARGIN, or
    when either is not scored)."""
    reason = (f"support A={a.support} B={b.support}; mean loglik A={_nats(a)} "
              f"B={_nats(b)} nats/token")
    if a.support != b.support:
        return Judgment(Outcome.A if a.support > b.support else Outcome.B, reason)
    if (a.mean_loglik is None or b.mean_loglik is None
            or abs(a.mean_loglik - b.mean_loglik) < TIE_MARGIN):
        return Judgment(Outcome.TIE, reason)
    return Judgment(Outcome.A if a.mean_loglik > b.mean_loglik else Outcome.B, reason)


def _nats(view: RoundView) -> str:
    return "-" if view.mean_loglik is None else f"{view.mean_loglik:.3f}"


def screen_marks(question: str, views: Mapping[str, RoundView],
                 answers: Sequence[str]) -> list[bool | None]:
    """GOOD iff an answer says something, has the most support among ``views`` and a mean
    likelihood of at least SCREEN_FLOOR; every other answer BAD (an opinion on every
    answer)."""
    top = max((v.support for v in views.values()), default=0)

    def good(answer: str) -> bool:
        view = views[answer]
        return (view.support == top and view.mean_loglik is not None
                and view.mean_loglik >= SCREEN_FLOOR and answer_key(question, answer) is not None)

    return [good(a) for a in answers]


class SmolLM2Backend(ChatModelBackend):
    """The swarm backend for SmolLM2; see the module docstring for how it judges.

    `system_prompt` (None: the template's default), `temperature`, `top_p` and `seed` make
    nodes serving the same weights answer differently.
    """

    def __init__(self, engine: LlamaEngine, *, system_prompt: str | None = None,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> None:
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
        self.engine = engine
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self._lock = threading.Lock()
        self._scores: dict[tuple[str, str], AnswerScore] = {}

    @classmethod
    def load(cls, cache_dir: Path | None = None, *, gguf_path: Path | None = None,
             int8: bool = True, quant: QuantConfig | None = None,
             product: ProductFn | None = None, system_prompt: str | None = None,
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> SmolLM2Backend:
        """The shipped model (or `gguf_path`), converted once into `cache_dir`."""
        engine = load_engine(gguf_path, cache_dir, int8=int8, quant=quant, product=product)
        return cls(engine, system_prompt=system_prompt, temperature=temperature, top_p=top_p,
                   seed=seed)

    @property
    def model_id(self) -> bytes:
        return self.engine.model_id

    @property
    def context_length(self) -> int:
        return self.engine.config.context_length

    def count_tokens(self, text: str) -> int:
        return len(self.engine.encode(text))

    def prompt_tokens(self, question: str) -> int:
        return len(self.engine.chat_ids(self._messages(question)))

    @property
    def name(self) -> str:
        return NAME

    def weight_operands(self) -> Mapping[str, np.ndarray]:
        """The model's int8 weights as the mining hook gets them: an explorer labels blocks
        whose B root is one of them, padded as mined (`swarm.runtime.mined`), inference."""
        return self.engine.int8_weights()

    @property
    def label(self) -> str:
        return NAME if self.temperature == 0 else f"{NAME}@t{self.temperature:g}#{self.seed}"

    # --- synchronous, batched --------------------------------------------------------------
    def _messages(self, user: str) -> list[dict[str, str]]:
        messages = [] if self.system_prompt is None else [
            {"role": "system", "content": self.system_prompt}]
        return [*messages, {"role": "user", "content": user}]

    def answer_many(self, prompts: Sequence[str], *, max_tokens: int,
                    seeds: Sequence[int] | None = None, stop: Sequence[str] = (),
                    temperature: float | None = None,
                    top_p: float | None = None) -> list[Answer]:
        """Answers to every prompt in one batch (seeds, temperature, top_p default to the
        node's); raises UnsupportedPrompt on an empty prompt and PromptTooLong past the
        context window."""
        if any(not p.strip() for p in prompts):
            raise UnsupportedPrompt("empty prompt")
        ids = [self.engine.chat_ids(self._messages(p)) for p in prompts]
        with self._lock:
            gens = self.engine.generate(
                ids, max_tokens=max_tokens,
                temperature=self.temperature if temperature is None else temperature,
                top_p=self.top_p if top_p is None else top_p,
                seed=list(seeds) if seeds is not None else self.seed, stop=stop)
        return [Answer(g.text.strip(), self.model_id, g.logprob) for g in gens]

    def answer_scores(self, items: Sequence[tuple[str, str]]) -> list[AnswerScore]:
        """The model's likelihood of each (question, answer), each distinct pair scored
        once, all in one batched pass (each question's prompt once, its KV cache shared by
        its answers). Scores are exact and deterministic, so the last SCORE_CACHE_SIZE are
        remembered: a round's screen after its judging costs no pass."""
        wanted = dict.fromkeys((q.strip(), a.strip()) for q, a in items)
        known = {k: v for k in wanted if (v := self._scores.get(k)) is not None}
        missing = [k for k in wanted if k not in known]
        if missing:
            known |= self._score(missing)
        return [known[(q.strip(), a.strip())] for q, a in items]

    def _score(self, distinct: Sequence[tuple[str, str]]
               ) -> dict[tuple[str, str], AnswerScore]:
        """Likelihood of each distinct (question, answer), one batched pass; remembered."""
        prompts = {q: self.engine.chat_ids(self._messages(q)) for q in dict.fromkeys(
            q for q, _a in distinct)}
        pairs = [(prompts[q], [*self.engine.encode(a), self.engine.special.eos])
                 for q, a in distinct]
        with self._lock:
            lps = self.engine.continuation_logprobs(pairs)
            scores = {k: AnswerScore(math.fsum(lp), len(lp))
                      for k, lp in zip(distinct, lps, strict=True)}
            if len(self._scores) + len(scores) > SCORE_CACHE_SIZE:
                self._scores.clear()
            self._scores |= scores
        return scores

    def round_judgments(self, question: str, pairs: Sequence[tuple[str, str]],
                        screened: Sequence[str], seen: Sequence[str] | None = None
                        ) -> tuple[list[Judgment], list[bool | None]]:
        """A round's judging in one scoring pass: verdicts on ``pairs`` and screen marks of
        ``screened``, each answer ranked by its support among ``seen`` (the round's
        answers the judge sees, with repeats; default ``screened``, else the answers in
        ``pairs``), then its likelihood. Only the most supported answers are scored (no
        pass when they are remembered)."""
        answers = list(dict.fromkeys(
            [a.strip() for pair in pairs for a in pair] + [a.strip() for a in screened]))
        if not answers:
            return [], []
        if seen is None:
            seen = screened or answers
        counts, scored = round_support(question, answers, [a.strip() for a in seen])
        scores = dict(zip(scored, self.answer_scores([(question, a) for a in scored]),
                          strict=True))
        views = round_views(counts, scores)
        judged = [judgment_from_views(views[a.strip()], views[b.strip()]) for a, b in pairs]
        return judged, screen_marks(question, views, [a.strip() for a in screened])

    def judge_many(self, items: Sequence[tuple[str, str, str]]) -> list[Judgment]:
        """Judgments of (question, answer_a, answer_b); each question's answers in these
        items are its round (one batched pass for all)."""
        self.answer_scores([(q, x) for q, a, b in items for x in (a, b)])
        rounds: dict[str, list[tuple[str, str]]] = {}
        for q, a, b in items:
            rounds.setdefault(q, []).append((a, b))
        verdicts = {q: iter(self.round_judgments(q, pairs, [])[0])
                    for q, pairs in rounds.items()}
        return [next(verdicts[q]) for q, _a, _b in items]

    def screen_many(self, items: Sequence[tuple[str, str]]) -> list[bool | None]:
        """GOOD (True) / BAD (False) / no opinion (None) for each (question, answer); each
        question's answers in these items are its round."""
        self.answer_scores(items)
        rounds: dict[str, list[str]] = {}
        for q, a in items:
            rounds.setdefault(q, []).append(a)
        marks = {q: iter(self.round_judgments(q, [], answers)[1])
                 for q, answers in rounds.items()}
        return [next(marks[q]) for q, _a in items]

    # --- InferenceBackend ------------------------------------------------------------------
    async def answer(self, prompt: str, *, max_tokens: int) -> Answer:
        return (await asyncio.to_thread(self.answer_many, [prompt], max_tokens=max_tokens))[0]

    async def judge(self, question: str, answer_a: str, answer_b: str) -> Judgment:
        return (await asyncio.to_thread(self.judge_many, [(question, answer_a, answer_b)]))[0]

    async def screen(self, question: str, answer: str) -> bool | None:
        return (await asyncio.to_thread(self.screen_many, [(question, answer)]))[0]

    async def judge_pairs(self, question: str,
                          pairs: Sequence[tuple[str, str]]) -> list[Judgment]:
        return (await self.judge_round(question, pairs, []))[0]

    async def screen_answers(self, question: str, answers: Sequence[str]) -> list[bool | None]:
        return (await self.judge_round(question, [], answers))[1]

    async def judge_round(self, question: str, pairs: Sequence[tuple[str, str]],
                          screened: Sequence[str], seen: Sequence[str] | None = None
                          ) -> tuple[list[Judgment], list[bool | None]]:
        """`judge_pairs` of ``pairs`` and `screen_answers` of ``screened`` in one pass (the
        node's round: ``screened`` are the other answerers' answers, ``seen`` every answer
        of the round with repeats, the judge's own included)."""
        return await asyncio.to_thread(self.round_judgments, question, pairs, screened, seen)
