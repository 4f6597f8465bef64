"""Swarm attack bench: how often adversarial judges change a round's outcome, through `settle`.

Every round is real signed data (`tests.framework.roundkit`) settled by the real
`swarm.settlement.settle`. A round (fixed by its trial number) has 4..9 answers of distinct
hidden quality, the best 1..⌊n/2⌋ of them right, and 4..8 honest judges of random
reputation who are ``ACCURACY`` (85%) accurate on every pair verdict and every GOOD/BAD
screen mark (each vote independently). The *baseline* settles the round with the honest
judges alone. Then, per attack and per weight share s (10/20/30/33% of the judge weight):

* the *attacked* round adds 1..3 adversarial judges holding s of the weight;
* the *control* adds the same judges (same keys, same weights) voting honestly.

Outcome changed = the top answer differs from the baseline's. Target first = the attack's
target ranks first. Attacks (the adversaries vote truthfully wherever the attack says
nothing):

* ``pairs``: prefer a fixed wrong answer (the target) in every pair with it;
* ``good``: mark the target GOOD;
* ``good+bad``: mark the target GOOD and every other answer BAD, and prefer it in pairs
  (issue 11's attack);
* ``self``: the target's own author judges (weight s), voting down every answer better than
  its own in pairs and screen (its votes on its own answer are dropped by the rules); the
  control is the same judge voting honestly, and *without its votes* (``base tgt%``) the
  same round (same request, so the same schedule and tie order) with it selected but silent;
  its goal: own answer first no more often than the larger of the two + 1 point;
* ``runner-up``: a coalition of judges that did not answer casts the self-promoter's votes
  for the second best answer (the promoter's weight split into keys, or its friends): the
  target is that answer, which is often close to the best;
* ``random``: adversaries vote uniformly at random (no target);
* ``omission``: the settler leaves out the heaviest honest judge's opening (that judge
  becomes a no-show); reported: outcome changed, honest node slashed (without the inclusion
  window) and whether the victim can prove the omission against the settlement's data root
  (`swarm.inclusion.provable_claims`: with ``swarm_inclusion_window`` > 0 a proven omission
  voids the settlement and forfeits the settler's bond).

Goal (issue 11): at s ≤ 30% the target ranks first in ≤ 1% of rounds and the outcome
changes at most 2 points more often than in the control.

``--compare`` also ranks the good+bad rounds (same seeds, the verdict bytes `settle` counts)
by candidate rules side by side: the adopted rule, the rule before (absolute ⅔ tier), SV
(no accepted tier), a trimmed screen, per-judge weight caps (the coalition split into
enough keys that no cap binds it: sybils), every pair judged, more honest judges; with each
candidate's judging work (ordered pairs judged x judges) relative to the adopted rule's.

``--judges N`` gives every round N judges instead: the coalition (weight share s) holds
⌈s·N⌉ of the seats, as a stake-weighted draw would give it, and honest judges the rest; the
baseline is then settled per share (docs/swarm.md §5.2a: the default judge count's bound).

    python bench/swarm_attacks.py [--rounds 200] [--first 0] [--attacks a,b] [--judges N]
                                  [--compare] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.tx import public_key
from core.encoding import tagged_hash
from swarm.bradley_terry import Outcome, bradley_terry_scores
from swarm.data_root import round_leaves
from swarm.inclusion import provable_claims
from swarm.schedule import judging_pairs, ring_order
from swarm.settlement import (
    SCREEN_BAD,
    SCREEN_GOOD,
    SCREEN_NONE,
    TIER_ACCEPTED,
    TIER_REJECTED,
    TIER_UNDECIDED,
    RoundSettlement,
    aggregate,
    screen_tiers,
    settle,
    strength_fit,
    tie_order,
    verdict_comparisons,
)
from tests.framework.roundkit import STAKE, Round, build_round, make_request, seed

ACCURACY = 0.85
SHARES = (0.10, 0.20, 0.30, 0.33)
COALITION_ATTACKS = ("pairs", "good", "good+bad")
GOAL_TARGET_FIRST = 0.01
GOAL_CHANGE_PP = 2.0
FEE = 1_000_000

# a judge's vote: (judge seed, first answer's quality, second's) -> outcome; screen: quality
PairVote = Callable[[bytes, int, int], Outcome]
ScreenVote = Callable[[bytes, int], int]


def chance(*parts: bytes) -> float:
    """A uniform [0, 1) number fixed by ``parts`` (the same vote in every variant of a round)."""
    return int.from_bytes(tagged_hash(b"pouw/attackbench", b"|".join(parts))[:8], "big") / 2**64


@dataclasses.dataclass(frozen=True)
class Trial:
    """One round's fixed honest part: answers, truth, honest judges and their weights."""

    number: int
    quality: tuple[int, ...]  # per answer (distinct 0..n-1)
    right_from: int  # answers of quality >= this are right
    target: int  # quality of the attacks' target (a wrong answer)
    honest: tuple[bytes, ...]  # honest judge seeds
    weights: dict[bytes, int]  # judge seed -> weight (reputation + 1)

    @property
    def tag(self) -> bytes:
        return self.number.to_bytes(8, "big")

    @property
    def self_target(self) -> int:
        """The self-promoter's own answer: the second best (only the best beats it)."""
        return len(self.quality) - 2

    def text(self, q: int) -> bytes:
        return f"trial {self.number} answer q={q}".encode()

    def honest_pair(self, judge: bytes, qa: int, qb: int) -> Outcome:
        wrong = chance(self.tag, judge, b"pair", bytes([qa, qb])) >= ACCURACY
        return Outcome.FIRST_WINS if (qa > qb) != wrong else Outcome.SECOND_WINS

    def honest_screen(self, judge: bytes, q: int) -> int:
        wrong = chance(self.tag, judge, b"screen", bytes([q])) >= ACCURACY
        return SCREEN_GOOD if (q >= self.right_from) != wrong else SCREEN_BAD


def make_trial(number: int) -> Trial:
    rng = random.Random(number)
    n = rng.randint(4, 9)
    quality = list(range(n))
    rng.shuffle(quality)
    right = rng.randint(1, n // 2)
    target = rng.randrange(n - right)
    honest = tuple(seed(f"attack t{number} h{k}") for k in range(rng.randint(4, 8)))
    weights = {s: rng.randint(50, 200) + 1 for s in honest}
    return Trial(number=number, quality=tuple(quality), right_from=n - right, target=target,
                 honest=honest, weights=weights)


def adversary_weights(trial: Trial, share: float, seeds: Sequence[bytes]) -> dict[bytes, int]:
    """Weights for ``seeds`` so that they hold ``share`` of all judge weight (each >= 1)."""
    honest_total = sum(trial.weights.values())
    total = round(share * honest_total / (1 - share))
    per = max(1, total // len(seeds))
    weights = {s: per for s in seeds}
    weights[seeds[0]] += max(0, total - per * len(seeds))
    return weights


def settle_round(trial: Trial, judges: dict[bytes, tuple[PairVote, ScreenVote]],
                 weights: dict[bytes, int], *, drop_opening: bytes | None = None,
                 author: tuple[int, bytes] | None = None, silent: int = 0) -> RoundSettlement:
    """Build and settle the signed round (`signed_round`)."""
    r = signed_round(trial, judges, author=author, silent=silent)
    if drop_opening is not None:
        gone = public_key(drop_opening)
        r.judgment_openings = [o for o in r.judgment_openings if o.node != gone]
    nodes = r.answerers + r.judges
    reputations = {n: 100 for n in r.answerers}
    reputations.update({public_key(s): w - 1 for s, w in weights.items()})
    return settle(request=r.request, answerers=r.answerers, judges=r.judges,
                  commitments=r.commitments, answer_openings=r.answer_openings,
                  judgment_openings=r.judgment_openings, reputations=reputations,
                  stakes={n: STAKE for n in nodes})


def omission_provable(trial: Trial, judges: dict[bytes, tuple[PairVote, ScreenVote]],
                      victim: bytes) -> bool:
    """Whether the victim, holding its own opening, can prove the omission against the
    settlement's data root in the inclusion window (helper "inclusion"'s rule)."""
    r = signed_round(trial, judges)
    gone = public_key(victim)
    kept = [o for o in r.judgment_openings if o.node != gone]
    rid = r.request.round_id()
    leaves = round_leaves(round_id=rid, answerers=r.answerers, judges=r.judges,
                          commitments=r.commitments, answer_openings=r.answer_openings,
                          judgment_openings=kept)
    return bool(provable_claims(leaves, round_id=rid, commitments=r.commitments,
                                answer_openings=r.answer_openings,
                                judgment_openings=r.judgment_openings))


def signed_round(trial: Trial, judges: dict[bytes, tuple[PairVote, ScreenVote]], *,
                 author: tuple[int, bytes] | None = None, silent: int = 0) -> Round:
    """The signed round: answers by quality, ``judges`` voting as given; ``author`` =
    (quality, seed): that answer is written by that judge; ``silent`` more judges were asked
    for but never commit (the request, hence the round id, schedule and tie order, is that
    of the round with them)."""
    by_text = {trial.text(q): q for q in trial.quality}
    answer_seeds = [author[1] if author is not None and q == author[0]
                    else seed(f"attack t{trial.number} a{q}") for q in trial.quality]
    verdicts = {
        s: (lambda j, a, b, vote=vote: vote(j, by_text[a], by_text[b]))
        for s, (vote, _) in judges.items()}

    def screen(j: bytes, text: bytes) -> int:
        return judges[j][1](j, by_text[text])

    request = make_request(seed(f"attack client {trial.number}"), fee=FEE,
                           answers=len(trial.quality), judges=len(judges) + silent,
                           nonce=trial.number)
    return build_round(request=request,
                       answers=list(zip(answer_seeds,
                                        (trial.text(q) for q in trial.quality), strict=True)),
                       judges=list(verdicts.items()), screen=screen)


def top_quality(trial: Trial, s: RoundSettlement, answer_of: dict[bytes, int]) -> int:
    return answer_of[s.outcome.ranking[0]] if s.outcome.ranking else -1


def coalition_votes(trial: Trial, attack: str) -> tuple[PairVote, ScreenVote]:
    """The adversaries' pair vote and screen mark for ``attack``."""
    t = trial.target

    def pair(judge: bytes, qa: int, qb: int) -> Outcome:
        if attack == "random":
            heads = chance(trial.tag, judge, b"rpair", bytes([qa, qb])) < 0.5
            return Outcome.FIRST_WINS if heads else Outcome.SECOND_WINS
        if attack in ("pairs", "good+bad") and t in (qa, qb):
            return Outcome.FIRST_WINS if qa == t else Outcome.SECOND_WINS
        return Outcome.FIRST_WINS if qa > qb else Outcome.SECOND_WINS

    def screen(judge: bytes, q: int) -> int:
        if attack == "random":
            return SCREEN_GOOD if chance(trial.tag, judge, b"rscreen", bytes([q])) < 0.5 \
                else SCREEN_BAD
        if attack in ("good", "good+bad") and q == t:
            return SCREEN_GOOD
        if attack == "good+bad":
            return SCREEN_BAD
        return SCREEN_GOOD if q >= trial.right_from else SCREEN_BAD

    return pair, screen


def self_promoting_votes(trial: Trial) -> tuple[PairVote, ScreenVote]:
    """An answerer-judge (the second-best answer's author) voting down every answer better
    than its own; truthful about the others."""
    own = trial.self_target

    def pair(_judge: bytes, qa: int, qb: int) -> Outcome:
        a_beats, b_beats = qa > own, qb > own
        if a_beats != b_beats:
            return Outcome.SECOND_WINS if a_beats else Outcome.FIRST_WINS
        if a_beats:  # both beat it: the stronger loses
            return Outcome.FIRST_WINS if qa < qb else Outcome.SECOND_WINS
        return Outcome.FIRST_WINS if qa > qb else Outcome.SECOND_WINS

    def screen(_judge: bytes, q: int) -> int:
        if q > own:
            return SCREEN_BAD
        return SCREEN_GOOD if q >= trial.right_from else SCREEN_BAD

    return pair, screen


@dataclasses.dataclass
class Tally:
    rounds: int = 0
    changed: int = 0
    target_first: int = 0
    right_first: int = 0
    control_changed: int = 0
    control_target_first: int = 0
    control_right_first: int = 0
    honest_slashed: int = 0
    provable: int = 0
    base_target_first: int = 0

    def row(self, attack: str, share: float | None) -> dict[str, Any]:
        def pct(x: int) -> float:
            return round(100 * x / self.rounds, 2) if self.rounds else 0.0
        out: dict[str, Any] = {
            "attack": attack, "weight_share": share, "rounds": self.rounds,
            "changed_pct": pct(self.changed), "target_first_pct": pct(self.target_first),
            "right_first_pct": pct(self.right_first),
            "control_changed_pct": pct(self.control_changed),
            "control_target_first_pct": pct(self.control_target_first),
            "baseline_target_first_pct": pct(self.base_target_first),
            "control_right_first_pct": pct(self.control_right_first),
        }
        out["excess_change_pp"] = round(out["changed_pct"] - out["control_changed_pct"], 2)
        if attack == "omission":
            out["honest_slashed_pct"] = pct(self.honest_slashed)
            out["provable_in_window_pct"] = pct(self.provable)
        if share is not None and share <= 0.30 and attack in ("self", "runner-up"):
            # the target (the second best) may win on merit: no more often than without the
            # attackers' votes (self: silent; runner-up: all honest) or with them honest
            out["meets_goal"] = (
                out["target_first_pct"] <= max(out["control_target_first_pct"],
                                               out["baseline_target_first_pct"]) + 1
                and out["excess_change_pp"] <= GOAL_CHANGE_PP)
        elif share is not None and share <= 0.30 and attack != "random":
            out["meets_goal"] = (out["target_first_pct"] <= 100 * GOAL_TARGET_FIRST
                                 and out["excess_change_pp"] <= GOAL_CHANGE_PP)
        return out


ATTACKS = (*COALITION_ATTACKS, "runner-up", "self", "random", "omission")
COMPARED_ATTACKS = ("good+bad", "runner-up")  # --compare's attacks


def coalition_seats(share: float, judges: int) -> int:
    """Seats a coalition holding ``share`` of the stake takes among ``judges`` judges drawn by
    stake (rounded up: the bench errs on the coalition's side)."""
    return max(1, math.ceil(share * judges - 1e-9))


def with_honest(trial: Trial, count: int) -> Trial:
    """The trial with exactly ``count`` honest judges (its own first, then `topped_up`)."""
    trial = topped_up(trial, count)
    honest = trial.honest[:count]
    return dataclasses.replace(trial, honest=honest,
                               weights={s: trial.weights[s] for s in honest})


def run_trial(number: int, tallies: dict[tuple[str, float | None], Tally],
              attacks: Sequence[str] = ATTACKS, judges: int = 0) -> None:
    """One trial's cells. ``judges`` = 0: the trial's 4..8 honest judges plus 1..3
    adversaries; ``judges`` = N: every round has N judges, the coalition (weight share s)
    holding `coalition_seats` of them and honest judges the rest, so the baseline is
    settled per share."""
    trial = make_trial(number)
    answer_of = {public_key(seed(f"attack t{number} a{q}")): q for q in trial.quality}
    base_tops: dict[int, int] = {}

    def baseline(t: Trial) -> int:
        if len(t.honest) not in base_tops:
            base = settle_round(t, {s: (t.honest_pair, t.honest_screen) for s in t.honest},
                                t.weights)
            base_tops[len(t.honest)] = top_quality(t, base, answer_of)
        return base_tops[len(t.honest)]

    base_top = baseline(trial)

    def count(key: tuple[str, float | None], attacked: RoundSettlement,
              control: RoundSettlement | None, answers: dict[bytes, int],
              target: int = trial.target, base_top: int = base_top) -> None:
        tally = tallies.setdefault(key, Tally())
        tally.rounds += 1
        tally.base_target_first += base_top == target
        top = top_quality(trial, attacked, answers)
        tally.changed += top != base_top
        tally.target_first += top == target
        tally.right_first += top >= trial.right_from
        if control is not None:
            ctop = top_quality(trial, control, answers)
            tally.control_changed += ctop != base_top
            tally.control_target_first += ctop == target
            tally.control_right_first += ctop >= trial.right_from

    rng = random.Random(number * 7919)
    drawn = trial
    for share in SHARES:
        keys = rng.randint(1, 3)
        if judges:
            keys = coalition_seats(share, judges)
            trial = with_honest(drawn, max(1, judges - keys))
            base_top = baseline(trial)
        honest_votes: tuple[PairVote, ScreenVote] = (trial.honest_pair, trial.honest_screen)
        honest_judges = {s: honest_votes for s in trial.honest}
        adversaries = [seed(f"attack t{number} x{k}") for k in range(keys)]
        weights = trial.weights | adversary_weights(trial, share, adversaries)
        coalition = [a for a in (*COALITION_ATTACKS, "runner-up", "random") if a in attacks]
        control = settle_round(trial, honest_judges | {s: honest_votes for s in adversaries},
                               weights) if coalition else None
        for attack in coalition:
            # runner-up: the self-promoter's votes cast by judges that did not answer (the
            # promoter split into keys, or the second best's friends): no conflict to clip
            votes = self_promoting_votes(trial) if attack == "runner-up" else \
                coalition_votes(trial, attack)
            attacked = settle_round(trial, honest_judges | {s: votes for s in adversaries},
                                    weights)
            count((attack, share), attacked, control, answer_of,
                  target=trial.self_target if attack == "runner-up" else trial.target,
                  base_top=base_top)
        if "self" not in attacks:
            continue
        # the self-promoter: the second best answer's author judges with the weight share
        author = seed(f"attack t{number} self")
        own = trial.self_target
        self_answers = dict(answer_of)
        self_answers.pop(public_key(seed(f"attack t{number} a{own}")))
        self_answers[public_key(author)] = own
        self_weights = trial.weights | adversary_weights(trial, share, [author])
        # its baseline: the same round (answers, request, so schedule and tie order) with
        # the promoter selected as a judge but silent
        self_base = settle_round(trial, honest_judges, trial.weights, author=(own, author),
                                 silent=1)
        promoted = settle_round(trial, honest_judges | {author: self_promoting_votes(trial)},
                                self_weights, author=(own, author))
        fair = settle_round(trial, honest_judges | {author: honest_votes}, self_weights,
                            author=(own, author))
        count(("self", share), promoted, fair, self_answers, own,
              top_quality(trial, self_base, self_answers))
    if "omission" not in attacks:
        return
    trial = with_honest(drawn, judges) if judges else drawn
    honest_judges = {s: (trial.honest_pair, trial.honest_screen) for s in trial.honest}
    base = settle_round(trial, honest_judges, trial.weights)
    heaviest = max(trial.honest, key=lambda s: (trial.weights[s], s))
    omitted = settle_round(trial, honest_judges, trial.weights, drop_opening=heaviest)
    count(("omission", None), omitted, base, answer_of)
    tallies[("omission", None)].honest_slashed += any(
        x.node == public_key(heaviest) for x in omitted.outcome.slashes)
    tallies[("omission", None)].provable += omission_provable(trial, honest_judges, heaviest)


# --compare: candidate rules side by side, on the same rounds and votes ------------------
# Every candidate ranks the verdict bytes `settle` would count in the good+bad rounds (same
# answer order, round id and schedule; no signing: the main table shows the adopted rule
# matches `settle` exactly). The candidates are research alternatives, not rules.

Ranker = Callable[..., tuple[int, ...]]
Schedule = Callable[[bytes, int], tuple[tuple[int, int], ...]]


def all_pairs(round_id: bytes, n: int) -> tuple[tuple[int, int], ...]:
    """Every ordered pair (a round robin on the round's ring order): the densest schedule."""
    ring = ring_order(round_id, n)
    return tuple(p for x in range(n) for y in range(x + 1, n)
                 for p in ((ring[x], ring[y]), (ring[y], ring[x])))


def unsigned_inputs(trial: Trial, judges: dict[bytes, tuple[PairVote, ScreenVote]],
                    weights: dict[bytes, int], schedule: Schedule
                    ) -> tuple[dict[str, Any], list[int]]:
    """(`aggregate` keyword inputs, quality per answer index) of `signed_round`'s round."""
    nodes = sorted((public_key(seed(f"attack t{trial.number} a{q}")), q) for q in trial.quality)
    quality = [q for _, q in nodes]
    request = make_request(seed(f"attack client {trial.number}"), fee=FEE,
                           answers=len(quality), judges=len(judges), nonce=trial.number)
    rid = request.round_id()
    pairs = schedule(rid, len(quality))
    verdicts = {public_key(s): bytes(int(pv(s, quality[a], quality[b])) for a, b in pairs)
                + bytes(sv(s, q) for q in quality) for s, (pv, sv) in judges.items()}
    return ({"n": len(quality), "pairs": pairs, "verdicts": verdicts, "seed": rid,
             "weights": {public_key(s): w for s, w in weights.items()}}, quality)


def _tallies(n: int, pairs: Sequence[tuple[int, int]], verdicts: dict[bytes, bytes],
             weights: dict[bytes, int]) -> tuple[list[list[int]], list[list[int]]]:
    """(pair tallies, screen tallies): weights per value (no answerer-judges here)."""
    pair_t = [[0, 0, 0] for _ in pairs]
    screen_t = [[0, 0, 0] for _ in range(n)]
    for judge, outcomes in verdicts.items():
        for k in range(len(pairs)):
            pair_t[k][outcomes[k]] += weights[judge]
        for i in range(n):
            screen_t[i][outcomes[len(pairs) + i]] += weights[judge]
    return pair_t, screen_t


def adopted(**kw: Any) -> tuple[int, ...]:
    return aggregate(**kw).ranking


def absolute_tiers(**kw: Any) -> tuple[int, ...]:
    """The rule before (dddf027): accepted at ≥ ⅔ good of the weight with an opinion,
    rejected at ≥ ⅔ bad; strength from the pairs alone."""
    n, pairs = kw["n"], kw["pairs"]
    pair_t, screen_t = _tallies(n, pairs, kw["verdicts"], kw["weights"])
    comparisons, pair_weights = verdict_comparisons(pairs, pair_t)
    keys = bradley_terry_scores(comparisons, weights=pair_weights, n=n).rank_keys()
    tiers = [TIER_ACCEPTED if g + b and 3 * g >= 2 * (g + b) else
             TIER_REJECTED if g + b and 3 * b >= 2 * (g + b) else TIER_UNDECIDED
             for b, g, _ in screen_t]
    return tier_order(kw["seed"], tiers, keys)


def tier_order(seed: bytes, tiers: Sequence[int], keys: Sequence[int]) -> tuple[int, ...]:
    """Answer indices by tier (accepted first), then strength key, then the seed's tie order."""
    place = tie_order(seed, len(tiers))
    return tuple(sorted(range(len(tiers)), key=lambda i: (-tiers[i], -keys[i], place[i])))


def strength_only(**kw: Any) -> tuple[int, ...]:
    """aggregation2's "SV": not rejected first, then the adopted fit of pairs and screen (no
    accepted tier)."""
    n, pairs = kw["n"], kw["pairs"]
    pair_t, screen_t = _tallies(n, pairs, kw["verdicts"], kw["weights"])
    keys = strength_fit(n, pairs, pair_t, screen_t).rank_keys()
    rejected = [t == TIER_REJECTED for t in screen_tiers(screen_t)]
    place = tie_order(kw["seed"], n)
    return tuple(sorted(range(n), key=lambda i: (rejected[i], -keys[i], place[i])))


def trimmed_screen(**kw: Any) -> tuple[int, ...]:
    """The adopted rule after dropping, per answer, the heaviest good and the heaviest bad
    screen mark (a symmetric trim of the screen)."""
    n, pairs, verdicts, weights = kw["n"], kw["pairs"], kw["verdicts"], kw["weights"]
    trimmed = {judge: bytearray(v) for judge, v in verdicts.items()}
    for i in range(n):
        for mark in (SCREEN_GOOD, SCREEN_BAD):
            voters = [j for j, v in verdicts.items() if v[len(pairs) + i] == mark]
            if voters:
                trimmed[max(voters, key=lambda j: (weights[j], j))][len(pairs) + i] = SCREEN_NONE
    return aggregate(**(kw | {"verdicts": {j: bytes(v) for j, v in trimmed.items()}})).ranking


def majority_tier(**kw: Any) -> tuple[int, ...]:
    """Accepted at a strict majority good of the weight with an opinion (absolute, not
    relative to the round's best), rejected at ≥ ⅔ bad; then the one fit."""
    n, pairs = kw["n"], kw["pairs"]
    pair_t, screen_t = _tallies(n, pairs, kw["verdicts"], kw["weights"])
    keys = strength_fit(n, pairs, pair_t, screen_t).rank_keys()
    tiers = [TIER_REJECTED if g + b and 3 * b >= 2 * (g + b) else
             TIER_ACCEPTED if 2 * g > g + b else TIER_UNDECIDED
             for b, g, _ in screen_t]
    return tier_order(kw["seed"], tiers, keys)


def _majority(tally: Sequence[int], first: int, second: int) -> list[int]:
    """A tally turned into its weighted majority: all of its weight on the side with more
    (first or second), or on the tie when they are equal."""
    total = sum(tally)
    out = [0, 0, 0]
    side = first if tally[first] > tally[second] else second if tally[second] > tally[first] \
        else 3 - first - second
    out[side] = total
    return out


def majority_screen(**kw: Any) -> tuple[int, ...]:
    """Every screen decided by its weighted majority, the pairs as adopted (by majority
    since session 6, so this is also "every verdict by majority"), then the tiers."""
    n, pairs = kw["n"], kw["pairs"]
    pair_t, screen_t = _tallies(n, pairs, kw["verdicts"], kw["weights"])
    screen_m = [_majority(t, SCREEN_BAD, SCREEN_GOOD) for t in screen_t]
    keys = strength_fit(n, pairs, pair_t, screen_m).rank_keys()
    tiers = screen_tiers(screen_m)
    return tier_order(kw["seed"], tiers, keys)


def majority_among_accepted(**kw: Any) -> tuple[int, ...]:
    """Tiers by strict majority (accepted at > ½ good, rejected at ≥ ⅔ bad); a pair of two
    accepted answers decided by its weighted majority, every other pair as adopted (⅔
    decisive, else leaning); one fit."""
    n, pairs = kw["n"], kw["pairs"]
    pair_t, screen_t = _tallies(n, pairs, kw["verdicts"], kw["weights"])
    tiers = [TIER_REJECTED if g + b and 3 * b >= 2 * (g + b) else
             TIER_ACCEPTED if 2 * g > g + b else TIER_UNDECIDED
             for b, g, _ in screen_t]
    pair_m = [_majority(t, 0, 1) if tiers[x] == tiers[y] == TIER_ACCEPTED else list(t)
              for (x, y), t in zip(pairs, pair_t, strict=True)]
    keys = strength_fit(n, pairs, pair_m, screen_t).rank_keys()
    return tier_order(kw["seed"], tiers, keys)


def sv_majority_verdicts(**kw: Any) -> tuple[int, ...]:
    """Not rejected first (≥ ⅔ bad of the raw screen), then one fit of pairs and screen each
    decided by its weighted majority (no accepted tier)."""
    n, pairs = kw["n"], kw["pairs"]
    pair_t, screen_t = _tallies(n, pairs, kw["verdicts"], kw["weights"])
    pair_m = [_majority(t, 0, 1) for t in pair_t]
    screen_m = [_majority(t, SCREEN_BAD, SCREEN_GOOD) for t in screen_t]
    keys = strength_fit(n, pairs, pair_m, screen_m).rank_keys()
    rejected = [t == TIER_REJECTED for t in screen_tiers(screen_t)]
    place = tie_order(kw["seed"], n)
    return tuple(sorted(range(n), key=lambda i: (rejected[i], -keys[i], place[i])))


def majority_tier_verdicts(**kw: Any) -> tuple[int, ...]:
    """Tiers: rejected at ≥ ⅔ bad of the raw screen, accepted at a strict majority good,
    else undecided; within a tier one fit of pairs and screen each decided by its weighted
    majority."""
    n, pairs = kw["n"], kw["pairs"]
    pair_t, screen_t = _tallies(n, pairs, kw["verdicts"], kw["weights"])
    pair_m = [_majority(t, 0, 1) for t in pair_t]
    screen_m = [_majority(t, SCREEN_BAD, SCREEN_GOOD) for t in screen_t]
    keys = strength_fit(n, pairs, pair_m, screen_m).rank_keys()
    tiers = [TIER_REJECTED if g + b and 3 * b >= 2 * (g + b) else
             TIER_ACCEPTED if 2 * g > g + b else TIER_UNDECIDED
             for b, g, _ in screen_t]
    return tier_order(kw["seed"], tiers, keys)


def accepted_first(**kw: Any) -> tuple[int, ...]:
    """The rule before the runner-up finding (session 6): the accepted tier first, then
    undecided, then rejected; every verdict, pairs and screen, at ⅔ decisive, else
    leaning."""
    n, pairs = kw["n"], kw["pairs"]
    pair_t, screen_t = _tallies(n, pairs, kw["verdicts"], kw["weights"])
    threshold = [(i, n) for i in range(n)]
    screen_as_pairs = [[t[SCREEN_GOOD], t[SCREEN_BAD], t[SCREEN_NONE]] for t in screen_t]
    comparisons, weights = verdict_comparisons([*pairs, *threshold], [*pair_t, *screen_as_pairs])
    fit = bradley_terry_scores(comparisons, weights=weights, n=n + 1)
    keys = dataclasses.replace(fit, theta=tuple(t - fit.theta[n] for t in fit.theta[:n]),
                               prior_weights=fit.prior_weights[:n]).rank_keys()
    tiers = screen_tiers(screen_t)
    return tier_order(kw["seed"], tiers, keys)


def tiered_majority_pairs(ratio: tuple[int, int]) -> Ranker:
    """Tiers first (rejected at ≥ ⅔ bad; accepted when its good share is at least
    ratio[0]/ratio[1] of the round's best), then the adopted fit (majority pairs, ⅔ screen)."""
    def rank(**kw: Any) -> tuple[int, ...]:
        n, pairs = kw["n"], kw["pairs"]
        pair_t, screen_t = _tallies(n, pairs, kw["verdicts"], kw["weights"])
        keys = strength_fit(n, pairs, pair_t, screen_t).rank_keys()
        best_g, best_t = 0, 1
        for b, g, _ in screen_t:
            if g + b and g * best_t > best_g * (g + b):
                best_g, best_t = g, g + b
        num, den = ratio
        tiers = [TIER_REJECTED if g + b and 3 * b >= 2 * (g + b) else
                 TIER_ACCEPTED if g + b and den * g * best_t >= num * best_g * (g + b) else
                 TIER_UNDECIDED for b, g, _ in screen_t]
        place = tie_order(kw["seed"], n)
        return tuple(sorted(range(n), key=lambda i: (-tiers[i], -keys[i], place[i])))
    return rank


def sv_pairs_only(majority: bool) -> Ranker:
    """Not rejected first, then a fit of the pairs alone (the screen only rejects); pairs as
    adopted or by weighted majority."""
    def rank(**kw: Any) -> tuple[int, ...]:
        n, pairs = kw["n"], kw["pairs"]
        pair_t, screen_t = _tallies(n, pairs, kw["verdicts"], kw["weights"])
        pair_v = [_majority(t, 0, 1) for t in pair_t] if majority else pair_t
        comparisons, pair_weights = verdict_comparisons(pairs, pair_v)
        keys = bradley_terry_scores(comparisons, weights=pair_weights, n=n).rank_keys()
        rejected = [t == TIER_REJECTED for t in screen_tiers(screen_t)]
        place = tie_order(kw["seed"], n)
        return tuple(sorted(range(n), key=lambda i: (rejected[i], -keys[i], place[i])))
    return rank


def weight_cap(k: int) -> Ranker:
    """The adopted rule with every judge's weight capped at ⌊Σ weight / k⌋."""
    def rank(**kw: Any) -> tuple[int, ...]:
        cap = max(1, sum(kw["weights"].values()) // k)
        return aggregate(**(kw | {"weights": {j: min(w, cap) for j, w in
                                              kw["weights"].items()}})).ranking
    return rank


@dataclasses.dataclass(frozen=True)
class Candidate:
    name: str
    rank: Ranker
    schedule: Schedule = judging_pairs
    honest_judges: int = 0  # top the honest judges up to this many (0: the trial's 4..8)
    coalition_keys: int = 0  # split the coalition into this many keys (0: the trial's 1..3)


CANDIDATES = (
    Candidate("adopted: tier at 1/2 of best share, one fit (majority pairs)", adopted),
    Candidate("before: accepted tier first, 2/3-or-leaning pairs and screen", accepted_first),
    Candidate("tier at 2/3 of best share, adopted fit", tiered_majority_pairs((2, 3))),
    Candidate("before: absolute 2/3 tier, pairs-only fit", absolute_tiers),
    Candidate("SV: not rejected, then one fit (no accepted tier)", strength_only),
    Candidate("majority tier: accepted at > 1/2 good, one fit", majority_tier),
    Candidate("majority tier, majority pairs among accepted", majority_among_accepted),
    Candidate("majority verdicts: every pair and screen by > 1/2", majority_screen),
    Candidate("SV + majority verdicts (no accepted tier)", sv_majority_verdicts),
    Candidate("MT: reject at 2/3 bad, accept at > 1/2 good, majority verdicts fit",
              majority_tier_verdicts),
    Candidate("SV, pairs-only fit (screen only rejects)", sv_pairs_only(False)),
    Candidate("SV, majority pairs-only fit (screen only rejects)", sv_pairs_only(True)),
    Candidate("trimmed screen (heaviest good/bad mark dropped)", trimmed_screen),
    Candidate("weight cap 1/5 per judge, coalition in 5 keys", weight_cap(5), coalition_keys=5),
    Candidate("weight cap 1/8 per judge, coalition in 8 keys", weight_cap(8), coalition_keys=8),
    Candidate("every pair judged (round robin)", adopted, schedule=all_pairs),
    Candidate("8 honest judges or more", adopted, honest_judges=8),
    Candidate("12 honest judges or more", adopted, honest_judges=12),
)


def topped_up(trial: Trial, total: int) -> Trial:
    """The trial with honest judges added (weights 51..201 from their own rng) up to total."""
    rng = random.Random(trial.number * 104729)
    extra = tuple(seed(f"attack t{trial.number} h{k}")
                  for k in range(len(trial.honest), max(total, len(trial.honest))))
    weights = trial.weights | {s: rng.randint(50, 200) + 1 for s in extra}
    return dataclasses.replace(trial, honest=trial.honest + extra, weights=weights)


def compare_trial(number: int, candidate: Candidate, tallies: dict[float, Tally],
                  work: list[int], attack: str = "good+bad", judges: int = 0) -> None:
    """One trial's cells of ``attack`` (all shares) under ``candidate``; ``work`` accumulates
    [ordered pairs judged, judges] for the cost column. ``judges`` as in `run_trial`."""
    drawn = make_trial(number)
    if candidate.honest_judges:
        drawn = topped_up(drawn, candidate.honest_judges)
    rng = random.Random(number * 7919)
    for share in SHARES:
        keys = max(rng.randint(1, 3), candidate.coalition_keys)
        trial = drawn
        if judges:
            keys = max(coalition_seats(share, judges), candidate.coalition_keys)
            trial = with_honest(drawn, max(1, judges - keys))
        honest_votes: tuple[PairVote, ScreenVote] = (trial.honest_pair, trial.honest_screen)
        honest_judges = {s: honest_votes for s in trial.honest}

        def top(voters: dict[bytes, tuple[PairVote, ScreenVote]], weights: dict[bytes, int],
                trial: Trial = trial) -> int:
            kw, quality = unsigned_inputs(trial, voters, weights, candidate.schedule)
            work[0] += len(kw["pairs"]) * len(voters)
            work[1] += len(voters)
            return quality[candidate.rank(**kw)[0]]

        base_top = top(honest_judges, trial.weights)
        adversaries = [seed(f"attack t{number} x{k}") for k in range(keys)]
        weights = trial.weights | adversary_weights(trial, share, adversaries)
        control = top(honest_judges | {s: honest_votes for s in adversaries}, weights)
        votes = self_promoting_votes(trial) if attack == "runner-up" else \
            coalition_votes(trial, attack)
        target = trial.self_target if attack == "runner-up" else trial.target
        attacked = top(honest_judges | {s: votes for s in adversaries}, weights)
        tally = tallies.setdefault(share, Tally())
        tally.rounds += 1
        tally.changed += attacked != base_top
        tally.control_changed += control != base_top
        tally.target_first += attacked == target
        tally.control_target_first += control == target
        tally.right_first += attacked >= trial.right_from
        tally.control_right_first += control >= trial.right_from


def compare_rows(first: int, rounds: int, attack: str = "good+bad", judges: int = 0,
                 candidates: Sequence[Candidate] = CANDIDATES) -> list[dict[str, Any]]:
    """Per candidate: good+bad target-first and excess change per share, and its judging
    work (ordered pairs x judges per round) relative to the adopted rule's."""
    rows = []
    base_work = 0.0
    for candidate in candidates:
        tallies: dict[float, Tally] = {}
        work = [0, 0]
        for number in range(first, first + rounds):
            compare_trial(number, candidate, tallies, work, attack, judges)
        if not base_work:
            base_work = work[0]
        rows.append({"candidate": candidate.name, "work_ratio": round(work[0] / base_work, 2),
                     "cells": {f"{share:.0%}": tallies[share].row(attack, share)
                               for share in SHARES}})
    return rows


def print_compare(rows: list[dict[str, Any]], rounds: int, attack: str = "good+bad") -> None:
    print(f"\ncandidates side by side, {attack}, {rounds} rounds (same seeds): target first % / "
          f"excess change pp / right first %; work = pairs judged x judges vs adopted")
    print(f"{'candidate':<52} {'work':>5} " + " ".join(f"{f'{s:.0%}':>18}" for s in SHARES))
    for row in rows:
        cells = " ".join(f"{c['target_first_pct']:5.2f}/{c['excess_change_pp']:+6.2f}/"
                         f"{c['right_first_pct']:5.1f}" for c in row["cells"].values())
        print(f"{row['candidate']:<52} {row['work_ratio']:5.2f} {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="signed rounds per cell")
    parser.add_argument("--first", type=int, default=0, help="first trial number")
    parser.add_argument("--attacks", default="", help="comma-separated subset of attacks")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--judges", type=int, default=0,
                        help="judges per round, the coalition taking its stake share of the "
                             "seats (default 0: 4..8 honest judges plus 1..3 adversaries)")
    parser.add_argument("--candidates", default="", metavar="WORDS",
                        help="--compare only the candidates whose name has one of these "
                             "comma-separated words (and the adopted rule)")
    parser.add_argument("--compare", action="store_true",
                        help="also rank the good+bad rounds by the candidate rules side by side")
    args = parser.parse_args()
    started = time.perf_counter()
    tallies: dict[tuple[str, float | None], Tally] = {}
    attacks = args.attacks.split(",") if args.attacks else ATTACKS
    unknown = set(attacks) - set(ATTACKS)
    if unknown:
        parser.error(f"unknown attacks {sorted(unknown)}; known: {', '.join(ATTACKS)}")
    for number in range(args.first, args.first + args.rounds):
        run_trial(number, tallies, attacks, args.judges)
    seconds = time.perf_counter() - started
    load = os.getloadavg()[0]
    rows = [tallies[key].row(*key) for key in sorted(
        tallies, key=lambda k: (ATTACKS.index(k[0]), k[1] or 0))]
    judged = (f"{args.judges} judges per round (coalition seats = its share, rounded up)"
              if args.judges else "4..8 honest judges + 1..3 adversaries")
    print(f"{args.rounds} signed rounds per cell through settle, {judged}, honest judges "
          f"{ACCURACY:.0%} accurate; {seconds:.0f} s, load average {load:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"{'attack':>9} {'weight':>6} {'changed%':>8} {'control%':>8} {'excess pp':>9} "
          f"{'target1st%':>10} {'ctl tgt%':>8} {'base tgt%':>9} {'right1st%':>9} "
          f"{'ctl right%':>10} {'goal':>5}")
    for row in rows:
        share = "-" if row["weight_share"] is None else f"{row['weight_share']:.0%}"
        goal = {True: "met", False: "MISS"}.get(row.get("meets_goal"), "")  # type: ignore[arg-type]
        print(f"{row['attack']:>9} {share:>6} {row['changed_pct']:8.2f} "
              f"{row['control_changed_pct']:8.2f} {row['excess_change_pp']:9.2f} "
              f"{row['target_first_pct']:10.2f} {row['control_target_first_pct']:8.2f} "
              f"{row['baseline_target_first_pct']:9.2f} {row['right_first_pct']:9.2f} "
              f"{row['control_right_first_pct']:10.2f} {goal:>5}")
    omission = tallies.get(("omission", None), Tally(rounds=1)).row("omission", None)
    print(f"omission: the heaviest honest judge's opening left out -> slashed as a no-show in "
          f"{omission['honest_slashed_pct']:.0f}% of rounds without the inclusion window; the "
          f"victim can prove the omission (swarm.inclusion) in "
          f"{omission.get('provable_in_window_pct', 0):.0f}% (then the settlement is void and "
          f"the settler loses its bond)")
    chosen = [c for c in CANDIDATES if c is CANDIDATES[0] or not args.candidates
              or any(word in c.name for word in args.candidates.split(","))]
    compared = {attack: compare_rows(args.first, args.rounds, attack, args.judges, chosen)
                for attack in COMPARED_ATTACKS} if args.compare else {}
    for attack, rows_compared in compared.items():
        print_compare(rows_compared, args.rounds, attack)
    if args.json:
        print(json.dumps({"rounds": args.rounds, "judges": args.judges,
                          "accuracy": ACCURACY, "rows": rows,
                          "compare": compared, "seconds": round(seconds, 1),
                          "load_average": round(load, 2)}))


if __name__ == "__main__":
    main()
