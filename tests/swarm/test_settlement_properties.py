"""Settlement properties over random rounds with misbehaviour; identical across processes."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.tx import public_key
from swarm.bradley_terry import Outcome
from swarm.commit_reveal import commit
from swarm.messages import KIND_ANSWER, KIND_JUDGMENT, SLASH_EQUIVOCATION, SLASH_NO_SHOW
from swarm.settlement import settle
from tests.framework.roundkit import Round, build_round, make_request, seed
from tests.framework.util import ROOT


def random_round(trial: int) -> tuple[Round, dict[bytes, int], dict[bytes, int], set[bytes]]:
    """A round with random no-shows and equivocators; returns (round, reps, stakes, liars)."""
    rng = random.Random(trial)
    n = rng.randint(1, 7)
    answers = [(seed(f"p{trial}a{i}"), f"answer {rng.random()}".encode()) for i in range(n)]
    no_shows = tuple(s for s, _ in answers if rng.random() < 0.2)

    def noisy(judge: bytes, a: bytes, b: bytes) -> Outcome:
        return Outcome(random.Random(judge + a + b).randrange(3))

    judges = [(seed(f"p{trial}j{k}"), noisy) for k in range(rng.randint(0, 5))]
    request = make_request(seed("client"), fee=rng.randint(0, 10**12), answers=n,
                           judges=len(judges), nonce=trial)
    r = build_round(request=request, answers=answers, judges=judges, answer_no_shows=no_shows)
    liars: set[bytes] = set()
    rid = request.round_id()
    for s, _ in answers + judges:
        if rng.random() < 0.15:
            kind = KIND_ANSWER if public_key(s) in r.answerers else KIND_JUDGMENT
            r.commitments.append(commit(s, round_id=rid, kind=kind, payload=b"second",
                                        salt=bytes(32))[0])
            liars.add(public_key(s))
    nodes = r.answerers + r.judges
    reps = {node: rng.randint(0, 10**6) for node in nodes}
    stakes = {node: rng.randint(0, 10**15) for node in nodes}
    return r, reps, stakes, liars


def outcome_bytes(r: Round, reps: dict[bytes, int], stakes: dict[bytes, int]) -> bytes:
    return settle(request=r.request, answerers=r.answerers, judges=r.judges,
                  commitments=r.commitments, answer_openings=r.answer_openings,
                  judgment_openings=r.judgment_openings, reputations=reps,
                  stakes=stakes).outcome.encode()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**9))
def test_money_is_conserved_and_only_offenders_are_slashed(trial: int) -> None:
    r, reps, stakes, liars = random_round(trial)
    s = settle(request=r.request, answerers=r.answerers, judges=r.judges,
               commitments=r.commitments, answer_openings=r.answer_openings,
               judgment_openings=r.judgment_openings, reputations=reps, stakes=stakes)
    out = s.outcome
    slashed = sum(x.amount for x in out.slashes)
    paid = sum(p.amount for p in out.payouts) + out.refund
    assert paid == (r.request.fee + slashed if out.ranking else r.request.fee)
    for x in out.slashes:
        if x.reason == SLASH_EQUIVOCATION:
            assert x.node in liars and x.amount == stakes[x.node] * 2000 // 10_000
        else:
            assert x.reason == SLASH_NO_SHOW and x.node in s.no_shows and x.node not in liars
            assert x.amount == stakes[x.node] * 500 // 10_000
    assert {e.first.node for e in s.equivocations} == liars
    assert not liars & {p.node for p in out.payouts}
    assert not liars & set(out.ranking)
    assert all(0 <= u.score < 2**64 for u in out.reputations)
    assert outcome_bytes(r, reps, stakes) == out.encode()


CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.swarm.test_settlement_properties import outcome_bytes, random_round
for trial in (1, 2, 3):
    print(outcome_bytes(*random_round(trial)[:3]).hex())
"""


@pytest.mark.slow
def test_settlement_bytes_identical_in_separate_processes() -> None:
    expected = [outcome_bytes(*random_round(trial)[:3]).hex() for trial in (1, 2, 3)]
    for hash_seed in ("1", "4242"):
        out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT))],
                             capture_output=True, text=True, check=True, cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert out.stdout.split() == expected
