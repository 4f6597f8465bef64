"""bench/pouw_overhead.py on a tiny job: a table, then one JSON object last; the plain product
it races against is exact and the fastest it found (float32 GEMM where oneDNN's int8 GEMM is
slow, as on CPUs without VNNI); the native path is the kernel's best ISA here."""

from __future__ import annotations

import json

import pytest

from bench.pouw_overhead import main
from pouw import native
from pouw.backends import available_backends
from pouw.params import K_MAX, MAX_CHUNKS, R_MAX

PLAIN_KINDS = {"int8 GEMM", "int8 GEMM in row panels", "float32 GEMM, 1024-deep chunks",
               "float32 GEMM, one call (int7)"}


@pytest.mark.skipif(not native.available(), reason="the native kernel did not build here")
def test_overhead_bench_prints_a_table_then_json_last(
        capsys: pytest.CaptureFixture[str]) -> None:
    result = main(["--backends", "native", "numpy", "--shapes", "64x256x64", "--r", "64",
                   "--repeats", "1", "--worst-mn", "64", "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("native kernel: " + native.ISA_NAMES[native.best_isa()])
    assert json.loads(lines[-1]) == json.loads(json.dumps(result))
    row = result["shapes"]["64x256x64"]
    assert row["plain_kind"] in PLAIN_KINDS and row["plain_ms"] > 0
    if not result["int8_gemm_in_plain_race"]:
        assert row["plain_kind"].startswith("float32")
    assert row["paths"]["native"]["backend"].startswith(
        "native-" + native.ISA_NAMES[native.best_isa()])
    assert row["paths"]["numpy"]["backend"] == "numpy-float32"
    for path in row["paths"].values():
        assert path["overhead"] > 0 and set(path["phases_ms"]) >= {"noise", "product"}
    assert row["chunks"] == 4 and row["certificate_bytes"] <= 64 * 1024
    worst = result["worst_case_verification"]
    assert [(case["r"], case["chunks"]) for case in worst["cases"]] == [
        (K_MAX // MAX_CHUNKS, MAX_CHUNKS), (R_MAX, K_MAX // R_MAX)]
    assert worst["m"] == worst["n"] == 64 and worst["k"] == K_MAX
    assert worst in [{**{"m": 64, "n": 64, "k": K_MAX}, **case, "cases": worst["cases"]}
                     for case in worst["cases"]]
    assert all(case["certificate_bytes"] <= 64 * 1024 for case in worst["cases"])


def test_each_native_isa_below_the_best_is_a_backend() -> None:
    names = available_backends()
    if not native.available():
        assert not any(name.startswith("native") for name in names)
        return
    best = native.best_isa()
    assert ("native-vnni" in names) == (best > 2)
    assert ("native-avx2" in names) == (best > 1)
    assert ("native-portable" in names) == (best > 0)
