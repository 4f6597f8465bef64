"""``pouwchain status`` as a real subprocess against a node API on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from node.cli.status import format_status, progress_bar
from tests.framework.nodes import ApiTestNode, MinerStats

pytestmark = pytest.mark.api_node

Client = TestClient[web.Request, web.Application]


async def spawn(*args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUWCHAIN_")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node.cli", "status", *args, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def client_url(client: Client) -> str:
    return str(client.make_url("")).rstrip("/")


def test_progress_bar() -> None:
    assert progress_bar(0.0, width=10) == "[..........]   0.0%"
    assert progress_bar(0.5, width=10) == "[#####.....]  50.0%"
    assert progress_bar(2.0, width=4) == "[####] 100.0%"
    assert progress_bar(-1.0, width=4) == "[....]   0.0%"


@pytest.mark.slow
async def test_status_once(node: ApiTestNode, client: Client) -> None:
    node.mine()
    node.miner = MinerStats(blocks_mined=4, tickets_per_s=321.0)
    code, out, err = await finish(await spawn("--node", client_url(client), "--once"))
    assert code == 0, err
    lines = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert lines["network"] == "dev (chain id 1337)"
    assert lines["height"] == "1" and lines["tip"] == node.chain.tip_id.hex()
    assert lines["syncing"] == "no" and lines["peers"] == "0"
    assert lines["mining"] == "on: 4 blocks mined, 321 tickets/s"
    code, out, err = await finish(await spawn("--node", client_url(client), "--once", "--json"))
    assert code == 0 and json.loads(out)["height"] == 1


async def read_until(proc: asyncio.subprocess.Process, text: str) -> list[str]:
    """Lines the child prints up to and including the first that contains ``text``."""
    assert proc.stdout is not None
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode()
        if not line:
            assert proc.stderr is not None
            err = (await proc.stderr.read()).decode()
            raise AssertionError(f"child exited before printing {text!r}: {lines}\n{err}")
        lines.append(line.rstrip("\n"))
        if text in line:
            return lines


@pytest.mark.slow
async def test_status_follows_sync_until_done(node: ApiTestNode, client: Client) -> None:
    node.syncing, node.sync_progress, node.best_peer_height = True, 0.2, 5
    proc = await spawn("--node", client_url(client), "--interval", "0.05")
    first = await read_until(proc, "20.0%")
    assert first[-1].startswith("syncing [") and first[-1].endswith("height 0/5")
    assert proc.returncode is None  # still following: the node is syncing
    node.sync_progress = 0.7
    node.mine()
    second = await read_until(proc, "70.0%")
    assert "height 1" in second[-1]
    node.syncing, node.sync_progress = False, 1.0
    code, out, err = await finish(proc)
    assert code == 0, err
    rest = out.rstrip().splitlines()
    assert rest[-7].startswith("network") and "syncing   no" in out, (first, second, out)
    assert all(line.startswith("syncing [") for line in rest[:-7]), (first, second, out)


@pytest.mark.slow
async def test_status_once_while_syncing_and_unreachable(node: ApiTestNode,
                                                         client: Client) -> None:
    node.syncing, node.sync_progress = True, 0.5
    code, out, err = await finish(await spawn("--node", client_url(client), "--once"))
    assert code == 0 and "syncing   yes [" in out and "50.0%" in out, out + err
    code, _, err = await finish(await spawn("--node", "http://127.0.0.1:9", "--once"))
    assert code == 1 and "cannot reach the node" in err


@pytest.mark.slow
async def test_ctrl_c_while_following_exits_quietly(node: ApiTestNode, client: Client) -> None:
    node.syncing, node.sync_progress = True, 0.4
    proc = await spawn("--node", client_url(client), "--interval", "0.05")
    await read_until(proc, "40.0%")
    proc.send_signal(signal.SIGINT)
    code, _, err = await finish(proc)
    assert code == 130 and "Traceback" not in err


def test_status_shows_the_swarm_and_finality_sections() -> None:
    status = {
        "network": "dev", "chain_id": 1337, "height": 12, "tip": "ab" * 32, "peers": 3,
        "syncing": False, "sync_progress": 1.0, "mempool": 0, "mining": {"enabled": False},
        "finalized_height": 8,
        "swarm": {"enabled": True, "model": "SmolLM2-135M-Instruct", "registered": True,
                  "capable": True, "registration": {"phase": "calibrated"},
                  "rounds": {"originated": 7, "answered": 6,
                             "failed": {"unsupported_prompt": 1}, "answers_sent": 12,
                             "judgments_sent": 11, "abstained": 1},
                  "settlement": {"settled": 6, "last_lag_blocks": 2, "mean_lag_blocks": 2.33,
                                 "unsettled": 1}}}
    text = format_status(status)
    assert "finalized 8" in text
    assert "swarm     SmolLM2-135M-Instruct: registered, calibrated (registration calibrated)" \
        in text
    assert "rounds    7 asked here, 6 answered (1 unsupported_prompt); 12 answers and 11 " \
           "judgments sent, 1 abstentions" in text
    assert "settled   6 rounds, lag 2 blocks (mean 2.3); 1 unsettled" in text
    status["swarm"] = {"enabled": False}
    assert "swarm     off" in format_status(status)
