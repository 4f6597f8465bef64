"""bench/chaos.py, CI-sized: two partition/heal cycles, a kill round of two concurrent
SIGKILLs, a short soak, on three real mining swarm nodes behind the link proxy; the
invariants must hold (the bench waits on events: links up, tips agreeing, a steady tip to
sum; nothing here is timed). Also the choice of a kill round's victims (``--min-victims``)."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bench.chaos import main, pick_victims
from tests.framework.chaos import TICKS, process_cpu_seconds
from tests.framework.util import ROOT

NODES = 3
CYCLES = 2
KILLS = 2  # one round at the tip: --min-victims 2 of 3 nodes kills two side by side


def test_victims_are_at_least_the_minimum_and_never_every_node() -> None:
    nodes = list(range(6))
    rng = random.Random(5)
    for least in range(1, 6):
        sizes = set()
        for _ in range(200):
            victims = pick_victims(rng, nodes, least)
            assert len(set(victims)) == len(victims)  # each node killed once per round
            sizes.add(len(victims))
        assert sizes == set(range(least, 6))  # one node always stays up
    for bad in (0, 6):
        with pytest.raises(ValueError, match="1 to 5"):
            pick_victims(rng, nodes, bad)


def test_process_cpu_seconds_is_what_the_process_used() -> None:
    def used() -> float:
        t = os.times()
        return t.user + t.system

    before = used()
    digest = b""
    for _ in range(20_000):  # some CPU, so the reading moves
        digest = hashlib.sha256(digest).digest()
    cpu = process_cpu_seconds(os.getpid())
    after = used()
    assert cpu is not None
    tick = 1 / TICKS  # /proc and times(2) count the same clock ticks, rounded apiece
    assert before - tick <= cpu <= after + tick
    with open("/proc/sys/kernel/pid_max") as f:
        assert process_cpu_seconds(int(f.read()) + 1) is None  # no such process


@pytest.mark.parametrize("victims", ["0", "3"])
def test_min_victims_outside_one_to_all_but_one_is_refused(
        victims: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--nodes", "3", "--min-victims", victims])
    assert exc.value.code == 2
    assert "--min-victims: 1 to 2" in capsys.readouterr().err


@pytest.mark.slow  # real node processes
def test_chaos_slice_keeps_every_invariant(tmp_path: Path) -> None:
    series = tmp_path / "series.csv"
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--nodes", str(NODES), "--cycles",
         str(CYCLES), "--kills", str(KILLS), "--min-victims", "2", "--soak", "4", "--sample",
         "1", "--warmup", "1", "--series", str(series), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(out.stdout)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["cycles"] == CYCLES
    assert result["kills"] >= KILLS
    assert result["kills_by_phase"].get("mining", 0) >= 2  # both victims of the first round
    assert result["kill_rounds"] >= 1
    assert result["kills_per_minute"] > 0
    assert result["checks"] >= CYCLES + 1 + 1 + 1  # each heal, kill round(s), soak, end
    # every killed store, one stopped node after each heal and at the soak's end, every
    # node at the end
    assert result["supply_checks"] == result["kills"] + CYCLES + 1 + NODES
    assert result["divergences"] == 0, result["problems"]
    assert result["supply_errors"] == 0, result["problems"]
    assert result["failed_restarts"] == 0, result["problems"]
    assert result["crashes"] == 0, result["problems"]
    assert result["link_failures"] == 0, result["problems"]  # every node rejoined at each check
    assert result["txs_accepted"] > 0
    # nothing accepted is lost, in any phase: the journal (9be4898) keeps it through SIGKILL,
    # and a reorg puts a sender's returning transactions back with its pending ones (74bbf38;
    # before, partition heals lost a pending tail)
    assert result["lost_accepted_txs"] == 0, result["problems"]
    assert result["lost_by_phase"] == {}, result["problems"]
    assert result["soak"]["samples"] >= 2
    # every soak sample of every node is kept, so warm-up and a leak can be told apart
    with series.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == result["soak"]["samples"] * NODES
    assert {int(r["node"]) for r in rows} == set(range(NODES))
    assert all(int(r["rss_bytes"]) > 0 and int(r["height"]) >= 0 for r in rows)
    assert len(result["soak"]["rss_slope_last_half_mb_per_h"]) == NODES
    assert result["restart_to_serving_median_s"] is not None
    assert result["restart_cpu_median_s"] > 0  # read from /proc when each restart serves
