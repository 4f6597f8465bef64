"""The node's language-model backend (`swarm.runtime.llm.batched.LLMSwarmBackend`) on the shipped
SmolLM2: built from the short spec with its cache in the datadir, per-round seeds, pending
answers generated in one batch, a round's judging and screen in one scoring pass; and the
node config's sampling settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from node.config import ConfigError, NodeConfig
from node.swarm.backend import LLM_CACHE_DIR, RoundBackend, make_swarm_backend, round_seed
from swarm.runtime.base import InferenceBackend
from swarm.runtime.llm.batched import LLMSwarmBackend

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def node_llm(tmp_path_factory: pytest.TempPathFactory) -> LLMSwarmBackend:
    """The backend a node with ``swarm_backend = "smollm2"`` builds (sampling at 0.7)."""
    datadir = tmp_path_factory.mktemp("llm-node")
    backend = make_swarm_backend("smollm2", datadir=datadir, temperature=0.7,
                                 system_prompt="You are a concise assistant.")
    assert isinstance(backend, LLMSwarmBackend)
    assert (datadir / LLM_CACHE_DIR).is_dir()  # the conversion cache beside the node's data
    return backend


def test_round_seed_is_drawn_from_round_and_node() -> None:
    a, b = bytes(32), b"\x01" * 32
    assert round_seed(a, a) == round_seed(a, a)
    assert len({round_seed(a, a), round_seed(a, b), round_seed(b, a)}) == 3
    assert all(0 <= round_seed(r, n) < 2**63 for r in (a, b) for n in (a, b))


def test_sampling_settings_are_validated(tmp_path: Path) -> None:
    config = NodeConfig(datadir=tmp_path, swarm_backend="smollm2", swarm_temperature=1,
                        swarm_system_prompt="Be brief.")
    assert config.swarm_temperature == 1.0
    for bad in ({"swarm_temperature": -0.1}, {"swarm_temperature": 2.5},
                {"swarm_temperature": "hot"}, {"swarm_system_prompt": 7},
                {"swarm_system_prompt": "x" * 5000}):
        with pytest.raises(ConfigError):
            NodeConfig(datadir=tmp_path, swarm_backend="smollm2", **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="language-model"):
        NodeConfig(datadir=tmp_path, swarm_backend="builtin:arith-l", swarm_temperature=0.5)


@pytest.mark.slow  # loads the real model
def test_pending_answers_share_one_batch_with_their_own_seeds(
        node_llm: LLMSwarmBackend) -> None:
    assert isinstance(node_llm, InferenceBackend) and isinstance(node_llm, RoundBackend)
    seeds = [round_seed(bytes([r]) * 32, b"\x07" * 32) for r in range(3)]

    async def three_rounds() -> list[str]:
        answers = await asyncio.gather(*(node_llm.answer_seeded(QUESTION, max_tokens=24, seed=s)
                                         for s in seeds))
        return [a.text for a in answers]

    before = node_llm.answer_batches
    texts = asyncio.run(three_rounds())
    assert node_llm.answer_batches == before + 1  # the three pending prompts: one batch
    assert all(texts) and any("Paris" in t for t in texts)
    # a round replayed samples the same
    again = asyncio.run(node_llm.answer_seeded(QUESTION, max_tokens=24, seed=seeds[0]))
    assert again.text == texts[0]
    stats = node_llm.inference_stats()
    assert stats["products"] > 0 and stats["macs"] > 0 and stats["answers"] >= 4


@pytest.mark.slow  # loads the real model
def test_a_rounds_judging_is_one_scoring_pass(node_llm: LLMSwarmBackend) -> None:
    pairs = [("The capital of France is Paris.", "Berlin."),
             ("I like cheese.", "Paris is the capital of France.")]
    screened = ["The capital of France is Paris.", "I like cheese."]
    engine_stats = node_llm.engine.stats
    assert engine_stats is not None
    products = engine_stats.products
    judgments, marks = asyncio.run(node_llm.judge_round(QUESTION, pairs, screened))
    one_pass = engine_stats.products - products
    assert [j.outcome.value for j in judgments] == ["A", "B"]
    assert marks[1] is False  # off-topic
    # the same verdicts when the pairs alone are the round (their reasons count support
    # among other answers)
    assert [j.outcome for j in judgments] == [
        j.outcome for j in node_llm.judge_many([(QUESTION, a, b) for a, b in pairs])]
    assert marks == node_llm.screen_many([(QUESTION, a) for a in screened])
    # one scoring pass (the prompt once, then every scored answer after its shared KV
    # cache): as many products as scoring one answer
    products = engine_stats.products
    node_llm.answer_scores([(QUESTION, "Paris.")])
    assert one_pass == engine_stats.products - products
