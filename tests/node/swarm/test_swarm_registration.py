"""The registration state machine (`node.swarm.registration`) on a real in-process node that
mines its own blocks: it stakes, registers and calibrates by itself; a node whose backend
answers wrong fails calibration and sends its retry only once ``calibration.too_soon`` is
over; a node with the option off never registers. Plus the config options."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consensus.genesis import dev_seed
from consensus.tx import Transaction, sign_transaction
from contracts.registry import (
    CALIBRATION_RETRY_BLOCKS,
    CALIBRATION_WINDOW,
    MAX_CALIBRATION_ANSWER,
    SubmitCalibration,
    capability,
    is_capable,
)
from contracts.staking import BeginUnstake
from core.state import State
from node.builder import build_node
from node.config import DEFAULT_SWARM_STAKE, ConfigError, NodeConfig
from node.node import Node
from node.swarm.registration import (
    CALIBRATED,
    CALIBRATION_FAILED,
    OFF,
    ROUTE,
    UNFUNDED,
    SwarmRegistration,
    answer_prompts,
    bumped_fee,
    calibration_text,
)
from swarm.calibration import QUESTION_SUITE
from swarm.runtime.base import Answer, InferenceBackend, Judgment
from swarm.runtime.builtin import BuiltinBackend
from swarm.runtime.factory import make_backend
from tests.framework.nodes import node_config, swarm_service
from tests.framework.util import wait_for

STRONG = "builtin:arith-l"  # passes calibration (12/16) every time in practice


class Switchable:
    """A real backend that answers every question with "0" while ``wrong`` is set."""

    def __init__(self, inner: InferenceBackend) -> None:
        self.inner = inner
        self.wrong = True

    @property
    def model_id(self) -> bytes:
        return self.inner.model_id

    async def answer(self, prompt: str, *, max_tokens: int) -> Answer:
        if self.wrong:
            return Answer(text="0", model_id=self.model_id)
        return await self.inner.answer(prompt, max_tokens=max_tokens)

    async def judge(self, question: str, answer_a: str, answer_b: str) -> Judgment:
        return await self.inner.judge(question, answer_a, answer_b)

    async def screen(self, question: str, answer: str) -> bool | None:
        return await self.inner.screen(question, answer)

    async def judge_pairs(self, question: str,
                          pairs: Sequence[tuple[str, str]]) -> list[Judgment]:
        return await self.inner.judge_pairs(question, pairs)

    async def screen_answers(self, question: str, answers: Sequence[str]) -> list[bool | None]:
        return await self.inner.screen_answers(question, answers)


class SlowBatched(Switchable):
    """A real backend, right from the start, that answers only in batches, each taking
    ``delay`` seconds (a language model on a busy machine): many blocks pass meanwhile."""

    def __init__(self, inner: BuiltinBackend, delay: float) -> None:
        super().__init__(inner)
        self.wrong = False
        self.batch = inner
        self.delay = delay
        self.batches: list[int] = []  # prompts per batched call

    def answer_many(self, prompts: Sequence[str], *, max_tokens: int) -> list[Answer]:
        self.batches.append(len(prompts))
        time.sleep(self.delay)  # a worker thread: the node's loop and miner go on
        return self.batch.answer_many(prompts)

    async def answer(self, prompt: str, *, max_tokens: int) -> Answer:
        raise AssertionError("calibration asks a batching backend in one call")


async def _node(tmp_path: Path, name: str, seed: int, *, backend: InferenceBackend | None = None,
                **config: Any) -> Node:
    """A mining node whose identity is funded dev account ``seed``."""
    node = build_node(node_config(tmp_path, name, dev_key=seed, mine=True, swarm_backend=STRONG,
                                  **config), swarm_backend=backend)
    await node.start()
    return node


def _registration(node: Node) -> SwarmRegistration:
    assert node.swarm_registration is not None
    return node.swarm_registration


def _calibrations(node: Node) -> list[tuple[int, Transaction]]:
    """Record (tip height, tx) of every SubmitCalibration the node hands to its pool."""
    sent: list[tuple[int, Transaction]] = []
    submit: Callable[..., Awaitable[bytes]] = node.submit_transaction

    async def recording(tx: Transaction, **kwargs: Any) -> bytes:
        if isinstance(tx.payload, SubmitCalibration):
            sent.append((node.chain.height, tx))
        return await submit(tx, **kwargs)

    setattr(node, "submit_transaction", recording)  # noqa: B010
    return sent


async def test_node_stakes_registers_and_calibrates_itself(tmp_path: Path) -> None:
    node = await _node(tmp_path, "a", 1, swarm_register=True, mining_block_interval=0.5)
    try:
        registration = _registration(node)
        await wait_for(lambda: registration.phase == CALIBRATED, timeout=60.0,
                         message="calibrated")
        state = State(node.chain.state_view())
        assert state.stake(node.node_id).bonded == DEFAULT_SWARM_STAKE
        record = state.swarm_node(node.node_id)
        assert record is not None and record.models == (make_backend(STRONG).model_id,)
        assert is_capable(state, node.node_id)
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{node.port}{ROUTE}") as resp:
            status = await resp.json()
        assert status["phase"] == CALIBRATED and status["enabled"]
        assert status["calibration"]["passed"] and status["seconds_to_calibrate"] > 0
        # the swarm service draws from the registry (from the next candidate table on):
        # rounds can settle
        service = swarm_service(node)
        await wait_for(lambda: [c.node for c in service.candidates()[0]] == [node.node_id],
                         timeout=30.0, message="the node is a registry candidate")
        # stake that falls below the target (here unbonded by hand; a slash alike) is topped up
        nonce = State(node.chain.state_view()).account(node.node_id).nonce
        await node.submit_transaction(sign_transaction(
            dev_seed(1), chain_id=node.chain.params.chain_id, nonce=nonce, fee=10,
            payload=BeginUnstake(amount=3_000)))

        def bonded() -> int:
            return State(node.chain.state_view()).stake(node.node_id).bonded

        await wait_for(lambda: State(node.chain.state_view()).account(node.node_id).nonce
                         == nonce + 2 and bonded() == DEFAULT_SWARM_STAKE, timeout=30.0,
                         message="the stake topped up")
        assert registration.phase == CALIBRATED
    finally:
        await node.stop()


async def test_a_slow_backend_still_calibrates_within_the_window(tmp_path: Path) -> None:
    """Answering takes many blocks: the calibration names the tip it answered for, lands
    later (no longer on that tip), and the node answered once, in one batched call."""
    inner = make_backend(STRONG)
    assert isinstance(inner, BuiltinBackend)
    backend = SlowBatched(inner, delay=3.0)
    node = await _node(tmp_path, "s", 4, backend=backend, swarm_register=True,
                       mining_block_interval=0.2)
    try:
        sent = _calibrations(node)
        registration = _registration(node)
        try:
            await wait_for(lambda: registration.phase == CALIBRATED, timeout=90.0,
                           message="calibrated")
        except AssertionError as exc:  # once in a full-suite run (stop 24): say where it stood
            raise AssertionError(
                f"{exc}: phase {registration.phase}, attempts {registration.attempts}, "
                f"missed {registration.missed}, last error {registration.last_error!r}, "
                f"batches {backend.batches}, sent at heights {[h for h, _ in sent]}, "
                f"height {node.chain.height}") from exc
        assert backend.batches == [16] and registration.attempts == 1
        assert registration.missed == 0 and len(sent) == 1
        record = capability(State(node.chain.state_view()), node.node_id)
        assert record is not None and record.capable
        # it landed at record.height on a parent newer than its seed, inside the window
        [(sent_at, calibration)] = sent
        assert isinstance(calibration.payload, SubmitCalibration)
        seed = calibration.payload.seed_block
        seed_height = next(h for h in range(record.height) if node.chain.block_id_at(h) == seed)
        assert seed_height < record.height - 1 and sent_at > seed_height
        assert record.height - seed_height <= CALIBRATION_WINDOW
    finally:
        await node.stop()


class HeldFirst(SlowBatched):
    """A batching backend whose first call waits until ``release`` is set (the test mines
    the calibration's seed out of the window meanwhile); later calls answer at once."""

    def __init__(self, inner: BuiltinBackend) -> None:
        super().__init__(inner, delay=0.0)
        self.called = threading.Event()
        self.release = threading.Event()

    def answer_many(self, prompts: Sequence[str], *, max_tokens: int) -> list[Answer]:
        if not self.batches:
            self.called.set()
            assert self.release.wait(120), "never released"
        return super().answer_many(prompts, max_tokens=max_tokens)


async def test_answers_for_a_seed_gone_from_the_window_are_redone_at_once(
        tmp_path: Path) -> None:
    """Answering outlasted the window: the pool refuses the calibration
    (calibration.stale_seed) and the node answers the new tip's prompts at its next step,
    many blocks before a failed calibration's CALIBRATION_RETRY_BLOCKS would allow."""
    inner = make_backend(STRONG)
    assert isinstance(inner, BuiltinBackend)
    backend = HeldFirst(inner)
    node = await _node(tmp_path, "w", 5, backend=backend, swarm_register=True,
                       mining_block_interval=0.2)
    try:
        sent = _calibrations(node)
        registration = _registration(node)
        await wait_for(backend.called.is_set, timeout=60.0, message="the first answering")
        asked_at = node.chain.height  # the seed is this tip or one before it
        assert node.miner is not None
        await node.miner.generate(CALIBRATION_WINDOW + 2)
        released_at = node.chain.height
        backend.release.set()
        await wait_for(lambda: registration.phase == CALIBRATED, timeout=90.0,
                       message="calibrated on fresh answers")
        assert backend.batches == [16, 16]  # answered again, once
        # the stale one (refused by the pool), then one seeded at a tip after the release
        seeds = [tx.payload.seed_block for _, tx in sent]  # type: ignore[attr-defined]
        assert len(seeds) == 2 and registration.attempts == 1
        assert seeds[1] in {node.chain.block_id_at(h) for h in range(released_at,
                                                                      node.chain.height + 1)}
        record = capability(State(node.chain.state_view()), node.node_id)
        assert record is not None and record.capable
        assert released_at > asked_at + CALIBRATION_WINDOW
        assert record.height < released_at + CALIBRATION_RETRY_BLOCKS
    finally:
        backend.release.set()
        await node.stop()


async def test_failed_calibration_retries_only_after_too_soon(tmp_path: Path) -> None:
    backend = Switchable(make_backend(STRONG))
    node = await _node(tmp_path, "b", 2, backend=backend, swarm_register=True,
                       mining_block_interval=0.5)
    try:
        sent = _calibrations(node)
        registration = _registration(node)
        await wait_for(lambda: registration.phase == CALIBRATION_FAILED, timeout=60.0,
                         message="the wrong calibration lands")
        record = capability(State(node.chain.state_view()), node.node_id)
        assert record is not None and not record.capable and record.correct < 12
        failed = record.height
        assert registration.retry_height == failed + CALIBRATION_RETRY_BLOCKS - 1
        first = len(sent)
        backend.wrong = False
        # mine up to just before the retry window: the node must not try again
        assert node.miner is not None
        await node.miner.generate(failed + CALIBRATION_RETRY_BLOCKS - 3 - node.chain.height)
        await asyncio.sleep(0.5)
        assert len(sent) == first and registration.phase == CALIBRATION_FAILED
        assert registration.last_error is None  # it waited; nothing was rejected
        await wait_for(lambda: registration.phase == CALIBRATED, timeout=60.0,
                         message="the retry passes")
        retries = [height for height, _ in sent[first:]]
        assert retries and min(retries) >= failed + CALIBRATION_RETRY_BLOCKS - 1
        passed = capability(State(node.chain.state_view()), node.node_id)
        assert passed is not None and passed.capable
        assert passed.height >= failed + CALIBRATION_RETRY_BLOCKS
        assert registration.missed == len(sent) - 2  # a landed (failed) one is no miss
    finally:
        await node.stop()


async def test_option_off_never_registers(tmp_path: Path) -> None:
    node = await _node(tmp_path, "c", 3, mining_block_interval=0.2)
    try:
        registration = _registration(node)
        start = node.chain.height
        await wait_for(lambda: node.chain.height >= start + 3, timeout=30.0, message="blocks")
        state = State(node.chain.state_view())
        assert registration.phase == OFF and not registration.status()["enabled"]
        assert state.swarm_node(node.node_id) is None
        assert state.account(node.node_id).nonce == 0 and len(node.mempool) == 0
        assert await registration.step() == OFF
    finally:
        await node.stop()


async def test_unfunded_node_says_so_and_sends_nothing(tmp_path: Path) -> None:
    node = build_node(node_config(tmp_path, "d", swarm_backend=STRONG, swarm_register=True))
    # a fresh random identity: no balance in the dev genesis
    await node.start()
    try:
        registration = _registration(node)
        await wait_for(lambda: registration.phase == UNFUNDED, message="unfunded")
        assert "balance 0" in str(registration.status()["last_error"])
        assert len(node.mempool) == 0
    finally:
        await node.stop()


def test_config_options(tmp_path: Path) -> None:
    config = NodeConfig(datadir=tmp_path)
    assert config.swarm_register is False and config.swarm_stake == DEFAULT_SWARM_STAKE
    on = NodeConfig(datadir=tmp_path, swarm_register=True, swarm_backend=STRONG, swarm_stake=5)
    assert on.swarm_register and on.swarm_stake == 5
    with pytest.raises(ConfigError, match="needs swarm_backend"):
        NodeConfig(datadir=tmp_path, swarm_register=True)
    for bad in (0, -1, 2**64, 1.5, True):
        with pytest.raises(ConfigError, match="swarm_stake"):
            NodeConfig(datadir=tmp_path, swarm_stake=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="swarm_register"):
        NodeConfig(datadir=tmp_path, swarm_register="yes")  # type: ignore[arg-type]
    toml = tmp_path / "node.toml"
    toml.write_text('swarm_backend = "builtin:arith-m"\nswarm_register = true\n'
                    'swarm_stake = 777\n')
    loaded = NodeConfig.resolve(datadir=tmp_path)
    assert loaded.swarm_register and loaded.swarm_stake == 777


def test_answer_text_and_fee_bump() -> None:
    assert calibration_text(" 42 ") == b"42"
    long = "the answer, after a long derivation, is " + "x" * MAX_CALIBRATION_ANSWER + " -17"
    assert calibration_text(long) == b"-17"
    assert calibration_text("y" * (MAX_CALIBRATION_ANSWER + 1)) == b""
    assert len(calibration_text("9" * (MAX_CALIBRATION_ANSWER + 9))) <= MAX_CALIBRATION_ANSWER
    # the question suite keeps the answer's start (cut on a character boundary)
    words = "The capital of Germany is Berlin. " + "é" * MAX_CALIBRATION_ANSWER
    cut = calibration_text(words, QUESTION_SUITE)
    assert cut.startswith(b"The capital of Germany is Berlin.")
    assert len(cut) <= MAX_CALIBRATION_ANSWER and cut.decode()
    assert [bumped_fee(f) for f in (10, 11, 13, 100)] == [11, 13, 15, 110]


async def test_answer_prompts_batches_when_it_can() -> None:
    inner = make_backend(STRONG)
    assert isinstance(inner, BuiltinBackend)
    batching = SlowBatched(inner, delay=0.0)
    prompts = ["What is 2+3?", "What is 7*6?"]
    assert await answer_prompts(batching, prompts) == ["5", "42"]
    assert batching.batches == [2]
    one_by_one = Switchable(inner)
    one_by_one.wrong = False
    assert await answer_prompts(one_by_one, prompts) == ["5", "42"]
