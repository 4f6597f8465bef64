"""``pouwchain status`` follows a real sync: a real empty node catching up with a real peer
that holds a thousand blocks, the CLI a subprocess drawing its bar until the node is done."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from consensus.block import Block
from tests.framework.chain import extend, new_chain
from tests.framework.nodes import preload, start_node
from tests.framework.util import wait_for

BLOCKS = 1000


@pytest.mark.slow
async def test_status_draws_progress_until_synced(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sim = new_chain()
    blocks = [extend(sim, seed=i) for i in range(BLOCKS)]
    source = await start_node(tmp_path, "source", services=True)
    # one block per request: slow enough that the CLI sees the sync in progress
    empty = await start_node(tmp_path, "empty", sync_batch=1, sync_parallel=1, services=True)
    try:
        # the sync holds its blocks until the CLI has drawn a bar: however fast the sync and
        # however slow the CLI's start, the CLI sees it in progress (an event, not a race)
        release = asyncio.Event()
        process_blocks = empty.process_blocks

        async def held(blocks: list[Block], **options: Any) -> int:
            await release.wait()
            return await process_blocks(blocks, **options)

        monkeypatch.setattr(empty, "process_blocks", held)
        preload(source, blocks)
        await empty.peers.connect(source.listen_address)
        await wait_for(lambda: empty.syncing, message="sync start")
        env = {k: v for k, v in os.environ.items() if not k.startswith("POUWCHAIN_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "node.cli", "status", "--datadir", str(empty.config.datadir),
            "--interval", "0.1", env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        first: list[str] = []
        while not first or not first[-1].startswith("syncing ["):
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=300)
            assert line, f"the CLI ended before drawing a bar: {first}"
            first.append(line.decode().rstrip("\n"))
        release.set()
        out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
        assert proc.returncode == 0, err.decode()
        assert empty.chain.height == BLOCKS and not empty.syncing
        lines = first + out.decode().splitlines()
        bars = [line for line in lines if line.startswith("syncing [")]
        assert bars, f"the CLI never saw the sync: {lines}"
        percents = [float(m.group(1)) for m in (re.search(r"(\d+\.\d)%", b) for b in bars) if m]
        assert percents == sorted(percents) and percents[0] < 100.0
        assert f"/{BLOCKS}" in bars[0]
        assert f"height    {BLOCKS}" in lines and "syncing   no" in lines
    finally:
        await empty.stop()
        await source.stop()
