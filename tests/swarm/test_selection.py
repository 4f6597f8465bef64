"""Selection: deterministic, weighted, without replacement, never a node that failed calibration."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.selection import ROLE_ANSWER, ROLE_JUDGE, Candidate, select_nodes, selection_weight
from tests.framework.util import ROOT


def node_id(i: int) -> bytes:
    return i.to_bytes(2, "big") * 16


def rid(i: int) -> bytes:
    return i.to_bytes(32, "big")


candidate_lists = st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(0, 1000), st.booleans()), min_size=1,
    max_size=30,
).map(lambda rows: [Candidate(node=node_id(i), stake=s, reputation=r, capable=c)
                    for i, (s, r, c) in enumerate(rows)])


@settings(max_examples=200, deadline=None)
@given(candidate_lists, st.integers(0, 2**32), st.integers(0, 40))
def test_failed_calibration_is_never_selected(candidates: list[Candidate], seed: int,
                                              count: int) -> None:
    for role in (ROLE_ANSWER, ROLE_JUDGE):
        chosen = select_nodes(candidates, round_id=rid(seed), role=role, count=count)
        by_id = {c.node: c for c in candidates}
        assert len(set(chosen)) == len(chosen)  # without replacement
        assert all(by_id[n].capable and by_id[n].stake > 0 for n in chosen)
        eligible = sum(1 for c in candidates if selection_weight(c) > 0)
        assert len(chosen) == min(count, eligible)


def test_incapable_rich_node_never_selected_across_many_rounds() -> None:
    whale = Candidate(node=node_id(0), stake=10**18, reputation=10**9, capable=False)
    others = [Candidate(node=node_id(i), stake=100, reputation=1, capable=True) for i in (1, 2, 3)]
    for r in range(300):
        chosen = select_nodes([whale, *others], round_id=rid(r), role=ROLE_ANSWER, count=3)
        assert node_id(0) not in chosen
        assert len(chosen) == 3


def test_weighting_by_reputation_and_stake() -> None:
    # weights 1·10=10, 10·10=100 (reputation), 1·100=100 (stake): the heavy ones win ~10:1
    candidates = [Candidate(node=node_id(0), stake=100, reputation=0, capable=True),
                  Candidate(node=node_id(1), stake=100, reputation=9, capable=True),
                  Candidate(node=node_id(2), stake=10_000, reputation=0, capable=True)]
    firsts = Counter(select_nodes(candidates, round_id=rid(r), role=ROLE_JUDGE, count=1)[0]
                     for r in range(3000))
    assert firsts[node_id(0)] < 250  # expected 3000·10/210 ≈ 143
    assert 1100 < firsts[node_id(1)] < 1750 and 1100 < firsts[node_id(2)] < 1750


def test_roles_and_rounds_draw_differently_but_deterministically() -> None:
    candidates = [Candidate(node=node_id(i), stake=1000, reputation=5, capable=True)
                  for i in range(20)]
    a = select_nodes(candidates, round_id=rid(1), role=ROLE_ANSWER, count=7)
    assert a == select_nodes(list(reversed(candidates)), round_id=rid(1), role=ROLE_ANSWER,
                             count=7)
    assert a != select_nodes(candidates, round_id=rid(1), role=ROLE_JUDGE, count=7)
    assert a != select_nodes(candidates, round_id=rid(2), role=ROLE_ANSWER, count=7)
    excluded = select_nodes(candidates, round_id=rid(1), role=ROLE_JUDGE, count=7,
                            exclude=frozenset(a))
    assert not set(excluded) & set(a)
    with pytest.raises(ValueError):
        select_nodes([candidates[0], candidates[0]], round_id=rid(1), role=ROLE_ANSWER, count=1)


@pytest.mark.slow
def test_same_selection_in_another_process() -> None:
    code = (
        "from swarm.selection import Candidate, select_nodes;"
        "c=[Candidate(node=bytes([i])*32, stake=i*7+1, reputation=i, capable=i%3>0)"
        " for i in range(30)];"
        "print(select_nodes(c, round_id=bytes(32), role=b'answer', count=9).__repr__())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "99"})
    c = [Candidate(node=bytes([i]) * 32, stake=i * 7 + 1, reputation=i, capable=i % 3 > 0)
         for i in range(30)]
    assert out.stdout.strip() == repr(select_nodes(c, round_id=bytes(32), role=b"answer",
                                                   count=9))
