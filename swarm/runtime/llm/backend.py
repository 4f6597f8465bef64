"""`InferenceBackend` over SmolLM2-135M-Instruct (the shipped GGUF) with the own engine.

Answers are chat completions (the file's template, optional system prompt, greedy or
seeded sampling). Judging is by likelihood, so a round's judging is one batched pass:
each distinct answer is scored once as the assistant's reply (plus end of turn), as

    pmi = log P(answer | question) - log P(answer | NEUTRAL_QUESTION)

(domain-conditional PMI, Holtzman et al. 2021: the plain likelihood prefers short, generic
answers; dividing by the answer's likelihood under a neutral question removes that prior).
- judge: the higher pmi wins, a tie within TIE_MARGIN nats.
- screen: pmi >= SCREEN_GOOD_PMI is good, pmi < SCREEN_BAD_PMI bad (the question makes the
  answer less likely than no question: off-topic or empty), no opinion in between.

Measured on 20 fixed questions with one right and one wrong short answer each (int8 path):
pmi ranks the right answer above the wrong one in 75% of pairs (mean log-likelihood 60%;
asking the model "Is the proposed answer correct? Yes/No" was at chance, 45-60%). A 135M
model is a weak judge of facts; the screen mainly catches off-topic answers.
Heavy work runs in a worker thread, one call at a time (the product callable may be a miner).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from pathlib import Path

from swarm.runtime.base import Answer, Judgment, Outcome, UnsupportedPrompt
from swarm.runtime.llm.engine import LlamaEngine, QuantConfig, load_engine
from swarm.runtime.llm.quant import ProductFn

NAME = "smollm2-135m-instruct"
#: the question an answer's prior likelihood is measured under
NEUTRAL_QUESTION = "Say something."
#: pmi gap (nats) under which the judge calls a tie
TIE_MARGIN = 0.1
#: screen thresholds on pmi (nats)
SCREEN_GOOD_PMI = 5.0
SCREEN_BAD_PMI = 0.0
#: (question, answer) pmi scores a backend remembers (a round's screen reuses its judging's)
SCORE_CACHE_SIZE = 4096


class SmolLM2Backend:
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
        self._scores: dict[tuple[str, str], float] = {}

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
    def name(self) -> str:
        return NAME

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

    def answer_scores(self, items: Sequence[tuple[str, str]]) -> list[float]:
        """pmi (see the module docstring) of each (question, answer), each distinct pair
        scored once; all questions and the neutral one in one batched pass. Scores are
        exact and deterministic, so the last SCORE_CACHE_SIZE are remembered: a round's
        screen after its judging costs no pass."""
        wanted = dict.fromkeys((q.strip(), a.strip()) for q, a in items)
        known = {k: v for k in wanted if (v := self._scores.get(k)) is not None}
        missing = [k for k in wanted if k not in known]
        if missing:
            known |= self._score(missing)
        return [known[(q.strip(), a.strip())] for q, a in items]

    def _score(self, distinct: Sequence[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """pmi of each distinct (question, answer), one batched pass; remembered."""
        neutral = self.engine.chat_ids(self._messages(NEUTRAL_QUESTION))
        pairs = []
        for q, a in distinct:
            reply = [*self.engine.encode(a), self.engine.special.eos]
            pairs += [(self.engine.chat_ids(self._messages(q)), reply), (neutral, reply)]
        with self._lock:
            lps = self.engine.continuation_logprobs(pairs)
            scores = {k: math.fsum(lps[2 * i]) - math.fsum(lps[2 * i + 1])
                      for i, k in enumerate(distinct)}
            if len(self._scores) + len(scores) > SCORE_CACHE_SIZE:
                self._scores.clear()
            self._scores |= scores
        return scores

    def judge_many(self, items: Sequence[tuple[str, str, str]]) -> list[Judgment]:
        """pmi judgments of (question, answer_a, answer_b), one batched pass."""
        flat = [(q, x) for q, a, b in items for x in (a, b)]
        scores = self.answer_scores(flat)
        return [judgment_from_scores(scores[2 * i], scores[2 * i + 1])
                for i in range(len(items))]

    def screen_many(self, items: Sequence[tuple[str, str]]) -> list[bool | None]:
        """GOOD (True) / BAD (False) / no opinion (None) for each (question, answer)."""
        return [True if s >= SCREEN_GOOD_PMI else False if s < SCREEN_BAD_PMI else None
                for s in self.answer_scores(items)]

    # --- InferenceBackend ------------------------------------------------------------------
    async def answer(self, prompt: str, *, max_tokens: int) -> Answer:
        return (await asyncio.to_thread(self.answer_many, [prompt], max_tokens=max_tokens))[0]

    async def judge(self, question: str, answer_a: str, answer_b: str) -> Judgment:
        return (await asyncio.to_thread(self.judge_many, [(question, answer_a, answer_b)]))[0]

    async def screen(self, question: str, answer: str) -> bool | None:
        return (await asyncio.to_thread(self.screen_many, [(question, answer)]))[0]

    async def judge_pairs(self, question: str,
                          pairs: Sequence[tuple[str, str]]) -> list[Judgment]:
        return await asyncio.to_thread(self.judge_many, [(question, a, b) for a, b in pairs])

    async def screen_answers(self, question: str, answers: Sequence[str]) -> list[bool | None]:
        return await asyncio.to_thread(self.screen_many, [(question, a) for a in answers])


def judgment_from_scores(score_a: float, score_b: float) -> Judgment:
    """The answer with the higher pmi wins (tie within TIE_MARGIN)."""
    reason = f"pmi A={score_a:.2f} B={score_b:.2f} nats"
    if abs(score_a - score_b) < TIE_MARGIN:
        return Judgment(Outcome.TIE, reason)
    return Judgment(Outcome.A if score_a > score_b else Outcome.B, reason)
