"""bench/durability.py and bench/mempool_journal.py, CI-sized: the SIGKILL cycles lose no
accepted transaction, and the journal bench loads back everything it admitted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.framework.util import ROOT


def run_bench(*args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, *args, "--json"], capture_output=True, text=True,
                         cwd=ROOT, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow  # real node processes
def test_sigkill_cycles_lose_no_accepted_transaction() -> None:
    result = run_bench(str(ROOT / "bench" / "durability.py"), "--cycles", "3", "--txs", "5",
                       "--mine-every", "2")
    assert result["accepted"] == 15 and result["lost"] == 0
    assert result["mined"] == 10  # two cycles' worth, before the block at cycle 2


@pytest.mark.slow  # a script child process
def test_journal_bench_measures_every_mode() -> None:
    result = run_bench(str(ROOT / "bench" / "mempool_journal.py"), "--txs", "40", "--rounds",
                       "1")
    rates = result["tx_per_s"]
    assert isinstance(rates, dict) and set(rates) == {"none", "os", "group", "fsync"}
    assert all(rate > 0 for rate in rates.values())
    assert isinstance(result["load_tx_per_s"], int) and result["load_tx_per_s"] > 0
