"""bench/swarm_attacks.py runs through settle and ends with its JSON line (a smoke test);
its --judges model, and a round the default judge count protects."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.swarm_attacks import (
    COMPARED_ATTACKS,
    Tally,
    coalition_seats,
    make_trial,
    run_trial,
    with_honest,
)
from swarm.messages import DEFAULT_ROUND_JUDGES
from tests.framework.util import ROOT


@pytest.mark.slow
def test_attack_bench_prints_table_and_json_last() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "swarm_attacks.py"), "--rounds", "3",
         "--attacks", "good+bad,self,omission", "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=600)
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    rows = {(row["attack"], row["weight_share"]): row for row in result["rows"]}
    assert set(rows) == {("good+bad", s) for s in (0.1, 0.2, 0.3, 0.33)} | {
        ("self", s) for s in (0.1, 0.2, 0.3, 0.33)} | {("omission", None)}
    assert all(row["rounds"] == 3 for row in rows.values())
    # the settler's omission slashes the honest judge, and the judge can always prove it
    omission = rows[("omission", None)]
    assert omission["honest_slashed_pct"] == 100.0
    assert omission["provable_in_window_pct"] == 100.0
    assert any(line.split()[:2] == ["good+bad", "30%"] for line in lines)


@pytest.mark.slow
def test_compare_ranks_the_same_rounds_as_settle() -> None:
    """--compare ranks unsigned verdict bytes; for each compared attack its adopted-rule row
    must equal the main table's rows of that attack, which went through the real settle on
    signed rounds."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "swarm_attacks.py"), "--rounds", "6",
         "--attacks", ",".join(COMPARED_ATTACKS), "--compare", "--json"],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=900)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["compare"]) == set(COMPARED_ATTACKS)
    for attack, rows in result["compare"].items():
        settled = {f"{row['weight_share']:.0%}": row for row in result["rows"]
                   if row["attack"] == attack}
        compared = {row["candidate"]: row for row in rows}
        adopted = next(row for name, row in compared.items() if name.startswith("adopted"))
        assert len(compared) >= 8
        assert set(adopted["cells"]) == set(settled)
        for share, cell in adopted["cells"].items():
            for key in ("changed_pct", "control_changed_pct", "target_first_pct",
                        "right_first_pct"):
                assert cell[key] == settled[share][key], (attack, share, key)


def test_the_default_judge_count_keeps_a_30pct_coalition_target_off_the_top() -> None:
    """Trial 19 (found by scanning the bench's first 200 rounds: one of the two where the
    GOOD+all-BAD coalition at 30% ranks its target first with 4..8 honest judges): through the
    real settle its target is first with 5 judges per round too, and not with the default
    count (the coalition holding its 30% of the seats, rounded up, in every case)."""
    for judges, target_first in ((0, 1), (5, 1), (DEFAULT_ROUND_JUDGES, 0)):
        tallies: dict[tuple[str, float | None], Tally] = {}
        run_trial(19, tallies, ("good+bad",), judges)
        assert tallies[("good+bad", 0.3)].target_first == target_first, judges


def test_a_self_promoter_at_30pct_gets_what_voting_honestly_would_give_it() -> None:
    """Trial 47 (found by scanning the bench's first 200 rounds at the default judge count
    through the real settle, with the clipping before and after 2026-12-05): the author of
    the second-best answer judges with 30% of the weight and votes down the best answer in
    every pair and screen. When a dissenting conflicted vote was dropped, this withheld the
    support its honest vote gives the best answer and its own answer ranked first; now,
    where the other judges are decisive, its weight counts for their verdict whatever it
    voted, and the round ranks as if it had voted honestly (the control). (Since the
    majority pairs and the ½ tier of session 6, honest voting itself puts its answer first
    in this trial: the honest judges' errors on the best answer; what it votes still
    changes nothing.)"""
    tallies: dict[tuple[str, float | None], Tally] = {}
    run_trial(47, tallies, ("self",), DEFAULT_ROUND_JUDGES)
    cell = tallies[("self", 0.3)]
    assert cell.target_first == cell.control_target_first
    assert cell.changed == cell.control_changed


def test_a_round_of_n_judges_gives_the_coalition_its_share_of_the_seats() -> None:
    assert [coalition_seats(s, 15) for s in (0.1, 0.2, 0.3, 0.33)] == [2, 3, 5, 5]
    assert coalition_seats(0.3, 10) == 3 and coalition_seats(0.1, 4) == 1
    trial = make_trial(19)
    fewer, more = with_honest(trial, 2), with_honest(trial, 12)
    assert fewer.honest == trial.honest[:2] and set(fewer.weights) == set(fewer.honest)
    assert more.honest[:len(trial.honest)] == trial.honest and len(more.honest) == 12
    assert set(more.weights) == set(more.honest)
