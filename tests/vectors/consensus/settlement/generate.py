#!/usr/bin/env python3
"""Generate the settlement-rule vectors in this directory (JSON, hex-encoded objects).

Run ``.venv/bin/python tests/vectors/consensus/settlement/generate.py`` after a deliberate
change of `swarm.settlement` or `swarm.bradley_terry`; ``tests/swarm/test_settlement_vectors.py``
replays every file and checks that this script still produces exactly the committed files.

Each vector names a function and its inputs:

* ``settle``: a signed round (request, selected answerers and judges, commitments and
  openings in canonical encoding, reputations and stakes by node id, and the tie ``seed``
  where the round settles on chain: `beacon_seed` of its beacon block); ``expect`` holds the
  `RoundOutcome` bytes, the ranking and whether the fit converged. Replaying one checks the
  whole rule set of docs/swarm.md §5-§6 on that round.
* ``bradley_terry``: comparisons (judge, first, second, outcome), weights, n, max_steps,
  start; ``expect`` holds θ (fixed point, 64 fraction bits, decimal strings) and
  ``converged``: the fit rules of §5.3 (θ = 0 start, the `MAX_STEP` trust region, θ = 0 when
  the fit has not converged).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from consensus.tx import public_key  # noqa: E402
from swarm.bradley_terry import ONE, Comparison, Outcome, bradley_terry_scores  # noqa: E402
from swarm.settlement import SCREEN_BAD, SCREEN_GOOD, beacon_seed, settle  # noqa: E402
from tests.framework.roundkit import (  # noqa: E402
    STAKE,
    Round,
    Screen,
    Verdict,
    build_round,
    honest,
    make_request,
    quality_of,
    seed,
)

Vector = dict[str, Any]
FEE = 1_000_000


def _settle_vector(desc: str, r: Round, reputations: dict[bytes, int],
                   seed: bytes | None = None) -> Vector:
    nodes = sorted(set(r.answerers) | set(r.judges))
    reps = {node: reputations.get(node, 100) for node in nodes}
    stakes = dict.fromkeys(nodes, STAKE)
    result = settle(request=r.request, answerers=r.answerers, judges=r.judges,
                    commitments=r.commitments, answer_openings=r.answer_openings,
                    judgment_openings=r.judgment_openings, reputations=reps, stakes=stakes,
                    seed=seed)
    return {
        "function": "settle", "desc": desc,
        "request": r.request.encode().hex(),
        "answerers": [n.hex() for n in r.answerers], "judges": [n.hex() for n in r.judges],
        "commitments": [c.encode().hex() for c in r.commitments],
        "answer_openings": [o.encode().hex() for o in r.answer_openings],
        "judgment_openings": [o.encode().hex() for o in r.judgment_openings],
        "reputations": {n.hex(): v for n, v in reps.items()},
        "stakes": {n.hex(): v for n, v in stakes.items()},
        **({} if seed is None else {"seed": seed.hex()}),
        "expect": {"outcome": result.outcome.encode().hex(),
                   "ranking": [n.hex() for n in result.outcome.ranking],
                   "converged": result.fit.converged},
    }


def _vector_round(tag: str, qualities: Sequence[int], judges: Sequence[tuple[bytes, Verdict]], *,
           screen: Screen | None = None, answer_seeds: dict[int, bytes] | None = None,
           nonce: int = 0) -> Round:
    seeds = answer_seeds or {}
    return build_round(
        request=make_request(seed(f"{tag} client"), fee=FEE, answers=len(qualities),
                             judges=len(judges), nonce=nonce),
        answers=[(seeds.get(i, seed(f"{tag} a{i}")), f"answer q={q}".encode())
                 for i, q in enumerate(qualities)],
        judges=judges, screen=screen)


def _bt_vector(desc: str, comparisons: Sequence[Comparison], weights: dict[bytes, int], n: int,
               *, max_steps: int = 64, start: Sequence[int] | None = None) -> Vector:
    fit = bradley_terry_scores(comparisons, weights=weights, n=n, max_steps=max_steps,
                               start=start)
    return {
        "function": "bradley_terry", "desc": desc, "n": n, "max_steps": max_steps,
        "start": None if start is None else [str(t) for t in start],
        "comparisons": [[c.judge.hex(), c.first, c.second, int(c.outcome)] for c in comparisons],
        "weights": {j.hex(): w for j, w in weights.items()},
        "expect": {"theta": [str(t) for t in fit.theta], "converged": fit.converged},
    }


def _beacon_vectors(r: Round) -> dict[str, Vector]:
    """The full tie of ``r`` settled with two beacon seeds that order it differently.

    On chain the seed is the round's beacon: of the stand-in block ids (0xbe, i, 0...), the
    first and the first whose seed orders the tie differently. The beacon, not a node id or
    the client's nonce, decides which tied answer the chain ranks first."""
    out: dict[str, Vector] = {}
    rid = r.request.round_id()
    blocks = [bytes([0xBE, i]) + bytes(30) for i in range(16)]
    first = [settle(request=r.request, answerers=r.answerers, judges=r.judges,
                    commitments=r.commitments, answer_openings=r.answer_openings,
                    judgment_openings=r.judgment_openings,
                    reputations=dict.fromkeys(r.answerers, 100),
                    stakes=dict.fromkeys(r.answerers, STAKE),
                    seed=beacon_seed(rid, b)).outcome.ranking[0] for b in blocks]
    other = next(i for i in range(1, len(blocks)) if first[i] != first[0])
    for name, i in (("a", 0), ("b", other)):
        out[f"settle_tie_by_beacon_{name}"] = _settle_vector(
            f"the same full tie settled on chain with beacon block {blocks[i][:2].hex()}…: "
            "seed = beacon_seed(round id, block id); the two beacons rank a different tied "
            "answer first, both paid alike (docs/swarm.md §5.2a Ties)", r, {},
            seed=beacon_seed(rid, blocks[i]))
    return out


def _self_promoter_vector() -> Vector:
    """An answerer-judge (30% of the weight, author of q=3) votes the best answer q=4 down in
    every pair and screen: where the other judges are decisive its weight counts for their
    verdict whatever it voted (docs/swarm.md §5.2a, conflicted judges)."""
    promoter = seed("vec self x")

    def votes(j: bytes, first: bytes, second: bytes) -> Outcome:
        if j != promoter or 4 not in (quality_of(first), quality_of(second)):
            return honest(j, first, second)
        return Outcome.SECOND_WINS if quality_of(first) == 4 else Outcome.FIRST_WINS

    def screen(j: bytes, text: bytes) -> int:
        if j == promoter and quality_of(text) == 4:
            return SCREEN_BAD
        return SCREEN_GOOD if quality_of(text) >= 3 else SCREEN_BAD

    honest_judges = [seed(f"vec self h{k}") for k in range(3)]
    r = _vector_round("vec self", [0, 1, 2, 3, 4],
                      [(s, votes) for s in [*honest_judges, promoter]],
                      screen=screen, answer_seeds={3: promoter})
    reps = {public_key(s): 99 for s in honest_judges} | {public_key(promoter): 127}
    return _settle_vector(
        "3 honest judges (300) and the author of answer q=3 (weight 128, 30%) voting the best "
        "answer q=4 down in every pair and the screen: the others are decisive on every item, "
        "so its weight counts for their verdict: q=4 first, ranking and scores as if it had "
        "voted honestly (it earns less as a judge)", r, reps)


def settlement_vectors() -> dict[str, Vector]:
    out: dict[str, Vector] = {}

    # issue 11 item 2: judge A (weight 150) wrote answer 0, judge B (weight 100) ranks it last
    a_seed, b_seed = seed("vec A"), seed("vec B")

    def a_votes(_j: bytes, first: bytes, second: bytes) -> Outcome:
        if quality_of(first) == 0 or quality_of(second) == 0:
            return Outcome.FIRST_WINS if quality_of(first) == 0 else Outcome.SECOND_WINS
        return Outcome.SECOND_WINS if quality_of(first) > quality_of(second) \
            else Outcome.FIRST_WINS

    r = _vector_round("vec repro", [0, 1, 2], [(a_seed, a_votes), (b_seed, honest)],
               answer_seeds={0: a_seed})
    out["settle_answerer_judge_unconverged_repro"] = _settle_vector(
        "3 answers; judge A (weight 150) wrote answer 0 and ranks it first, judge B "
        "(weight 100) ranks it last: answer 0 must rank last (issue 11 item 2)", r,
        {public_key(a_seed): 149, public_key(b_seed): 99})

    # issue 11 item 4: the only judges are the answerers -> everything ties
    pair = [seed("vec tie a0"), seed("vec tie a1")]
    r = _vector_round("vec tie", [0, 1], [(s, honest) for s in pair],
               answer_seeds=dict(enumerate(pair)))
    out["settle_all_tied_by_round_seed"] = _settle_vector(
        "two answerers judge each other only: a full tie, ordered by the round's seed, paid "
        "alike (issue 11 item 4)", r, {})
    out.update(_beacon_vectors(r))

    # issue 11 item 1: a coalition under a third marks a wrong answer GOOD, the rest BAD
    def truthful_screen(_j: bytes, text: bytes) -> int:
        return SCREEN_GOOD if quality_of(text) >= 3 else SCREEN_BAD

    coalition = [seed(f"vec coal x{k}") for k in range(2)]

    def coal_votes(_j: bytes, first: bytes, second: bytes) -> Outcome:
        if quality_of(first) == 1 or quality_of(second) == 1:
            return Outcome.FIRST_WINS if quality_of(first) == 1 else Outcome.SECOND_WINS
        return honest(_j, first, second)

    def screen(j: bytes, text: bytes) -> int:
        if j in coalition:
            return SCREEN_GOOD if quality_of(text) == 1 else SCREEN_BAD
        return truthful_screen(j, text)

    honest_judges = [seed(f"vec coal h{k}") for k in range(3)]
    r = _vector_round("vec coal", [0, 1, 2, 3, 4], [(s, honest) for s in honest_judges]
               + [(s, coal_votes) for s in coalition], screen=screen)
    reps = {public_key(s): 199 for s in honest_judges} | {public_key(s): 139 for s in coalition}
    out["settle_coalition_under_a_third"] = _settle_vector(
        "honest judges 600, a coalition of 280 (< 1/3) marks answer q=1 GOOD, all else BAD "
        "and prefers it in pairs: the honest ranking stands (issue 11 item 1)", r, reps)

    # the GOOD + all-BAD coalition at 30%: one honest error on the best answer must not let
    # the coalition veto its acceptance (docs/swarm.md §5.2a, the relative screen tier)
    veto_honest = [seed(f"vec veto h{k}") for k in range(4)]
    veto_coalition = [seed(f"vec veto x{k}") for k in range(2)]

    def veto_votes(j: bytes, first: bytes, second: bytes) -> Outcome:
        return coal_votes(j, first, second) if j in veto_coalition else honest(j, first, second)

    def veto_screen(j: bytes, text: bytes) -> int:
        if j in veto_coalition:
            return SCREEN_GOOD if quality_of(text) == 1 else SCREEN_BAD
        if j == veto_honest[0] and quality_of(text) == 4:
            return SCREEN_BAD  # the one honest error
        return truthful_screen(j, text)

    r = _vector_round("vec veto", [0, 1, 2, 3, 4], [(s, veto_votes) for s in
                                                    veto_honest + veto_coalition],
                      screen=veto_screen)
    reps = {public_key(s): 99 for s in veto_honest} | {public_key(s): 85 for s in veto_coalition}
    out["settle_all_bad_coalition_cannot_veto"] = _settle_vector(
        "4 honest judges (400) and a coalition of 172 (30%) marking answer q=1 GOOD and all "
        "else BAD; one honest judge errs on the best answer q=4: q=4 is still accepted (its "
        "good share is over 2/3 of the best share) and ranks first", r, reps)

    out["settle_self_promoter_clipped_to_the_decisive_verdict"] = _self_promoter_vector()

    # every answer rejected: the answer pool is refunded
    r = _vector_round("vec junk", [0, 1, 2], [(seed(f"vec junk j{k}"), honest) for k in range(3)],
               screen=lambda _j, _t: SCREEN_BAD)
    out["settle_every_answer_rejected_refunds"] = _settle_vector(
        "every judge calls every answer bad: no answer is paid, the answer pool is refunded",
        r, {})

    judge = b"\x01" * 32
    out["bradley_terry_far_start_without_data"] = _bt_vector(
        "answer 0 has no comparisons and starts at θ = -4: the trust region brings it to 0 "
        "(a full Newton step overshot to +30)",
        [Comparison(judge, 1, 2, Outcome.FIRST_WINS)], {judge: 100}, 3,
        start=[-4 * ONE, 0, 0])
    chain = [Comparison(judge, i, i + 1, Outcome.FIRST_WINS) for i in range(5)]
    out["bradley_terry_unconverged_is_zero"] = _bt_vector(
        "a fit cut off after 1 Newton step has not converged: θ = 0 for every answer",
        chain, {judge: 10**6}, 6, max_steps=1)
    out["bradley_terry_converged_chain"] = _bt_vector(
        "the same chain with the default step limit converges", chain, {judge: 10**6}, 6)
    return out


def render_settlement_vector(vector: Vector) -> str:
    return json.dumps(vector, indent=1, sort_keys=True) + "\n"


def main() -> None:
    vectors = settlement_vectors()
    for old in HERE.glob("*.json"):
        if old.stem not in vectors:
            old.unlink()
    for name, vector in vectors.items():
        (HERE / f"{name}.json").write_text(render_settlement_vector(vector))
    print(f"wrote {len(vectors)} vectors to {HERE}")


if __name__ == "__main__":
    main()
