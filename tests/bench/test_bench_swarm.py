"""bench/swarm_quality.py runs and ends with its JSON line (small sizes: a smoke test)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.framework.util import ROOT


@pytest.mark.slow
def test_bench_prints_table_and_json_last() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "swarm_quality.py"), "--answers", "4", "9",
         "--judges", "3", "--repeat", "1", "--questions", "12", "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=300)
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert [row["answers"] for row in result["aggregation"]] == [4, 9]
    assert all(row["converged"] and 0 < row["aggregate_min_ms"] <= row["aggregate_ms"]
               for row in result["aggregation"])
    assert result["aggregation_64_ms"] is None  # no 64-answer row asked for
    quality = result["quality"]
    assert quality["questions"] == 12 and len(quality["answerers"]) == 8
    nodes = quality["node_accuracy"]
    assert quality["best_node_accuracy"] == max(nodes.values()) == nodes[quality["best_node"]]
    # nothing that picks one of the candidates beats "some candidate is right"
    ceiling = quality["oracle_any_right"]
    assert quality["majority_vote"] <= ceiling
    assert [row["reputation"] for row in quality["swarm"]] == [
        "equal", "calibration", "doubling", "evolving"]
    # the adversaries end with a reputation far below every honest judge that earned any
    evolving = quality["swarm"][-1]["judge_reputation"]["end_adversarial"]
    assert evolving["adversary"] < evolving["arith-l"]
    for row in quality["swarm"]:
        assert 0 <= row["swarm_adversarial"] <= ceiling and 0 <= row["swarm"] <= ceiling
    assert any(line.split()[:2] == ["9", "3"] for line in lines)
