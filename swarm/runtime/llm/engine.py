"""Batched generation and scoring with a Llama GGUF model, in float or exact int8.

`LlamaEngine` wraps a loaded model: chat formatting (the file's template), batched
generation (prefill of every prompt in one pass, so each layer's products are as large as
the batch; greedy or seeded sampling; stop tokens, stop strings, max_tokens), and batched
teacher-forced scoring (judging). `load_engine` reads the shipped SmolLM2 through the
conversion cache.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from swarm.runtime.base import PromptTooLong as PromptTooLong
from swarm.runtime.llm.cache import load_model
from swarm.runtime.llm.gguf_file import ChatTemplate, LoadedModel
from swarm.runtime.llm.model import KVCache, LlamaModel
from swarm.runtime.llm.quant import (
    ACT_DIGITS,
    QMAX,
    SMOOTH_ALPHA,
    FloatLinears,
    Int8Linears,
    ProductFn,
    ProductStats,
    default_product,
    fused_weights,
    smoothing_factors,
)
from swarm.runtime.llm.shipped import SHA256, shipped_gguf_path

Message = Mapping[str, str]

#: fixed questions and answers whose chat rendering joins the SmoothQuant text
_SMOOTHQUANT_CHATS: tuple[tuple[str, str], ...] = (
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many grams are in 3 kilograms?", "There are 3000 grams in 3 kilograms."),
    ("Write one sentence about the sea.", "The sea is wide, salty and always moving."),
    ("Is 17 a prime number?", "Yes, 17 is a prime number."),
)


@dataclass(frozen=True)
class QuantConfig:
    """How the int8 path quantises: weight range ±qmax, SmoothQuant α (None: naive W8A8),
    whether the LM head is an int8 product too (else float), and activation digits (1:
    int8 activations in ±qmax; 2: 13-bit activations as two int7 digits stacked as rows of
    one product, twice the MACs). The default (±63, α 0.5, 2 digits) keeps every operand in
    pouw's [-64, 63] and measured best (bench/llm_quality.py)."""

    qmax: int = QMAX
    smooth_alpha: float | None = SMOOTH_ALPHA
    quantize_lm_head: bool = False
    act_digits: int = ACT_DIGITS


@dataclass(frozen=True)
class Generation:
    """One generated continuation. logprob: summed log-probability (temperature 1) of the
    generated tokens; finish_reason "stop" (stop token or string) or "length"."""

    token_ids: tuple[int, ...]
    text: str
    logprob: float
    finish_reason: str


#: streaming callback of `LlamaEngine.generate`: (row of the batch, token id)
TokenCallback = Callable[[int, int], None]


@dataclass
class _Decoding:
    """The mutable per-row state of one `generate` call."""

    rows: int
    stops: frozenset[int]
    stop: tuple[str, ...]
    max_tokens: int
    on_token: TokenCallback | None
    gens: list[torch.Generator]
    out: list[list[int]] = field(default_factory=list)
    logprob: list[float] = field(default_factory=list)
    finish: list[str | None] = field(default_factory=list)
    cut_texts: list[str | None] = field(default_factory=list)  # text cut at a stop string

    def __post_init__(self) -> None:
        self.out = [[] for _ in range(self.rows)]
        self.logprob = [0.0] * self.rows
        self.finish = [None] * self.rows
        self.cut_texts = [None] * self.rows


def smoothquant_text() -> str:
    """The fixed text shipped for SmoothQuant calibration (not the swarm's calibration)."""
    return (resources.files("swarm.runtime.llm") / "data" / "smoothquant.txt").read_text("utf-8")


class LlamaEngine:
    """A model ready to generate and score; `int8` picks the exact W8A8 path.

    `product` (int8 path only) computes every int8 product; swap it later with
    `set_product` (e.g. a mining node's `builtin.mining_hook(session)`).
    """

    def __init__(self, loaded: LoadedModel, model_id: bytes, *, int8: bool = True,
                 quant: QuantConfig | None = None, product: ProductFn | None = None) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.model_id = model_id
        self.tokenizer = loaded.tokenizer
        self.special = loaded.special
        self.template = ChatTemplate(loaded.chat_template, loaded.special)
        self.int8 = int8
        self.quant = quant or QuantConfig()
        weights = fused_weights(loaded.tensors, self.config.n_layer, self.config.tied_embeddings)
        self._int8: Int8Linears | None = None
        if not int8:
            self.model = LlamaModel(self.config, loaded.tensors, FloatLinears(weights))
        else:
            smooth = None
            if self.quant.smooth_alpha is not None:
                absmax = self.activation_absmax(weights, [smoothquant_text()] + [
                    self.template.render([{"role": "user", "content": q},
                                          {"role": "assistant", "content": a}],
                                         add_generation_prompt=False)
                    for q, a in _SMOOTHQUANT_CHATS])
                smooth = {n: smoothing_factors(absmax[n], w, self.quant.smooth_alpha)
                          for n, w in weights.items()}
            self._int8 = Int8Linears(
                weights, qmax=self.quant.qmax, smooth=smooth, product=product,
                float_names=frozenset() if self.quant.quantize_lm_head else frozenset(
                    {"lm_head"}), act_digits=self.quant.act_digits)
            self.model = LlamaModel(self.config, loaded.tensors, self._int8)
        self.stop_ids = frozenset({self.special.eos} | {
            i for t in ("<|endoftext|>", "<|eot_id|>")
            if (i := self.tokenizer.token_to_id(t)) is not None})

    # --- quantisation -----------------------------------------------------------------
    def activation_absmax(self, weights: dict[str, torch.Tensor],
                          texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Per-input-channel |activation| maxima of every linear of the float model with
        `weights` over `texts` (SmoothQuant calibration)."""
        recorder = FloatLinears(weights)
        recorder.record = {}
        model = LlamaModel(self.config, self.loaded.tensors, recorder)
        for text in texts:
            ids = self.encode(text)[: self.config.context_length]
            t = torch.tensor([ids])
            hidden, _ = model.forward(t, torch.ones_like(t, dtype=torch.bool))
            model.logits(hidden)
        return recorder.record

    def set_product(self, product: ProductFn | None) -> None:
        """Route the int8 products through `product` (None: the default exact product)."""
        if self._int8 is None:
            raise ValueError("the float engine has no int8 products")
        self._int8.product = product or default_product

    @property
    def stats(self) -> ProductStats | None:
        """Int8 products and MACs so far (None on the float path)."""
        return None if self._int8 is None else self._int8.stats

    def int8_weights(self) -> Mapping[str, np.ndarray]:
        """The int8 weight operands every product's B is (none on the float path)."""
        return {} if self._int8 is None else self._int8.weights

    # --- text ---------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special tokens written in it (e.g. <|im_start|>) are kept."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def chat_ids(self, messages: Sequence[Message], *, add_generation_prompt: bool = True
                 ) -> list[int]:
        """Token ids of a conversation formatted by the model's own chat template."""
        return self.encode(self.template.render(messages,
                                                add_generation_prompt=add_generation_prompt))

    # --- batched passes ------------------------------------------------------------------
    def _prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, KVCache]:
        """Hidden states [B, L, D] of left-padded prompts, in one pass, and the cache."""
        longest = max(len(p) for p in prompts)
        tokens = torch.full((len(prompts), longest), self.special.pad, dtype=torch.long)
        valid = torch.zeros((len(prompts), longest), dtype=torch.bool)
        for i, p in enumerate(prompts):
            if p:
                tokens[i, longest - len(p):] = torch.tensor(list(p))
                valid[i, longest - len(p):] = True
        return self.model.forward(tokens, valid)

    def _check_generate(self, prompts: Sequence[Sequence[int]], max_tokens: int,
                        temperatures: Sequence[float], top_p: float) -> None:
        """Raise on arguments `generate` cannot run (PromptTooLong past the context)."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if len(temperatures) != len(prompts):
            raise ValueError("one temperature per prompt")
        if min(temperatures) < 0 or not 0 < top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
        for p in prompts:
            if not p:
                raise ValueError("empty prompt")
            if len(p) + max_tokens > self.config.context_length:
                raise PromptTooLong(f"prompt of {len(p)} tokens plus max_tokens {max_tokens} "
                                    f"exceeds the context of {self.config.context_length}")

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], *, max_tokens: int,
                 temperature: float | Sequence[float] = 0.0, top_p: float = 1.0,
                 seed: int | Sequence[int | None] | None = None,
                 stop_ids: Collection[int] | None = None,
                 stop: Sequence[str] = (), on_token: TokenCallback | None = None
                 ) -> list[Generation]:
        """Continue every prompt (token ids) in one batch.

        temperature 0 is greedy; otherwise sampling with optional nucleus `top_p`, each row
        with its own generator seeded by `seed` (one int for all rows or one per row), so a
        row's draws do not depend on the other rows'. `temperature` is one for all rows or
        one per row (greedy and sampled rows can share a batch). Stops at a stop token
        (default: eos), at any string of `stop` (cut from the text) or after `max_tokens`
        tokens.

        `on_token(row, token_id)` (streaming) is called for every token a row keeps, in
        order, as soon as it is chosen; a stop token is never passed. The token that
        completes a stop string is passed too: a streamer that honours `stop` holds back
        text that could still be the start of a stop string (the final `Generation.text`
        is the reference).
        """
        if not prompts:
            return []
        temps = (list(temperature) if isinstance(temperature, Sequence)
                 else [temperature] * len(prompts))
        self._check_generate(prompts, max_tokens, temps, top_p)
        seeds = list(seed) if isinstance(seed, Sequence) else [seed] * len(prompts)
        if len(seeds) != len(prompts):
            raise ValueError("one seed per prompt")
        state = _Decoding(
            rows=len(prompts), stops=self.stop_ids if stop_ids is None else frozenset(stop_ids),
            stop=tuple(stop), max_tokens=max_tokens, on_token=on_token,
            gens=[torch.Generator().manual_seed(s if s is not None else 0) for s in seeds])
        hidden, cache = self._prefill(prompts)
        logits = self.model.logits(hidden[:, -1])
        active = list(range(len(prompts)))
        for step in range(max_tokens):
            chosen = [self._pick(logits[j], state.gens[row], temps[row], top_p)
                      for j, row in enumerate(active)]
            still = self._accept(state, step, active, chosen, logits)
            if not still:
                break
            cache = cache.select(torch.tensor(still))
            active = [active[j] for j in still]
            nxt = torch.tensor([[chosen[j]] for j in still])
            hidden, cache = self.model.forward(nxt, torch.ones_like(nxt, dtype=torch.bool), cache)
            logits = self.model.logits(hidden[:, -1])
        return [Generation(tuple(ids), self.decode(ids) if cut is None else cut, lp_sum,
                           reason or "length")
                for ids, cut, lp_sum, reason in zip(state.out, state.cut_texts, state.logprob,
                                                    state.finish, strict=True)]

    def _accept(self, state: _Decoding, step: int, active: Sequence[int],
                chosen: Sequence[int], logits: torch.Tensor) -> list[int]:
        """Record one decoding step's tokens (`chosen[j]` for row `active[j]`); the
        positions j whose rows go on."""
        lp = torch.log_softmax(logits.to(torch.float64), dim=-1)
        still: list[int] = []
        for j, (row, tok) in enumerate(zip(active, chosen, strict=True)):
            if tok in state.stops:
                state.finish[row] = "stop"
                continue
            state.out[row].append(tok)
            state.logprob[row] += float(lp[j, tok])
            if state.on_token is not None:
                state.on_token(row, tok)
            if state.stop and self._cut_at_stop(state, row):
                continue
            if step + 1 == state.max_tokens:
                state.finish[row] = "length"
                continue
            still.append(j)
        return still

    def _cut_at_stop(self, state: _Decoding, row: int) -> bool:
        """Whether row's text now holds a stop string (then cut there and finished)."""
        text = self.decode(state.out[row])
        cut = min((i for s in state.stop if (i := text.find(s)) >= 0), default=-1)
        if cut < 0:
            return False
        state.cut_texts[row], state.finish[row] = text[:cut], "stop"
        return True

    @staticmethod
    def _pick(logits: torch.Tensor, gen: torch.Generator, temperature: float,
              top_p: float) -> int:
        if temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits.to(torch.float64) / temperature, dim=-1)
        if top_p < 1:
            sorted_p, order = probs.sort(descending=True)
            drop = sorted_p.cumsum(0) - sorted_p >= top_p  # keep the smallest head >= top_p
            sorted_p[drop] = 0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
        return int(torch.multinomial(probs, 1, generator=gen))

    @torch.no_grad()
    def continuation_logprobs(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]
                              ) -> list[list[float]]:
        """Teacher-forced log-probability of each continuation token after its prefix, for
        every (prefix, continuation) pair (a round's judging).

        Prefix caching: each distinct prefix (a question's prompt) runs once, all of them in
        one batched pass; its KV cache is then shared by every continuation after it, and
        all continuations run in one more batched pass. A round's judge thus pays for the
        question once and for each answer's own tokens, not for the prompt per answer."""
        if not pairs:
            return []
        if any(not p or len(p) + len(c) > self.config.context_length for p, c in pairs):
            raise PromptTooLong("empty prefix or sequence longer than the context")
        index = {p: i for i, p in enumerate(dict.fromkeys(tuple(p) for p, _c in pairs))}
        prefixes = list(index)
        which = [index[tuple(p)] for p, _c in pairs]
        hidden, cache = self._prefill(prefixes)
        # the last prefix position predicts each continuation's first token
        first = torch.log_softmax(self.model.logits(hidden[:, -1]).to(torch.float64), dim=-1)
        result = [[float(first[w, c[0]])] if c else [] for w, (_p, c) in zip(
            which, pairs, strict=True)]
        fed = [list(c[:-1]) for _p, c in pairs]  # token j predicts token j + 1
        longest = max(len(f) for f in fed)
        if longest == 0:
            return result
        tokens = torch.full((len(pairs), longest), self.special.pad, dtype=torch.long)
        valid = torch.zeros((len(pairs), longest), dtype=torch.bool)
        rows: list[int] = []
        cols: list[int] = []
        targets: list[int] = []
        for i, (f, (_p, c)) in enumerate(zip(fed, pairs, strict=True)):
            if not f:
                continue
            start = longest - len(f)
            tokens[i, start:] = torch.tensor(f)
            valid[i, start:] = True
            rows += [i] * len(f)
            cols += range(start, longest)
            targets += c[1:]
        hidden, _ = self.model.forward(tokens, valid, cache.select(torch.tensor(which)))
        logits = self.model.logits(hidden[torch.tensor(rows), torch.tensor(cols)])
        lp = torch.log_softmax(logits.to(torch.float64), dim=-1)
        picked = lp[torch.arange(len(targets)), torch.tensor(targets)].tolist()
        for i, v in zip(rows, picked, strict=True):
            result[i].append(float(v))
        return result

    @torch.no_grad()
    def next_token_logprobs(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Log-probabilities [B, V] of the token after each prompt, one batched pass."""
        hidden, _ = self._prefill(prompts)
        return torch.log_softmax(self.model.logits(hidden[:, -1]).to(torch.float64), dim=-1)

    @torch.no_grad()
    def sequence_logprobs(self, ids: Sequence[int]) -> torch.Tensor:
        """Log-probabilities [T-1, V] of every next token of one sequence (perplexity)."""
        t = torch.tensor([list(ids)])
        hidden, _ = self.model.forward(t, torch.ones_like(t, dtype=torch.bool))
        return torch.log_softmax(self.model.logits(hidden[0, :-1]).to(torch.float64), dim=-1)


def load_engine(gguf_path: Path | None = None, cache_dir: Path | None = None, *,
                int8: bool = True, quant: QuantConfig | None = None,
                product: ProductFn | None = None) -> LlamaEngine:
    """An engine for `gguf_path` (default: the shipped SmolLM2, hash-checked), converted
    through `cache_dir` (converted once, seconds to load after)."""
    path = gguf_path or shipped_gguf_path()
    load = load_model(path, cache_dir, expected_sha256=SHA256 if gguf_path is None else None)
    return LlamaEngine(load.model, load.model_id, int8=int8, quant=quant, product=product)
