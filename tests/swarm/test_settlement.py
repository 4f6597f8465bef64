"""Settlement: payouts by rank, judges by agreement, slashing, coalitions, determinism."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.tx import public_key
from swarm.bradley_terry import Comparison, Outcome, SettlementInputError
from swarm.commit_reveal import commit, judgment_opening, judgment_payload
from swarm.messages import (
    KIND_ANSWER,
    KIND_JUDGMENT,
    SLASH_EQUIVOCATION,
    SLASH_NO_SHOW,
    AnswerOpening,
    RoundOutcome,
)
from swarm.schedule import judging_pairs
from swarm.settlement import (
    SCREEN_BAD,
    SCREEN_GOOD,
    SCREEN_NONE,
    TIER_ACCEPTED,
    TIER_REJECTED,
    TIER_UNDECIDED,
    RoundSettlement,
    SettlementParams,
    aggregate,
    answer_view,
    consensus_comparisons,
    decayed_reputation,
    pair_verdict,
    position_weight,
    settle,
)
from tests.framework.roundkit import (
    STAKE,
    Round,
    Verdict,
    build_round,
    honest,
    make_request,
    quality_of,
    seed,
)

FEE = 1_000_000


def run(r: Round, *, reputations: dict[bytes, int] | None = None,
        stakes: dict[bytes, int] | None = None, **kw: object) -> RoundSettlement:
    nodes = r.answerers + r.judges
    reps = reputations if reputations is not None else {n: 100 for n in nodes}
    stk = stakes if stakes is not None else {n: STAKE for n in nodes}
    return settle(request=r.request, answerers=r.answerers, judges=r.judges,
                  commitments=r.commitments, answer_openings=r.answer_openings,
                  judgment_openings=r.judgment_openings, reputations=reps, stakes=stk,
                  **kw)  # type: ignore[arg-type]


def simple_round(n: int = 5, judges: int = 4, *, tag: str = "r", nonce: int = 0,
                 verdicts: list[Verdict] | None = None, no_show: int | None = None) -> Round:
    answers = [(seed(f"{tag}a{i}"), f"answer q={(i * 3) % n}".encode()) for i in range(n)]
    jv = verdicts or [honest] * judges
    return build_round(
        request=make_request(seed("client"), fee=FEE, answers=n, judges=len(jv), nonce=nonce),
        answers=answers, judges=[(seed(f"{tag}j{k}"), v) for k, v in enumerate(jv)],
        answer_no_shows=() if no_show is None else (answers[no_show][0],))


def money_in_equals_money_out(r: Round, s: RoundSettlement) -> None:
    paid = sum(p.amount for p in s.outcome.payouts) + s.outcome.refund
    slashed = sum(x.amount for x in s.outcome.slashes)
    assert paid == (r.request.fee + slashed if s.outcome.ranking else r.request.fee)


def test_honest_round_pays_by_rank_and_agreement() -> None:
    r = simple_round()
    s = run(r)
    texts = [r.answer_text[node] for node in s.outcome.ranking]
    assert [quality_of(t) for t in texts] == [4, 3, 2, 1, 0]
    pay = {p.node: p.amount for p in s.outcome.payouts}
    ranked = s.outcome.ranking
    # good answers = top ceil(5/2) = 3, paid ∝ 3^1.5 : 2^1.5 : 1
    assert pay[ranked[0]] > pay[ranked[1]] > pay[ranked[2]] > 0
    assert ranked[3] not in pay and ranked[4] not in pay
    assert abs(pay[ranked[1]] * position_weight(3) - pay[ranked[0]] * position_weight(2)) \
        <= position_weight(3) * 2
    # every judge agreed fully: equal shares of the 30% judge pool
    judge_pay = [pay[j] for j in r.judges]
    assert max(judge_pay) - min(judge_pay) <= len(judge_pay)
    assert sum(judge_pay) == FEE - FEE * 7000 // 10_000
    assert s.outcome.refund == 0 and s.outcome.slashes == ()
    money_in_equals_money_out(r, s)
    reps = {u.node: u.score for u in s.outcome.reputations}
    assert reps[ranked[0]] == 200 and reps[ranked[-1]] == 0
    assert all(reps[j] == 200 for j in r.judges)
    assert RoundOutcome.decode(s.outcome.encode()) == s.outcome


def test_settlement_is_deterministic_under_input_order() -> None:
    r = simple_round(7, 5)
    s = run(r)
    shuffled = dataclasses.replace(
        r, commitments=r.commitments[::-1], answer_openings=r.answer_openings[::-1],
        judgment_openings=r.judgment_openings[::-1], answerers=r.answerers[::-1],
        judges=r.judges[::-1])
    assert run(shuffled).outcome.encode() == s.outcome.encode()


def coalition_round(trial: int, *, invert: bool) -> tuple[Round, Round, dict[bytes, int],
                                                          list[bytes]]:
    """Honest judges vote by true quality; a coalition of just under a third of the judge
    weight always votes for the worst answer and against the best (``invert``: against the
    better answer in every pair)."""
    rng = random.Random(trial)
    n = rng.randint(3, 10)
    quality = list(range(n))
    rng.shuffle(quality)
    answers = [(seed(f"c{trial}a{i}"), f"answer q={quality[i]}".encode()) for i in range(n)]

    def evil(_judge: bytes, a: bytes, b: bytes) -> Outcome:
        qa, qb = quality_of(a), quality_of(b)
        if qa == 0 or qb == n - 1:
            return Outcome.FIRST_WINS
        if qb == 0 or qa == n - 1:
            return Outcome.SECOND_WINS
        better_first = qa > qb
        return Outcome.FIRST_WINS if better_first != invert else Outcome.SECOND_WINS

    honest_judges = [(seed(f"c{trial}h{k}"), honest) for k in range(rng.randint(2, 7))]
    bad_judges = [(seed(f"c{trial}x{k}"), evil) for k in range(rng.randint(1, 5))]
    reps = {public_key(s): rng.randint(20, 200) for s, _ in honest_judges}
    honest_weight = sum(reps.values()) + len(honest_judges)  # + judge_weight_base each
    share = (honest_weight - 1) // 2 // len(bad_judges) - 1  # coalition < honest / 2
    for s, _ in bad_judges:
        reps[public_key(s)] = max(share, 0)
    coalition = [public_key(s) for s, _ in bad_judges]
    assert 3 * sum(reps[c] + 1 for c in coalition) < sum(reps.values()) + len(reps)
    request = make_request(seed("client"), fee=FEE, answers=n, judges=len(reps), nonce=trial)
    alone = build_round(request=request, answers=answers, judges=honest_judges)
    attacked = build_round(request=request, answers=answers, judges=honest_judges + bad_judges)
    for s, _ in answers:
        reps[public_key(s)] = 50
    return alone, attacked, reps, coalition


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.booleans())
def test_coalition_under_a_third_does_not_change_the_outcome(trial: int, invert: bool) -> None:
    alone, attacked, reps, coalition = coalition_round(trial, invert=invert)
    honest_only = run(alone, reputations=reps)
    under_attack = run(attacked, reputations=reps)
    assert under_attack.outcome.ranking[0] == honest_only.outcome.ranking[0]
    assert under_attack.outcome.ranking == honest_only.outcome.ranking
    # the coalition earns less than any honest judge and loses reputation when it inverts
    pay = {p.node: p.amount for p in under_attack.outcome.payouts}
    honest_judges = set(attacked.judges) - set(coalition)
    assert max(pay.get(c, 0) for c in coalition) < min(pay[h] for h in honest_judges)
    new_rep = {u.node: u.score for u in under_attack.outcome.reputations}
    for c in coalition:
        assert new_rep[c] < reps[c] or (not invert and new_rep[c] <= reps[c] + 100)
        if invert:
            assert new_rep[c] < reps[c] or reps[c] == 0


def test_the_same_coalition_with_a_majority_does_change_the_outcome() -> None:
    # the attack is real: with most of the weight, the coalition lifts the worst answer
    alone, attacked, reps, coalition = coalition_round(7, invert=False)
    for c in coalition:
        reps[c] = 10**6
    honest_ranking = run(alone, reputations=reps).outcome.ranking
    hijacked = run(attacked, reputations=reps).outcome.ranking
    assert quality_of(alone.answer_text[honest_ranking[0]]) != 0
    assert quality_of(attacked.answer_text[hijacked[0]]) == 0


def test_answer_no_show_is_slashed_and_excluded() -> None:
    r = simple_round(no_show=2)
    s = run(r)
    absent = r.answerers[2]
    assert absent not in s.outcome.ranking and len(s.outcome.ranking) == 4
    assert s.outcome.slashes[0].node == absent
    assert s.outcome.slashes == (type(s.outcome.slashes[0])(
        node=absent, amount=STAKE * 500 // 10_000, reason=SLASH_NO_SHOW),)
    assert {u.node: u.score for u in s.outcome.reputations}[absent] == 0  # 100 - 400, floored
    assert s.no_shows == (absent,)
    money_in_equals_money_out(r, s)


def test_judge_no_show_and_malformed_judgment_are_slashed() -> None:
    r = simple_round()
    silent = r.judges[0]
    r.judgment_openings = [o for o in r.judgment_openings if o.node != silent]
    # judge 1 opens a judgment with an outcome byte that means nothing
    wrong = seed("rj1")
    good = next(o for o in r.judgment_openings if o.node == public_key(wrong))
    c, rev = commit(wrong, round_id=r.request.round_id(), kind=KIND_JUDGMENT,
                    payload=judgment_payload(good.answer_set, b"\x03" * len(good.outcomes)),
                    salt=bytes(32))
    r.commitments = [x for x in r.commitments if x.node != public_key(wrong)] + [c]
    r.judgment_openings = [o for o in r.judgment_openings if o.node != public_key(wrong)]
    r.judgment_openings.append(judgment_opening(rev))
    s = run(r)
    assert {x.node for x in s.outcome.slashes} == {silent, public_key(wrong)}
    assert all(x.reason == SLASH_NO_SHOW for x in s.outcome.slashes)
    money_in_equals_money_out(r, s)


def test_equivocators_are_slashed_with_evidence() -> None:
    liar_answer, liar_judge = seed("ra1"), seed("rj2")
    n = 5
    r = build_round(
        request=make_request(seed("client"), fee=FEE, answers=n, judges=4),
        answers=[(seed(f"ra{i}"), f"answer q={(i * 3) % n}".encode()) for i in range(n)],
        judges=[(seed(f"rj{k}"), honest) for k in range(4)], unjudged=(liar_answer,))
    rid = r.request.round_id()
    r.commitments.append(commit(liar_answer, round_id=rid, kind=KIND_ANSWER, payload=b"other",
                                salt=bytes(32))[0])
    r.commitments.append(commit(liar_judge, round_id=rid, kind=KIND_JUDGMENT, payload=b"\x01",
                                salt=bytes(32))[0])
    s = run(r)
    slashed = {x.node: x for x in s.outcome.slashes}
    assert set(slashed) == {public_key(liar_answer), public_key(liar_judge)}
    assert all(x.reason == SLASH_EQUIVOCATION and x.amount == STAKE * 2000 // 10_000
               for x in slashed.values())
    assert public_key(liar_answer) not in s.outcome.ranking
    assert public_key(liar_judge) not in {p.node for p in s.outcome.payouts}
    assert {e.first.node for e in s.equivocations} == set(slashed)
    money_in_equals_money_out(r, s)


def test_judgment_of_another_answer_set_is_ignored_without_penalty() -> None:
    # judge 0 never saw answerer 4's reveal: its judgment covers another set
    n = 5
    answers = [(seed(f"ra{i}"), f"answer q={(i * 3) % n}".encode()) for i in range(n)]
    request = make_request(seed("client"), fee=FEE, answers=n, judges=4)
    full = build_round(request=request, answers=answers,
                       judges=[(seed(f"rj{k}"), honest) for k in range(1, 4)])
    partial = build_round(request=request, answers=answers, judges=[(seed("rj0"), honest)],
                          unjudged=(answers[4][0],))
    full.judges += partial.judges
    full.commitments += [c for c in partial.commitments if c.kind == KIND_JUDGMENT]
    full.judgment_openings += partial.judgment_openings
    s = run(full)
    blind = public_key(seed("rj0"))
    assert blind not in {j.node for j in s.judges}
    assert s.outcome.slashes == ()
    assert blind not in {p.node for p in s.outcome.payouts}
    assert len(s.judges) == 3


def test_copycat_opening_makes_a_no_show() -> None:
    # the thief withholds its own reveal and presents the victim's under its name; honest
    # judges check it against the thief's commitment and leave the thief out
    r = simple_round(no_show=1)
    victim, thief = r.answerers[0], r.answerers[1]
    stolen = next(o for o in r.answer_openings if o.node == victim)
    r.answer_openings.append(AnswerOpening(node=thief, salt=stolen.salt,
                                           answer_hash=stolen.answer_hash))
    s = run(r)
    assert victim in s.outcome.ranking and thief not in s.outcome.ranking
    assert [x.node for x in s.outcome.slashes] == [thief]


def test_foreign_commitments_are_ignored_and_silence_is_not_slashed() -> None:
    r = simple_round()
    outsider = seed("outsider")
    r.commitments.append(commit(outsider, round_id=r.request.round_id(), kind=KIND_ANSWER,
                                payload=b"spam", salt=bytes(32))[0])
    r.commitments.append(commit(seed("ra0"), round_id=bytes(32), kind=KIND_ANSWER,
                                payload=b"other round", salt=bytes(32))[0])
    base = run(simple_round())
    assert run(r).outcome == base.outcome
    # a selected judge who never committed: not slashed, not paid, reputation untouched
    late = public_key(seed("late judge"))
    r2 = simple_round()
    r2.judges.append(late)
    s = run(r2, reputations={**{n: 100 for n in r2.answerers + r2.judges}})
    assert late not in {x.node for x in s.outcome.slashes}
    assert late not in {u.node for u in s.outcome.reputations}


def test_no_answers_refunds_the_fee() -> None:
    r = simple_round(n=2, judges=2)
    r.answer_openings = []
    r.judgment_openings = []
    s = run(r)
    assert s.outcome.ranking == () and s.outcome.payouts == ()
    assert s.outcome.refund == FEE
    assert {x.node for x in s.outcome.slashes} == set(r.answerers) | set(r.judges)


def test_judge_does_not_judge_its_own_answer() -> None:
    # a node answers (the worst answer) and also judges, with most of the judge weight,
    # claiming its own answer wins every pair it is in
    n = 5
    answers = [(seed(f"ra{i}"), f"answer q={(i * 3) % n}".encode()) for i in range(n)]
    selfish_seed = answers[0][0]  # "answer q=0"
    own_text = answers[0][1]

    def selfish(judge: bytes, a: bytes, b: bytes) -> Outcome:
        if a == own_text:
            return Outcome.FIRST_WINS
        if b == own_text:
            return Outcome.SECOND_WINS
        return honest(judge, a, b)

    r = build_round(request=make_request(seed("client"), fee=FEE, answers=n, judges=4),
                    answers=answers,
                    judges=[(seed(f"rj{k}"), honest) for k in range(3)]
                    + [(selfish_seed, selfish)])
    me = public_key(selfish_seed)
    reps = {node: 100 for node in r.answerers + r.judges}
    reps[me] = 10**6
    s = run(r, reputations=reps)
    own_index = s.answer_nodes.index(me)
    pairs = judging_pairs(r.request.round_id(), n)
    report = next(j for j in s.judges if j.node == me)
    assert report.counted == sum(1 for p in pairs if own_index not in p) < len(pairs)
    # its self-serving votes had no effect: the same ranking as if it had voted honestly
    fair = build_round(request=r.request, answers=answers,
                       judges=[(seed(f"rj{k}"), honest) for k in range(3)]
                       + [(selfish_seed, honest)])
    assert run(fair, reputations=reps).outcome.ranking == s.outcome.ranking
    # and the worst answer did not win
    assert s.outcome.ranking.index(me) > 0


def test_pair_verdicts_decisive_leaning_and_tied() -> None:
    assert pair_verdict([2, 1, 0]) == (Outcome.FIRST_WINS, True)  # exactly two thirds
    assert pair_verdict([3, 2, 0]) == (Outcome.FIRST_WINS, False)
    assert pair_verdict([0, 5, 4]) == (Outcome.SECOND_WINS, False)
    assert pair_verdict([0, 7, 3]) == (Outcome.SECOND_WINS, True)
    assert pair_verdict([2, 2, 1]) == (Outcome.TIE, True)
    assert pair_verdict([2, 1, 1]) == (Outcome.TIE, True)
    pairs = [(0, 1), (1, 0)]
    judges = [bytes([k]) * 32 for k in range(3)]
    votes = [Comparison(judges[0], 0, 1, Outcome.FIRST_WINS),
             Comparison(judges[1], 0, 1, Outcome.FIRST_WINS),
             Comparison(judges[2], 0, 1, Outcome.SECOND_WINS),
             Comparison(judges[0], 1, 0, Outcome.SECOND_WINS)]
    out, weights = consensus_comparisons(pairs, votes, {judges[0]: 3, judges[1]: 2,
                                                        judges[2]: 4})
    # pair 0: first has 5 of 9 (lean): a win of 4 and a tie of 5; pair 1: decisive, weight 3
    assert [(c.first, c.second, c.outcome, weights[c.judge]) for c in out] == [
        (0, 1, Outcome.FIRST_WINS, 4), (0, 1, Outcome.TIE, 5), (1, 0, Outcome.SECOND_WINS, 3)]


def test_params_validate() -> None:
    with pytest.raises(ValueError):
        SettlementParams(answer_share_bps=10_001)
    with pytest.raises(ValueError):
        SettlementParams(reputation_step=-1)


@given(st.integers(0, 10**12), st.integers(0, 10**6), st.integers(0, 1000),
       st.integers(1, 5000))
def test_decay_is_monotone_toward_the_floor(score: int, blocks: int, floor: int,
                                            half_life: int) -> None:
    now = decayed_reputation(score, blocks_elapsed=blocks, floor=floor, half_life=half_life)
    later = decayed_reputation(score, blocks_elapsed=blocks + 1, floor=floor,
                               half_life=half_life)
    assert later <= now <= score
    assert now >= min(score, floor)
    if score > floor:
        assert decayed_reputation(score, blocks_elapsed=half_life, floor=floor,
                                  half_life=half_life) == floor + ((score - floor) >> 1)


def test_decay_examples() -> None:
    assert decayed_reputation(1100, blocks_elapsed=0, floor=100, half_life=10) == 1100
    assert decayed_reputation(1100, blocks_elapsed=5, floor=100, half_life=10) == 850
    assert decayed_reputation(1100, blocks_elapsed=20, floor=100, half_life=10) == 350
    assert decayed_reputation(50, blocks_elapsed=10**9, floor=100, half_life=10) == 50
    assert decayed_reputation(10**9, blocks_elapsed=10**9, floor=100, half_life=10) == 100


def test_answer_view_is_what_judges_committed_to() -> None:
    r = simple_round(6, 3)
    view = answer_view(round_id=r.request.round_id(), answerers=r.answerers, judges=r.judges,
                       commitments=r.commitments, answer_openings=r.answer_openings)
    assert view.nodes == tuple(sorted(r.answerers))
    assert view.pairs == judging_pairs(r.request.round_id(), 6)
    assert all(o.answer_set == view.answer_set for o in r.judgment_openings)
    assert view.equivocators == frozenset() and view.answer_no_shows == frozenset()


def test_identical_answers_share_their_positions() -> None:
    # two nodes give the same best answer, two the same worst: each pair is paid alike
    texts = [b"answer q=9", b"answer q=9", b"answer q=5", b"answer q=1", b"answer q=1"]
    r = build_round(
        request=make_request(seed("client"), fee=FEE, answers=5, judges=3),
        answers=[(seed(f"twin{i}"), t) for i, t in enumerate(texts)],
        judges=[(seed(f"twinj{k}"), honest) for k in range(3)])
    s = run(r)
    pay = {p.node: p.amount for p in s.outcome.payouts}
    rep = {u.node: u.score for u in s.outcome.reputations}
    best = [n for n in r.answerers if r.answer_text[n] == b"answer q=9"]
    worst = [n for n in r.answerers if r.answer_text[n] == b"answer q=1"]
    middle = next(n for n in r.answerers if r.answer_text[n] == b"answer q=5")
    assert set(s.outcome.ranking[:2]) == set(best)
    assert abs(pay[best[0]] - pay[best[1]]) < 5  # the rounding dust goes to one of them
    assert pay[best[0]] > pay[middle] > 0
    assert rep[best[0]] == rep[best[1]] > rep[middle] > rep[worst[0]] == rep[worst[1]]
    money_in_equals_money_out(r, s)


def test_summary_is_json_ready_and_consistent() -> None:

    r = simple_round(no_show=2)
    s = run(r)
    summary = json.loads(json.dumps(s.summary()))
    answers = summary["answers"]
    assert [a["node"] for a in answers] == [n.hex() for n in s.outcome.ranking]
    assert [a["rank"] for a in answers] == list(range(4))
    strengths = [a["strength_micro"] for a in answers]
    assert strengths == sorted(strengths, reverse=True) and strengths[0] > 0 > strengths[-1]
    assert all(0 < a["score_micro"] < 10**6 for a in answers)
    assert summary["slashes"][0]["reason"] == "no_show"
    assert summary["no_shows"] == [r.answerers[2].hex()]
    assert sum(a["payout"] for a in answers) + sum(j["payout"] for j in summary["judges"]) \
        + summary["refund"] == FEE + summary["slashes"][0]["amount"]
    # every participant's change is its new score minus the score the round started from
    # (run() starts everyone at 100); the best answer gains, the worst loses
    for entry in answers + summary["judges"]:
        assert entry["reputation"] - 100 == entry["reputation_change"]
    assert answers[0]["reputation_change"] > 0 > answers[-1]["reputation_change"]


def test_aggregate_ranks_from_verdict_bytes_and_checks_them() -> None:
    pairs = judging_pairs(bytes(32), 4)
    quality = [2, 0, 3, 1]
    no_screen = bytes([SCREEN_NONE] * 4)
    good = bytes(0 if quality[a] > quality[b] else 1 for a, b in pairs)
    bad = bytes(1 - v for v in good)
    judges = {bytes([k]) * 32: good + no_screen for k in range(3)} | {
        bytes([9]) * 32: bad + no_screen}
    weights = dict.fromkeys(judges, 10)
    result = aggregate(n=4, pairs=pairs, verdicts=judges, weights=weights)
    assert result.ranking[0] == 2 and result.ranking[-1] == 1
    assert result.ranking == result.fit.ranking()  # no screen opinions: strength alone
    agreement = {r.node: (r.agree2, r.counted) for r in result.judges}
    assert agreement[bytes([9]) * 32] == (0, len(pairs))
    assert agreement[bytes([0]) * 32] == (2 * len(pairs), len(pairs))
    # one pass: no judge's weight changes within the round
    assert result.weights == weights
    with pytest.raises(SettlementInputError):
        aggregate(n=4, pairs=pairs, verdicts={bytes(32): good}, weights={bytes(32): 1})
    with pytest.raises(SettlementInputError):
        aggregate(n=4, pairs=pairs, verdicts={bytes(32): b"\x03" * (len(pairs) + 4)},
                  weights={bytes(32): 1})


def test_screened_answers_rank_first_and_only_they_are_paid() -> None:
    """The judges' screen decides which answers are acceptable; strength orders each tier.
    Answer 3 wins every pair but ⅔ of the weight calls it bad: it ranks below the accepted
    answers, and only accepted answers share the answer pool."""
    pairs = judging_pairs(bytes(32), 4)
    quality = [2, 0, 1, 3]
    verdicts = bytes(0 if quality[a] > quality[b] else 1 for a, b in pairs)
    marks = bytes([SCREEN_GOOD, SCREEN_BAD, SCREEN_GOOD, SCREEN_BAD])
    judges = {bytes([k]) * 32: verdicts + marks for k in range(3)}
    result = aggregate(n=4, pairs=pairs, verdicts=judges, weights=dict.fromkeys(judges, 5))
    assert result.accepted == (True, False, True, False)
    assert result.tiers == (TIER_ACCEPTED, TIER_REJECTED, TIER_ACCEPTED, TIER_REJECTED)
    assert result.ranking == (0, 2, 3, 1)
    # a judge calling answer 3 good: under ⅓ of the weight changes nothing; under ⅔ makes
    # it undecided (no longer rejected, still below the accepted); ⅔ accepts it
    minority = dict(judges) | {bytes([9]) * 32: verdicts + bytes([1, 0, 1, 1])}
    weights = dict.fromkeys(judges, 5) | {bytes([9]) * 32: 7}
    assert aggregate(n=4, pairs=pairs, verdicts=minority, weights=weights).tiers == (
        TIER_ACCEPTED, TIER_REJECTED, TIER_ACCEPTED, TIER_REJECTED)
    weights[bytes([9]) * 32] = 8
    split = aggregate(n=4, pairs=pairs, verdicts=minority, weights=weights)
    assert split.tiers[3] == TIER_UNDECIDED and split.ranking == (0, 2, 3, 1)
    weights[bytes([9]) * 32] = 30
    assert aggregate(n=4, pairs=pairs, verdicts=minority, weights=weights).ranking[0] == 3

    texts = [b"answer %d" % i for i in range(4)]
    request = make_request(seed("screen client"), fee=FEE, answers=4, judges=3)
    r = build_round(request=request,
                    answers=[(seed(f"screen a{i}"), t) for i, t in enumerate(texts)],
                    judges=[(seed(f"screen j{k}"), lambda _s, a, b: Outcome.FIRST_WINS
                             if a > b else Outcome.SECOND_WINS) for k in range(3)],
                    screen=lambda _s, text: SCREEN_GOOD if text in texts[:2] else SCREEN_BAD)
    result2 = run(r)
    paid = {p.node for p in result2.outcome.payouts} - set(r.judges)
    by_text = {node: text for node, text in r.answer_text.items()}
    assert {by_text[node] for node in paid} == set(texts[:2])
    assert [by_text[node] for node in result2.outcome.ranking[:2]] == [texts[1], texts[0]]
    shown = result2.summary()["answers"]
    assert isinstance(shown, list)
    assert shown[0]["accepted"] is True and shown[2]["accepted"] is False
