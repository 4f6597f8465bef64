"""The node's log (issue 13): one log per node (``<datadir>/node.log``; stderr only on a
terminal), ISO-8601 timestamps, readable text on a terminal and JSON with ``--log-json`` or
when redirected, and a short sync (one block behind, every new tip) at debug level while a
real catch-up stays at info. Real ``pouwchain node`` processes, one with a pseudo-terminal
for its stderr."""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import pty
import re
import select
import subprocess
from pathlib import Path

import pytest

from node.logging import configure_logging, get_logger, log_event, parse_time
from testnet.process import free_port, node_command, spawn, stop_process, wait_ready
from tests.framework.chain import extend, new_chain
from tests.framework.nodes import preload, start_node
from tests.framework.util import wait_for, wait_until

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warning|error) +\S")
WAIT = 60.0


def json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_redirected_node_writes_one_json_log_with_iso_times(tmp_path: Path) -> None:
    datadir = tmp_path / "n"
    proc = spawn(node_command(datadir, free_port()), tmp_path / "n.out")
    try:
        wait_ready(datadir, proc, WAIT)
    finally:
        assert stop_process(proc) == 0
    events = json_lines(datadir / "node.log")  # every line is JSON
    assert any(e["event"] == "node.started" for e in events), events[:5]
    for event in events:
        stamp = str(event["ts"])
        assert stamp.endswith("Z")
        parsed = datetime.datetime.fromisoformat(stamp)
        assert parsed.tzinfo is not None and parse_time(stamp) == parsed.timestamp()
    # the redirected stderr holds no copy of the log (one log per node)
    assert (tmp_path / "n.out").read_text().strip() == ""


def read_terminal(master: int, until: re.Pattern[str]) -> str:
    """What the node wrote to its terminal, until a line matches ``until``."""
    seen = ""

    def done() -> bool:
        nonlocal seen
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                seen += os.read(master, 65536).decode(errors="replace")
            except OSError:  # the node closed the terminal
                return True
        return any(until.search(line) for line in seen.splitlines())

    wait_until(done, WAIT, interval=0.0, message="the node's terminal output")
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("flag", [None, "--log-json"])
def test_a_node_on_a_terminal_logs_text_or_json_with_log_json(
        tmp_path: Path, flag: str | None) -> None:
    datadir = tmp_path / "n"
    master, slave = pty.openpty()
    cmd = node_command(datadir, free_port(), extra=[flag] if flag else [])
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            cwd=Path(__file__).resolve().parents[2])
    os.close(slave)
    try:
        wait_ready(datadir, proc, WAIT)
        shown = read_terminal(master, re.compile(r"node\.started"))
    finally:
        assert stop_process(proc) == 0
        os.close(master)
    lines = [line for line in shown.splitlines() if "node.started" in line]
    assert lines, shown
    if flag is None:  # text on the terminal, and the same text in node.log
        assert ISO.match(lines[0]), lines[0]
        logged = (datadir / "node.log").read_text().splitlines()
        assert logged and all(ISO.match(line) for line in logged if line[:1].isdigit())
        assert not any(line.startswith("{") for line in logged)
    else:
        assert json.loads(lines[0])["event"] == "node.started"
        assert json_lines(datadir / "node.log")


def test_configure_logging_chooses_by_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log = get_logger("test")
    for stream, is_json in ((io.StringIO(), True), (Terminal(), False)):
        configure_logging(level="info", stream=stream)  # no file: stderr gets it
        log_event(log, "test.event", answer=42)
        line = stream.getvalue().strip()
        if is_json:
            assert json.loads(line)["answer"] == 42 and json.loads(line)["ts"].endswith("Z")
        else:
            assert ISO.match(line) and line.endswith("test.event answer=42")
    configure_logging(level="info", stream=io.StringIO(), json_lines=False)
    logging.getLogger("pouwchain").handlers.clear()  # leave no handler on a closed stream


async def test_following_the_tip_is_debug_and_catching_up_is_info(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sim = new_chain()
    blocks = [extend(sim, seed=i) for i in range(20)]
    a = await start_node(tmp_path, "a")  # one block
    d = await start_node(tmp_path, "d")  # twenty
    preload(a, blocks[:1])
    preload(d, blocks)
    b = await start_node(tmp_path, "b")
    c = await start_node(tmp_path, "c")
    logger = logging.getLogger("pouwchain")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="pouwchain")
    try:
        await b.peers.connect(a.listen_address)  # one block behind: following the tip
        await wait_for(lambda: b.chain.height == 1 and not b.syncing, message="synced 1")
        await c.peers.connect(d.listen_address)  # twenty behind: a catch-up
        await wait_for(lambda: c.chain.height == 20 and not c.syncing, message="synced 20")
    finally:
        logger.removeHandler(caplog.handler)
        for node in (a, b, c, d):
            await node.stop()
    syncs = [(r.getMessage(), r.levelno, r.__dict__.get("blocks")) for r in caplog.records
             if r.getMessage() in ("sync.start", "sync.done")]
    assert ("sync.done", logging.DEBUG, 1) in syncs  # following the tip
    assert ("sync.done", logging.INFO, 20) in syncs  # catching up
    assert ("sync.start", logging.INFO, None) in syncs
