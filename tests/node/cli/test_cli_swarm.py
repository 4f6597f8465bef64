"""``pouwchain ask`` and ``pouwchain round`` against a registered swarm of real nodes (the
built-in arithmetic models): an answer and its round looked up, and a question outside what
the models serve failing at once with its reason printed once (issue 13's fail fast, from the
command line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.framework.swarm import registered_swarm, stop_all
from tests.framework.util import cli_process


@pytest.mark.slow
async def test_ask_then_round_lookup_and_an_unservable_question(tmp_path: Path) -> None:
    _, nodes = await registered_swarm(tmp_path, api=True)
    url = f"http://127.0.0.1:{nodes[0].port}"
    try:
        code, out, err = await cli_process("ask", "What is 40+2?", "--node", url,
                                           "--timeout", "120", "--datadir", str(tmp_path))
        assert code == 0, err
        lines = out.splitlines()
        round_id = lines[2].split()[1]
        assert lines[2].startswith("round") and len(round_id) == 64

        code, out, err = await cli_process("round", round_id, "--node", url,
                                           "--datadir", str(tmp_path))
        assert code == 0, err
        assert "question 'What is 40+2?'" in out and f"round    {round_id}" in out
        code, out, _ = await cli_process("round", round_id, "--json", "--node", url,
                                         "--datadir", str(tmp_path))
        view = json.loads(out)
        assert view["round_id"] == round_id and view["prompt"] == "What is 40+2?"

        code, out, err = await cli_process("ask", "What is the capital of France?", "--node",
                                           url, "--timeout", "120", "--datadir", str(tmp_path))
        assert code == 1 and out == ""
        message = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(message) == 1, err
        assert message[0].count("unsupported_prompt") == 1, err  # the code, once
        assert "every selected answerer abstained" in message[0], err
        assert "Traceback" not in err and "timed out" not in err
    finally:
        await stop_all(nodes)
