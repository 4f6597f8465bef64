"""bench/inference.py and bench/swarm_llm.py run on the shipped SmolLM2 at tiny sizes and
end with their JSON line (smoke tests; they start the bench as a process, on the session's
converted model: `llm_cache`)."""

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
def test_inference_bench_prints_table_and_json_last(llm_cache: Path) -> None:
    lines, result = _run_bench("inference.py", "--tokens", "2", "--repeat", "1",
                               "--answerers", "2", cache=llm_cache)
    rows = result["speed"]["rows"]
    assert list(rows) == ["float", "int8", "int8 mined", "transformers generate"]
    assert all(row["tokens_per_s"] > 0 for row in rows.values())
    mined = result["speed"]["mined_over_unmined"]
    assert mined["best"] > 0 and mined["products_per_run"] > 0
    reference = result["transformers"]  # pinned in the `reference` extra: make installs it
    assert reference["status"].startswith("transformers ")
    assert reference["tokens_per_s"] == rows["transformers generate"]["tokens_per_s"] > 0
    assert reference["load_s"] > 0
    agreement = reference["greedy_agreement"]
    assert agreement == result["speed"]["reference_greedy_agreement"]
    assert agreement["compared"] == 2 and 0 <= agreement["same_prefix"] <= 2
    assert agreement["first_ok"]  # float32 both: the first tokens are the same
    latency = result["swarm_latency"]
    assert latency["answerers"] == 2 and latency["tokens"] == 2
    r = latency["round_s"]  # the critical path: the slowest answerer, one judge, settle
    assert r["critical_path"] == pytest.approx(
        r["slowest_answerer"] + r["judging"] + r["settle"], abs=0.002)
    assert r["slowest_answerer"] >= r["answerer_median"] > 0 and r["judging"] > 0
    assert r["one_machine"] == pytest.approx(r["batch_generate"] + r["judging"] + r["settle"],
                                             abs=0.002)
    assert latency["meets_goal"] == (latency["ratio"] <= latency["goal"])
    assert any(line.startswith("transformers generate") for line in lines)


@pytest.mark.slow
def test_reference_check_agrees_with_transformers(llm_cache: Path) -> None:
    """Our loader and float forward against transformers on the shipped GGUF: the script
    exits 0 only if token ids are identical, logits agree and greedy continuations share
    their first tokens."""
    lines, result = _run_bench("llm_reference_check.py", "--tokens", "8", cache=llm_cache)
    assert result["reference"].startswith("transformers ")
    assert result["rows"] and all(r["same_ids"] for r in result["rows"])
    assert all(r["max_abs_logit_diff"] < 1e-3 for r in result["rows"])
    assert len(result["greedy"]) == 3 and all(r["first_ok"] for r in result["greedy"])
    assert any(line.startswith("greedy continuations") for line in lines)


@pytest.mark.slow
def test_swarm_llm_bench_prints_table_and_json_last(llm_cache: Path) -> None:
    lines, result = _run_bench("swarm_llm.py", "--questions", "3", "--answerers", "3",
                               "--max-tokens", "8", cache=llm_cache)
    assert result["questions"] == 3 and len(result["answerers"]) == 3
    acc = result["accuracy"]
    ceiling = acc["oracle (some answer right)"]
    for name in ("majority vote", "swarm", "swarm, 30% adversarial judges",
                 "swarm evolving reputation", "swarm evolving, 30% adversarial",
                 "swarm, likelihood-only judges", "swarm, likelihood-only, 30% adversarial"):
        assert 0 <= acc[name] <= ceiling  # each picks one of the sampled answers
    assert 0 <= acc["one node greedy"] <= 1
    assert result["winner"] in ("one node greedy", "majority vote", "swarm")
    assert any(line.startswith("swarm, 30% adversarial judges") for line in lines)
