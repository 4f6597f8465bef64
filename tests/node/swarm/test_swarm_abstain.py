"""Signed abstentions (issue 13) on in-process nodes over real sockets: a judge whose backend
fails abstains and the origin stops waiting for it; answerers that all fail for their own
reasons make a 502 ``answerers_failed``, not a client error; the reasons map from the
backend's exceptions; a relayed abstention reaches nodes that are not the origin's peers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from node.builder import SwarmOptions, build_node
from node.node import Node
from node.swarm.service import abstain_reason
from swarm.messages import (
    ABSTAIN_BACKEND_ERROR,
    ABSTAIN_PROMPT_TOO_LONG,
    ABSTAIN_TIMEOUT,
    ABSTAIN_UNSUPPORTED_PROMPT,
    KIND_ANSWER,
    KIND_JUDGMENT,
)
from swarm.runtime.base import Answer, BackendError, BackendTimeout, Judgment, UnsupportedPrompt
from swarm.runtime.factory import make_backend
from swarm.runtime.llm.engine import PromptTooLong
from tests.framework.nodes import connect_all, node_config
from tests.framework.nodes import swarm_service as svc
from tests.framework.util import wait_for

#: every phase would wait this long for a silent node: only abstentions end them early
SLOW: SwarmOptions = {"answer_timeout": 300.0, "judge_timeout": 300.0,
                     "reveal_timeout": 60.0}
WAIT = 60.0  # generous bound on the round (never a timing assertion)


class Failing:
    """The built-in arith-m model, with its answers and/or judgments failing."""

    def __init__(self, *, answers: bool = False, judgments: bool = False) -> None:
        self.inner = make_backend("builtin:arith-m")
        self.answers, self.judgments = answers, judgments

    @property
    def model_id(self) -> bytes:
        return self.inner.model_id

    async def answer(self, prompt: str, *, max_tokens: int) -> Answer:
        if self.answers:
            raise BackendTimeout("no response within 30 s")
        return await self.inner.answer(prompt, max_tokens=max_tokens)

    async def judge(self, question: str, answer_a: str, answer_b: str) -> Judgment:
        return await self.inner.judge(question, answer_a, answer_b)

    async def screen(self, question: str, answer: str) -> bool | None:
        return await self.inner.screen(question, answer)

    async def judge_pairs(self, question: str,
                          pairs: Sequence[tuple[str, str]]) -> list[Judgment]:
        if self.judgments:
            raise BackendError("the judge's endpoint answered HTTP 500")
        return list(await self.inner.judge_pairs(question, pairs))

    async def screen_answers(self, question: str, answers: Sequence[str]) -> list[bool | None]:
        return list(await self.inner.screen_answers(question, answers))


async def swarm(tmp_path: Path, backends: Sequence[Any]) -> list[Node]:
    nodes = []
    for i, backend in enumerate(backends):
        config = node_config(tmp_path, f"n{i}", swarm_backend="builtin:arith-m")
        node = build_node(config, swarm_backend=backend, swarm_options=SLOW)
        await node.start()
        nodes.append(node)
    await connect_all(nodes)
    await wait_for(lambda: all(len(svc(n).candidates()[0]) == len(nodes) for n in nodes),
                   message="capability announcements")
    return nodes


def test_abstain_reasons_follow_the_backends_exceptions() -> None:
    assert abstain_reason(UnsupportedPrompt("not arithmetic")) == ABSTAIN_UNSUPPORTED_PROMPT
    assert abstain_reason(PromptTooLong("9000 tokens")) == ABSTAIN_PROMPT_TOO_LONG
    assert abstain_reason(BackendTimeout("30 s")) == ABSTAIN_TIMEOUT
    assert abstain_reason(TimeoutError()) == ABSTAIN_TIMEOUT
    assert abstain_reason(BackendError("HTTP 500")) == ABSTAIN_BACKEND_ERROR


async def test_a_failing_judge_abstains_and_the_round_does_not_wait(tmp_path: Path) -> None:
    nodes = await swarm(tmp_path, [Failing(judgments=True), Failing(judgments=True),
                                   Failing(judgments=True)])
    try:
        state = await asyncio.wait_for(svc(nodes[0]).ask("What is 40+13?"), WAIT)
        assert state.answer is not None  # answered; the judging phase ended on abstentions
        assert state.abstained(KIND_JUDGMENT) == set(state.judges) and state.judges
        assert not state.committed(KIND_JUDGMENT)
        view = state.abstention_view()
        assert {(a["role"], a["reason"]) for a in view} == {("judgment", "backend_error")}
        assert "HTTP 500" in view[0]["detail"]
        # every node that took part knows the same abstentions (gossip, relayed)
        await wait_for(lambda: all(
            svc(n).rounds[state.round_id].abstained(KIND_JUDGMENT) == set(state.judges)
            for n in nodes), message="abstentions everywhere")
        assert sum(svc(n).stats.abstained[("judgment", "backend_error")] for n in nodes) == \
            len(state.judges)
    finally:
        for node in nodes:
            await node.stop()


async def test_answerers_failing_on_their_own_is_a_502(tmp_path: Path) -> None:
    nodes = await swarm(tmp_path, [Failing(answers=True), Failing(answers=True)])
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{nodes[0].port}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "What is 2+3?"}]},
                timeout=aiohttp.ClientTimeout(total=WAIT)) as resp:
            body = await resp.json()
        assert resp.status == 502 and body["error"]["code"] == "answerers_failed"
        assert {a["reason"] for a in body["error"]["abstentions"]} == {"backend_timeout"}
        [state] = svc(nodes[0]).rounds.values()
        assert state.abstained(KIND_ANSWER) == set(state.answerers)
    finally:
        for node in nodes:
            await node.stop()
