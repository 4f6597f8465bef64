"""The built-in backend: the shipped arithmetic model variants, inference as useful work.

Every weight matmul goes through `matmul_hook(a_int8, b_int8)`. The default hook is a plain
exact product; a mining node passes `mining_hook(session)` so the same products are mined
by a pouw MiningSession (operands padded to the shapes pouw accepts, the result unpadded).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from swarm.runtime.arith_model import (
    ANSWER_LEN,
    END,
    PROMPT_LEN,
    ModelConfig,
    decode_answer,
    encode_answer,
    encode_prompt,
    exact_matmul,
    forward,
    quantise,
)
from swarm.runtime.base import (
    Answer,
    CharacterModelBackend,
    Judgment,
    Outcome,
    UnsupportedPrompt,
    file_model_id,
)
from swarm.runtime.mined import MatmulHook as MatmulHook
from swarm.runtime.mined import ProductMiner as ProductMiner
from swarm.runtime.mined import mined_weight_roots as mined_weight_roots
from swarm.runtime.mined import mining_hook as mining_hook
from swarm.runtime.mined import padded_weight as padded_weight
from swarm.runtime.variants import MODELS_DIR as MODELS_DIR
from swarm.runtime.variants import VARIANT_NAMES as VARIANT_NAMES
from swarm.runtime.variants import variant_path as variant_path
from swarm.tasks import FAMILIES, equivalent_forms, extract_integer, parse_expression

#: Sequences per forward pass: bounds memory for big evaluation batches.
BATCH = 2048
#: Log-likelihood gap under which a likelihood judge calls a tie.
TIE_MARGIN = 1e-6
#: Score of an answer that commits to no integer the model can write.
UNSCORABLE = -1e9
#: Equivalent phrasings a judge scores each answer under (1: the question only). Measured on
#: the 400 fixed questions (python -m swarm.runtime.evaluate): 8 forms lift the judges'
#: pick of the right candidate well above their own answering accuracy.
DEFAULT_JUDGE_FORMS = 8
#: A likelihood judge calls an answer good when its mean probability over the judging forms
#: is at least SCREEN_GOOD_PROBABILITY, bad below SCREEN_BAD_PROBABILITY, and has no opinion
#: in between (a weak model's doubt is not evidence against an answer). Measured on the 400
#: fixed questions: at these bounds arith-l calls 96% of right answers good and 0.2% of
#: wrong ones, and no right answer bad; the weaker variants call fewer right answers good
#: (xs 13%, m 68%), at most 0.6% of wrong ones. Chosen on the bench's question set
#: (bench/swarm_quality.py, docs/swarm.md §5).
SCREEN_GOOD_PROBABILITY = 0.3
SCREEN_BAD_PROBABILITY = 0.001


class ArithModel:
    """One loaded variant: int8 weights, float scales, and the exact-int forward."""

    def __init__(self, path: Path, *, matmul_hook: MatmulHook | None = None) -> None:
        data = path.read_bytes()
        self.path = path
        self.model_id = file_model_id(data)
        with safe_open(str(path), framework="pt") as f:
            meta: dict[str, str] = f.metadata() or {}
            self.tensors: dict[str, torch.Tensor] = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != "pouwchain-arith-v1":
            raise ValueError(f"{path} is not a pouwchain arithmetic model")
        self.name: str = meta.get("name", path.stem)
        self.config = ModelConfig(**json.loads(meta["config"]))
        self.matmul_hook: MatmulHook = matmul_hook or exact_matmul
        #: weight operands as int8 numpy (k x n), ready for the hook
        self._wq = {k[:-3]: v.numpy() for k, v in self.tensors.items() if k.endswith(".wq")}

    @property
    def weights(self) -> Mapping[str, np.ndarray]:
        """The int8 weight operands (k x n): the B of every product the model computes."""
        return self._wq

    def _int_linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x (…, k) -> (…, n): int7 input per row times int7 weight, exactly, then rescale."""
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        xq, xs = quantise(x2, dim=-1)
        prod = self.matmul_hook(xq.to(torch.int8).numpy(), self._wq[name])
        y = torch.from_numpy(np.asarray(prod, dtype=np.int64)).to(torch.float64)
        y = (y * xs.to(torch.float64) * self.tensors[name + ".ws"].to(torch.float64))
        out: torch.Tensor = y.to(torch.float32) + self.tensors[name + ".b"]
        return out.reshape(*shape[:-1], out.shape[-1])

    def _float_linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Reference: the same dequantised weights in float, input unquantised."""
        w = self.tensors[name + ".wq"].to(torch.float32) * self.tensors[name + ".ws"]
        out: torch.Tensor = x @ w + self.tensors[name + ".b"]
        return out

    @torch.no_grad()
    def logits(self, tokens: torch.Tensor, *, reference: bool = False) -> torch.Tensor:
        """Logits (B, T, V); `reference` uses float matmuls instead of the int path."""
        linear = self._float_linear if reference else self._int_linear
        return forward(self.tensors, self.config, tokens, linear)

    @torch.no_grad()
    def generate(self, exprs: Sequence[str]) -> list[tuple[str, float]]:
        """Greedy answers to canonical expressions: (answer text, summed log-prob)."""
        if len(exprs) > BATCH:
            return [x for i in range(0, len(exprs), BATCH)
                    for x in self.generate(exprs[i:i + BATCH])]
        if not exprs:
            return []
        tokens = torch.tensor([encode_prompt(e) for e in exprs])
        logprob = torch.zeros(len(exprs), dtype=torch.float64)
        done = torch.zeros(len(exprs), dtype=torch.bool)
        for _ in range(ANSWER_LEN - 1):  # the final '$' is implied by the fixed format
            lp = self.logits(tokens)[:, -1].log_softmax(dim=-1)
            best = lp.argmax(dim=-1)
            logprob += torch.where(done, 0.0, lp.gather(1, best[:, None])[:, 0].double())
            done |= best == END
            tokens = torch.cat([tokens, best[:, None]], dim=1)
        out = []
        for row, total in zip(tokens[:, PROMPT_LEN:].tolist(), logprob.tolist(), strict=True):
            out.append((decode_answer(row), float(total)))
        return out

    @torch.no_grad()
    def score(self, exprs: Sequence[str], values: Sequence[int | None]) -> list[float]:
        """Log-likelihood of each answer value given its expression (UNSCORABLE if none)."""
        if len(exprs) > BATCH:
            return [x for i in range(0, len(exprs), BATCH)
                    for x in self.score(exprs[i:i + BATCH], values[i:i + BATCH])]
        rows, idx = [], []
        for i, (e, v) in enumerate(zip(exprs, values, strict=True)):
            if v is None:
                continue
            try:
                ans = encode_answer(v)
            except ValueError:
                continue
            rows.append((encode_prompt(e), ans))
            idx.append(i)
        scores = [UNSCORABLE] * len(exprs)
        if not rows:
            return scores
        seqs = torch.tensor([p + a for p, a in rows])
        lp = self.logits(seqs[:, :-1]).log_softmax(dim=-1)
        for j, (_p, a) in enumerate(rows):
            pos = torch.arange(PROMPT_LEN - 1, PROMPT_LEN - 1 + len(a))
            scores[idx[j]] = float(lp[j, pos, torch.tensor(a)].double().sum())
        return scores


def judgment_from_scores(score_a: float, score_b: float) -> Judgment:
    """A likelihood judgment: the answer the model finds more probable wins."""
    reason = f"log-likelihood A={score_a:.3f} B={score_b:.3f}"
    if math.isclose(score_a, score_b, abs_tol=TIE_MARGIN):
        return Judgment(Outcome.TIE, reason)
    return Judgment(Outcome.A if score_a > score_b else Outcome.B, reason)


class BuiltinBackend(CharacterModelBackend):
    """InferenceBackend over one shipped variant; heavy work runs in a worker thread.

    `answer_form` picks which equivalent phrasing of the question the model answers (0:
    the question as asked), so nodes serving the same weights can still give independent
    answers; `judge_forms` is how many phrasings a judgment averages the answers'
    log-likelihoods over.
    """

    def __init__(self, model: ArithModel, *, answer_form: int = 0,
                 judge_forms: int = DEFAULT_JUDGE_FORMS) -> None:
        if answer_form < 0 or judge_forms < 1:
            raise ValueError("answer_form must be >= 0 and judge_forms >= 1")
        self.model = model
        self.answer_form = answer_form
        self.judge_forms = judge_forms

    @classmethod
    def load(cls, name_or_path: str | Path, *, matmul_hook: MatmulHook | None = None,
             answer_form: int = 0, judge_forms: int = DEFAULT_JUDGE_FORMS) -> BuiltinBackend:
        """A variant by name ("arith-m") or by path to a .safetensors file."""
        path = Path(name_or_path)
        if not path.suffix:
            path = variant_path(str(name_or_path))
        return cls(ArithModel(path, matmul_hook=matmul_hook), answer_form=answer_form,
                   judge_forms=judge_forms)

    @property
    def model_id(self) -> bytes:
        return self.model.model_id

    @property
    def name(self) -> str:
        return self.model.name

    def weight_operands(self) -> Mapping[str, np.ndarray]:
        """The model's int8 weights, as `mining_hook` gets them (`mined_weight_roots`)."""
        return self.model.weights

    @property
    def label(self) -> str:
        """Variant name plus answer form when not 0 ("arith-m#2"): unique within a swarm."""
        return self.name if self.answer_form == 0 else f"{self.name}#{self.answer_form}"

    def answer_many(self, prompts: Sequence[str]) -> list[Answer]:
        """Batched, synchronous answers (evaluation); raises UnsupportedPrompt."""
        forms = [_form(_expression(p), self.answer_form) for p in prompts]
        out = []
        for (_e, delta), (text, lp) in zip(forms, self.model.generate([e for e, _d in forms]),
                                           strict=True):
            value = extract_integer(text) if text.lstrip("-").isdigit() else None
            out.append(Answer(text if value is None else str(value - delta), self.model_id, lp))
        return out

    def judge_many(self, items: Sequence[tuple[str, str, str]]) -> list[Judgment]:
        """Batched, synchronous likelihood judgments of (question, answer_a, answer_b)."""
        # an answer's score depends only on (question, its integer): score each once, however
        # many pairs it appears in (a round shows every answer in about six pairs)
        ranges: dict[tuple[str, int | None], tuple[int, int]] = {}
        exprs: list[str] = []
        values: list[int | None] = []
        pairs: list[tuple[tuple[int, int], tuple[int, int]]] = []
        for q, a, b in items:
            expr = _expression(q)
            keys = [(expr, extract_integer(ans)) for ans in (a, b)]
            for key in keys:
                if key not in ranges:
                    start = len(exprs)
                    for e, d in equivalent_forms(expr, self.judge_forms):
                        exprs.append(e)
                        values.append(None if key[1] is None else key[1] + d)
                    ranges[key] = (start, len(exprs))
            pairs.append((ranges[keys[0]], ranges[keys[1]]))
        scores = self.model.score(exprs, values)
        return [judgment_from_scores(_mean(scores[a0:a1]), _mean(scores[b0:b1]))
                for (a0, a1), (b0, b1) in pairs]

    def screen_many(self, items: Sequence[tuple[str, str]]) -> list[bool | None]:
        """Batched screens of (question, answer) by the likelihood of the answer's integer
        (geometric mean over the judging forms): True good, False bad, None no opinion."""
        exprs: list[str] = []
        values: list[int | None] = []
        ranges: list[tuple[int, int]] = []
        for q, ans in items:
            value = extract_integer(ans)
            start = len(exprs)
            for e, d in equivalent_forms(_expression(q), self.judge_forms):
                exprs.append(e)
                values.append(None if value is None else value + d)
            ranges.append((start, len(exprs)))
        scores = self.model.score(exprs, values)
        good, bad = math.log(SCREEN_GOOD_PROBABILITY), math.log(SCREEN_BAD_PROBABILITY)
        means = [_mean(scores[lo:hi]) for lo, hi in ranges]
        return [True if m >= good else False if m < bad else None for m in means]

    async def screen(self, question: str, answer: str) -> bool | None:
        return (await asyncio.to_thread(self.screen_many, [(question, answer)]))[0]

    async def judge_pairs(self, question: str,
                          pairs: Sequence[tuple[str, str]]) -> list[Judgment]:
        return await asyncio.to_thread(self.judge_many, [(question, a, b) for a, b in pairs])

    async def screen_answers(self, question: str, answers: Sequence[str]) -> list[bool | None]:
        return await asyncio.to_thread(self.screen_many, [(question, a) for a in answers])

    async def answer(self, prompt: str, *, max_tokens: int) -> Answer:
        if max_tokens < ANSWER_LEN - 1:
            raise UnsupportedPrompt(f"max_tokens must be at least {ANSWER_LEN - 1}")
        return (await asyncio.to_thread(self.answer_many, [prompt]))[0]

    async def judge(self, question: str, answer_a: str, answer_b: str) -> Judgment:
        return (await asyncio.to_thread(self.judge_many, [(question, answer_a, answer_b)]))[0]


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def _form(expr: str, index: int) -> tuple[str, int]:
    """The index-th equivalent form of expr (cycling), with its value offset."""
    if index == 0:
        return expr, 0
    forms = equivalent_forms(expr, index + 1)
    return forms[index % len(forms)]


_TRAINED = ("the built-in models answer a+b and a-b (a, b 0..99), a*b and a*b+c "
            "(a, c 0..99, b 0..9)")


def _expression(prompt: str) -> str:
    """The canonical expression of a prompt inside the trained operand ranges (outside them
    the models would answer confidently and wrongly: the node abstains instead)."""
    expr = parse_expression(prompt)
    if expr is None:
        raise UnsupportedPrompt(_TRAINED)
    operands = [int(x) for x in re.split(r"[+\-*]", expr)]
    family = ("muladd" if expr.count("+") and "*" in expr else
              {"+": "add", "-": "sub", "*": "mul"}[next(c for c in expr if c in "+-*")])
    ranges = FAMILIES[family]
    if len(operands) != len(ranges) or any(
            not lo <= x <= hi for x, (lo, hi) in zip(operands, ranges, strict=False)):
        raise UnsupportedPrompt(f"{expr} is outside the trained ranges: {_TRAINED}")
    try:
        encode_prompt(expr)
    except ValueError as exc:
        raise UnsupportedPrompt(str(exc)) from exc
    return expr


def load_variants(names: Sequence[str] = VARIANT_NAMES, *,
                  matmul_hook: MatmulHook | None = None) -> list[BuiltinBackend]:
    """The shipped variants as backends (worst to best by default)."""
    return [BuiltinBackend.load(n, matmul_hook=matmul_hook) for n in names]
