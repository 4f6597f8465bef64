"""The node's inference backend: built from ``config.swarm_backend``, its int8 products mined
by the node's miner when the node mines, warmed up at start.

Two kinds of model run here (`swarm.runtime.factory` builds any other spec):

- the built-in arithmetic variants (``builtin:arith-l``, ...): every weight matmul goes
  through `swarm.runtime.mined.mining_hook`;
- the shipped language model, SmolLM2-135M-Instruct (``smollm2``, ``smollm2:<cache dir>``;
  `swarm.runtime.llm`): int8 W8A8 linears whose every product goes through the same hook.
  Its conversion cache lives beside the node's data (``<datadir>/llm-cache``) unless the
  spec names a directory. `swarm.runtime.llm.batched.LLMSwarmBackend` adapts it to the
  round: the sampling seed of a round's answer is drawn from (round id, node id)
  (`round_seed`), answers asked at the same time are generated in one batch, and a round's
  judging (pairs and screen) is one batched scoring pass (`LLMSwarmBackend.judge_round`).

On a mining node (``miner``) each product is `Miner.mine_product`: its transcript yields
tickets on the current block template, so the swarm's inference is the useful work. A
non-mining node computes the same products plainly (the same bits).

Nothing here imports torch: the factory imports the module of the model a spec names, so a
node without a swarm backend starts without it (issue 12).
"""

from __future__ import annotations

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
from swarm.runtime.factory import make_backend, make_round_llm
from swarm.runtime.mined import mining_hook

log = get_logger("swarm")
LLM_CACHE_DIR = "llm-cache"  # the language model's conversion cache, in the node's datadir


class MinedProducts:
    """The model's int8 products, mined by the node's miner (`Miner.mine_product`): on a
    mining node the swarm's inference is the useful work, and a winning ticket is a block."""

    r: int | None = None  # pouw's default chunk size for the padded shapes

    def __init__(self, miner: ProductMiner) -> None:
        self.miner = miner

    def mine(self, a: np.ndarray, b: np.ndarray) -> MinedProduct:
        """A·B through the miner (`swarm.runtime.mined.mining_hook` calls this)."""
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


def load_llm(spec: str, *, datadir: Path | None, miner: ProductMiner | None = None,
             temperature: float | None = None,
             system_prompt: str | None = None) -> InferenceBackend:
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
    return make_round_llm(
        cache_dir=cache, int8=options.get("float", "0") not in ("1", "true"),
        product=None if miner is None else mining_hook(MinedProducts(miner)),
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


__all__ = ["LLM_BACKEND_KIND", "MinedProducts", "RoundBackend",
           "inference_stats", "load_llm", "make_swarm_backend", "round_seed", "warm_up"]
