"""bench/bls.py runs every backend on a tiny set, prints its table, and ends with one JSON
object whose rows verify (the bench asserts each aggregate verifies before timing it)."""

from __future__ import annotations

import json

import pytest

from bench.bls import main
from core.bls_pyecc import available_backends


def test_bls_bench_prints_a_table_then_json_last(capsys: pytest.CaptureFixture[str]) -> None:
    result = main(["--sizes", "2,3", "--repeat", "2", "--py-ecc-max", "2", "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["backend", "n", "fav"]
    assert json.loads(lines[-1]) == json.loads(json.dumps(result))
    rows = {(r["backend"], r["validators"]): r for r in result["rows"]}
    for backend in available_backends():
        assert rows[(backend.name, 2)]["fav"] > 0
    assert rows[("py-ecc", 3)]["skipped"] is True  # capped: py-ecc is slow
    assert result["goal_validators"] == 64 and result["goal_met"] is False  # 64 not measured
