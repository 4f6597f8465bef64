"""`InferenceBackend` over SmolLM2-135M-Instruct (the shipped GGUF) with the own engine.

Answers are chat completions (the file's template, optional system prompt, greedy or
seeded sampling). Judging is by likelihood, so a round's judging is one batched pass:
- judge: each distinct answer is scored once as the assistant's reply to the question
  (mean log-probability per token, including the end-of-turn token, so a cut-off answer
  pays); the more probable answer wins, a tie within TIE_MARGIN.
- screen: the model is asked whether the answer is correct ("Yes"/"No" as its next token);
  P(Yes) / (P(Yes) + P(No)) above SCREEN_GOOD is good, below SCREEN_BAD bad, else no opinion.
Heavy work runs in a worker thread, one call at a time (the product callable may be a miner).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from pathlib import Path

from swarm.runtime.base import Answer, Judgment, Outcome, UnsupportedPrompt
from swarm.runtime.llm.engine import LlamaEngine, QuantConfig, load_engine, mean_logprob
from swarm.runtime.llm.quant import ProductFn

NAME = "smollm2-135m-instruct"
#: mean per-token log-probability gap under which the judge calls a tie
TIE_MARGIN = 0.02
#: screen thresholds on P(Yes) / (P(Yes) + P(No))
SCREEN_GOOD = 0.6
SCREEN_BAD = 0.4
SCREEN_PROMPT = ("Question: {question}\nProposed answer: {answer}\n\n"
                 "Is the proposed answer correct? Reply with Yes or No.")


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
        yes, no = engine.encode("Yes"), engine.encode("No")
        if len(yes) != 1 or len(no) != 1:
            raise ValueError("the screen needs 'Yes' and 'No' to be single tokens")
        self._yes, self._no = yes[0], no[0]

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
                    seeds: Sequence[int] | None = None,
                    stop: Sequence[str] = ()) -> list[Answer]:
        """Answers to every prompt in one batch; raises UnsupportedPrompt on an empty one
        and PromptTooLong past the context window."""
        if any(not p.strip() for p in prompts):
            raise UnsupportedPrompt("empty prompt")
        ids = [self.engine.chat_ids(self._messages(p)) for p in prompts]
        with self._lock:
            gens = self.engine.generate(
                ids, max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p,
                seed=list(seeds) if seeds is not None else self.seed, stop=stop)
        return [Answer(g.text.strip(), self.model_id, g.logprob) for g in gens]

    def answer_scores(self, items: Sequence[tuple[str, str]]) -> list[float]:
        """Mean log-probability per token of each (question, answer) as the model's reply,
        each distinct pair scored once, all in one batched pass."""
        distinct = list(dict.fromkeys(items))
        pairs = []
        for q, a in distinct:
            prefix = self.engine.chat_ids(self._messages(q))
            pairs.append((prefix, [*self.engine.encode(a.strip()), self.engine.special.eos]))
        with self._lock:
            lps = self.engine.continuation_logprobs(pairs)
        score = {k: mean_logprob(v) for k, v in zip(distinct, lps, strict=True)}
        return [score[k] for k in items]

    def judge_many(self, items: Sequence[tuple[str, str, str]]) -> list[Judgment]:
        """Likelihood judgments of (question, answer_a, answer_b), one batched pass."""
        flat = [(q, x) for q, a, b in items for x in (a, b)]
        scores = self.answer_scores(flat)
        return [judgment_from_scores(scores[2 * i], scores[2 * i + 1])
                for i in range(len(items))]

    def screen_probabilities(self, items: Sequence[tuple[str, str]]) -> list[float]:
        """P(Yes) / (P(Yes) + P(No)) of the verification prompt for each (question, answer)."""
        if not items:
            return []
        prompts = [self.engine.chat_ids(self._messages(
            SCREEN_PROMPT.format(question=q.strip(), answer=a.strip()))) for q, a in items]
        with self._lock:
            lp = self.engine.next_token_logprobs(prompts)
        yes, no = lp[:, self._yes], lp[:, self._no]
        return [1.0 / (1.0 + math.exp(float(n - y))) for y, n in zip(yes, no, strict=True)]

    def screen_many(self, items: Sequence[tuple[str, str]]) -> list[bool | None]:
        """GOOD (True) / BAD (False) / no opinion (None) for each (question, answer)."""
        return [True if p >= SCREEN_GOOD else False if p <= SCREEN_BAD else None
                for p in self.screen_probabilities(items)]

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
    """The answer with the higher mean per-token log-probability wins (tie within margin)."""
    reason = f"mean log-prob per token A={score_a:.3f} B={score_b:.3f}"
    if abs(score_a - score_b) < TIE_MARGIN or (math.isinf(score_a) and score_a == score_b):
        return Judgment(Outcome.TIE, reason)
    return Judgment(Outcome.A if score_a > score_b else Outcome.B, reason)
