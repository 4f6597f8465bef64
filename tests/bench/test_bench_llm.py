"""bench/inference.py and bench/swarm_llm.py run on the shipped SmolLM2 at tiny sizes and
end with their JSON line (smoke tests; they start the bench as a process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.framework.util import ROOT


def _run_bench(script: str, *args: str, cache: Path) -> tuple[list[str], dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--cache-dir", str(cache),
         "--threads", "1", "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=900)
    lines = out.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])


@pytest.mark.slow
def test_inference_bench_prints_table_and_json_last(tmp_path: Path) -> None:
    lines, result = _run_bench("inference.py", "--tokens", "2", "--repeat", "1",
                               "--answerers", "2", cache=tmp_path)
    rows = result["speed"]["rows"]
    assert list(rows) == ["float", "int8", "int8 mined"]
    assert all(row["tokens_per_s"] > 0 for row in rows.values())
    mined = result["speed"]["mined_over_unmined"]
    assert mined["best"] > 0 and mined["products_per_run"] > 0
    status = result["transformers"]["status"]
    assert status == "not installed" or status.startswith("transformers")
    latency = result["swarm_latency"]
    assert latency["answerers"] == 2 and latency["tokens"] == 2
    assert latency["round_s"]["total"] >= latency["round_s"]["generate"] > 0
    assert latency["meets_goal"] == (latency["ratio"] <= latency["goal"])
    assert any(line.startswith("transformers generate") for line in lines)


@pytest.mark.slow
def test_swarm_llm_bench_prints_table_and_json_last(tmp_path: Path) -> None:
    lines, result = _run_bench("swarm_llm.py", "--questions", "3", "--answerers", "3",
                               "--max-tokens", "8", cache=tmp_path)
    assert result["questions"] == 3 and len(result["answerers"]) == 3
    acc = result["accuracy"]
    ceiling = acc["oracle (some answer right)"]
    for name in ("majority vote", "swarm", "swarm, 30% adversarial judges",
                 "swarm evolving reputation", "swarm evolving, 30% adversarial"):
        assert 0 <= acc[name] <= ceiling  # each picks one of the sampled answers
    assert 0 <= acc["one node greedy"] <= 1
    assert result["winner"] in ("one node greedy", "majority vote", "swarm")
    assert any(line.startswith("swarm, 30% adversarial judges") for line in lines)
