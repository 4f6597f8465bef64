"""Swarm bench: aggregation time (Bradley-Terry fit and full settlement) and answer quality.

Aggregation: a round of n answers and J judges on the real schedule (about 3n ordered pairs
per judge), judges voting by hidden answer quality with 15% noise; timed are
`swarm.settlement.aggregate` (per-pair weighted verdicts, Bradley-Terry fit, judges'
agreement) and the whole `swarm.settlement.settle` (plus signature checks, openings,
payouts, reputation), median and min of ``--repeat`` runs. Goal: 64 answers < 50 ms.

Quality (`quality_rows`): on ``--questions`` (default 400) fixed questions of the built-in
task, 8 answerers (the 4 shipped variants x 2 answer forms) and the 4 variants as judges,
the swarm's pick (Bradley-Terry through `swarm.settlement.aggregate`, judges weighted by
reputation + 1, own answer skipped) vs majority vote vs the best single node, on the real
ring+chord schedule and on all ordered pairs, for three judge-reputation assignments, with
and without adversarial judges holding 30% of the judge weight who always prefer a wrong
answer (the most common wrong one first). Measured 2026-11-23, 400 questions: best node
0.925, majority 0.8925; swarm on the schedule 0.8175 / 0.875 / 0.89 (equal / calibration /
1:2:4:8 reputations), on all pairs 0.8325 / 0.9225 / 0.94; adversaries cost 14-17 pp.

    python bench/swarm_quality.py [--answers 8 16 32 64] [--judges 16] [--repeat 7]
                                  [--questions 400] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swarm.bradley_terry import Outcome
from swarm.runtime.calibration import grade_answer
from swarm.runtime.tasks import extract_integer
from swarm.schedule import judging_pairs
from swarm.settlement import aggregate, settle
from tests.swarm.roundkit import Round, build_round, make_request, seed

GOAL_MS = 50.0
NOISE = 0.15


def make_round(n: int, judges: int, *, rng_seed: int = 1) -> tuple[Round, dict[bytes, int]]:
    """A signed round: answer i has hidden quality; judges vote by it with NOISE flips."""
    rng = random.Random(rng_seed)
    quality = {f"answer {i}".encode(): rng.random() for i in range(n)}

    def judge(judge_seed: bytes, a: bytes, b: bytes) -> Outcome:
        flip = random.Random(judge_seed + a + b).random() < NOISE
        better_first = (quality[a] > quality[b]) != flip
        return Outcome.FIRST_WINS if better_first else Outcome.SECOND_WINS

    request = make_request(seed("bench client"), fee=10**9, answers=n, judges=judges,
                           nonce=rng_seed)
    r = build_round(request=request,
                    answers=[(seed(f"bench a{i}"), text) for i, text in enumerate(quality)],
                    judges=[(seed(f"bench j{k}"), judge) for k in range(judges)])
    reputations = {node: rng.randint(1, 1000) for node in r.answerers + r.judges}
    return r, reputations


def _times_ms(fn: Any, repeat: int) -> tuple[float, float]:
    """(median, min) wall time in ms; the min is the cost without interference from load."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2), round(min(times), 2)


def aggregation_row(n: int, judges: int, repeat: int) -> dict[str, Any]:
    r, reputations = make_round(n, judges)
    stakes = {node: 10**6 for node in r.answerers + r.judges}

    def run_settle() -> Any:
        return settle(request=r.request, answerers=r.answerers, judges=r.judges,
                      commitments=r.commitments, answer_openings=r.answer_openings,
                      judgment_openings=r.judgment_openings, reputations=reputations,
                      stakes=stakes)

    result = run_settle()
    # the verdicts settle aggregates, to time the aggregation alone (verdicts, fit, agreement)
    verdicts = {o.node: o.outcomes for o in r.judgment_openings}
    weights = {node: reputations[node] + 1 for node in verdicts}
    pairs = judging_pairs(r.request.round_id(), n)
    fit, _ = aggregate(n=n, pairs=pairs, verdicts=verdicts, weights=weights)
    assert fit == result.fit
    agg_ms, agg_min_ms = _times_ms(
        lambda: aggregate(n=n, pairs=pairs, verdicts=verdicts, weights=weights), repeat)
    settle_ms, settle_min_ms = _times_ms(run_settle, repeat)
    return {
        "answers": n, "judges": judges, "comparisons": len(pairs) * len(verdicts),
        "aggregate_ms": agg_ms, "aggregate_min_ms": agg_min_ms, "settle_ms": settle_ms,
        "settle_min_ms": settle_min_ms, "newton_steps": fit.iterations,
        "converged": fit.converged,
    }


ADVERSARY_SHARE = (3, 10)  # adversarial judges hold 30% of the total judge weight
ADVERSARIES = 2
CALIBRATION_COUNT = 64


def _node_id(label: str) -> bytes:
    return hashlib.sha256(b"bench node " + label.encode()).digest()


def _majority(texts: list[str]) -> int | None:
    """Most frequent extracted integer; a tie goes to the value stated first (candidate
    order: worst variant first, so ties are not resolved in the swarm's favour)."""
    values = [extract_integer(t) for t in texts]
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(v for v in values if v is not None and counts[v] == top)


def _adversary_verdicts(pairs: list[tuple[int, int]], right: list[bool],
                        values: list[int | None]) -> bytes:
    """Always prefer a wrong answer: the most frequent wrong value (the strongest push)
    beats everything, any wrong answer beats any right one, otherwise a tie."""
    wrong = Counter(v for v, ok in zip(values, right, strict=True) if not ok)
    target = wrong.most_common(1)[0][0] if wrong else object()
    out = []
    for a, b in pairs:
        ta, tb = values[a] == target, values[b] == target
        if ta != tb:
            out.append(Outcome.FIRST_WINS if ta else Outcome.SECOND_WINS)
        elif right[a] != right[b]:
            out.append(Outcome.SECOND_WINS if right[a] else Outcome.FIRST_WINS)
        else:
            out.append(Outcome.TIE)
    return bytes(out)


def quality_rows(count: int) -> dict[str, Any]:
    """Swarm (Bradley-Terry via `swarm.settlement.aggregate`, reputation-weighted judges) vs
    majority vote vs the best single node on ``count`` fixed questions of the built-in task,
    with and without adversarial judges holding 30% of the judge weight.

    Fixed before measuring: questions `fixed_questions(count)`; answerers `swarm_backends()`
    (4 variants x 2 answer forms = 8 answers per question, worst variant first); judges the
    4 variants (form 0), each skipping pairs with its own answer; pairs
    `judging_pairs(round id of question q, 8)`; reputations three ways (equal; calibration
    score = right answers out of 64 calibration questions; doubling by variant, 1:2:4:8 from
    xs to l, i.e. what a history of rounds would give the better judges).
    """
    import torch

    from swarm.runtime.calibration import calibration_questions
    from swarm.runtime.evaluate import (
        collect_answers,
        collect_judgments,
        fixed_questions,
        is_correct,
        swarm_backends,
    )

    torch.set_num_threads(1)
    started = time.perf_counter()
    questions = fixed_questions(count)
    backends = swarm_backends()
    answers = collect_answers(questions, backends)
    labels = list(answers)
    judges = [b for b in backends if b.answer_form == 0]
    candidates = [[answers[label][q].text for label in labels] for q in range(count)]
    round_ids = [hashlib.sha256(b"bench quality round %d" % q).digest() for q in range(count)]
    n = len(labels)
    schedules = {
        "schedule": [list(judging_pairs(round_ids[q], n)) for q in range(count)],
        "all_pairs": [[(a, b) for a in range(n) for b in range(n) if a != b]] * count,
    }
    # every judge judges every ordered pair once; each schedule reads its pairs from that
    everything = schedules["all_pairs"]
    judged = collect_judgments(questions, candidates, everything, judges)
    code = {"A": Outcome.FIRST_WINS, "B": Outcome.SECOND_WINS, "tie": Outcome.TIE}
    verdict_of = {j.label: [{pair: code[str(v.outcome)] for pair, v in zip(
        everything[q], judged[j.label][q], strict=True)} for q in range(count)] for j in judges}
    cal = calibration_questions(b"bench swarm quality", count=CALIBRATION_COUNT)
    cal_right = {j.label: sum(grade_answer(c, a.text) for c, a in zip(
        cal, j.answer_many([c.prompt for c in cal]), strict=True)) for j in judges}
    reputations = {
        "equal": {j.label: 1000 for j in judges},
        "calibration": {j.label: cal_right[j.label] for j in judges},
        "doubling": {j.label: 2 ** i for i, j in enumerate(judges)},
    }
    model_seconds = time.perf_counter() - started

    right = [[is_correct(questions[q], t) for t in candidates[q]] for q in range(count)]
    values = [[extract_integer(t) for t in candidates[q]] for q in range(count)]
    per_node = {label: sum(right[q][i] for q in range(count)) / count
                for i, label in enumerate(labels)}
    best_label = max(per_node, key=lambda k: per_node[k])
    majority = sum(_majority(candidates[q]) == questions[q].answer for q in range(count)) / count
    oracle = sum(any(r) for r in right) / count

    def swarm_accuracy(reps: dict[str, int], adversarial: bool,
                       pairs: list[list[tuple[int, int]]]) -> float:
        weights = {_node_id(label): reps[label] + 1 for label in reps}
        honest_total = sum(weights.values())
        adv_total = -(-honest_total * ADVERSARY_SHARE[0] // (ADVERSARY_SHARE[1]
                                                           - ADVERSARY_SHARE[0]))
        adv_ids = [_node_id(f"adversary {k}") for k in range(ADVERSARIES)]
        own = {_node_id(j.label): labels.index(j.label) for j in judges}
        hits = 0
        for q in range(count):
            verdicts = {_node_id(j.label): bytes(verdict_of[j.label][q][pair]
                                                 for pair in pairs[q]) for j in judges}
            w = dict(weights)
            if adversarial:
                bad = _adversary_verdicts(pairs[q], right[q], values[q])
                for k, node in enumerate(adv_ids):
                    verdicts[node] = bad
                    w[node] = adv_total // ADVERSARIES + (k < adv_total % ADVERSARIES)
            fit, _ = aggregate(n=n, pairs=pairs[q], verdicts=verdicts, weights=w,
                               own_answer=own)
            hits += right[q][fit.ranking()[0]]
        return hits / count

    rows = []
    for (schedule, pairs), (name, reps) in itertools.product(schedules.items(),
                                                             reputations.items()):
        clean = swarm_accuracy(reps, False, pairs)
        attacked = swarm_accuracy(reps, True, pairs)
        rows.append({"pairs": schedule, "pairs_per_question": len(pairs[0]),
                     "reputation": name, "judge_reputation": reps, "swarm": clean,
                     "swarm_adversarial": attacked, "drop_pp": round(100 * (clean - attacked), 2),
                     "vs_majority_pp": round(100 * (clean - majority), 2),
                     "vs_best_node_pp": round(100 * (clean - per_node[best_label]), 2)})
    return {
        "questions": count, "answerers": labels, "judges": [j.label for j in judges],
        "adversary_weight_share": 0.3,
        "node_accuracy": per_node, "best_node": best_label,
        "best_node_accuracy": per_node[best_label], "majority_vote": majority,
        "oracle_any_right": oracle, "swarm": rows, "model_seconds": round(model_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--judges", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--questions", type=int, default=400,
                        help="fixed questions for the quality part (>= 200; 0 skips it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()

    rows = [aggregation_row(n, args.judges, args.repeat) for n in args.answers]
    load = os.getloadavg()[0]
    print(f"aggregation: median (min) of {args.repeat} runs; load average {load:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"{'answers':>7} {'judges':>6} {'comparisons':>11} {'aggregate ms':>16} "
          f"{'settle ms':>16} {'steps':>5}")
    for row in rows:
        agg = f"{row['aggregate_ms']:.2f} ({row['aggregate_min_ms']:.2f})"
        st = f"{row['settle_ms']:.2f} ({row['settle_min_ms']:.2f})"
        print(f"{row['answers']:>7} {row['judges']:>6} {row['comparisons']:>11} {agg:>16} "
              f"{st:>16} {row['newton_steps']:>5}")
    at64 = next((row for row in rows if row["answers"] == 64), None)
    if at64 is not None:
        verdict = "meets" if at64["aggregate_ms"] < GOAL_MS else "MISSES"
        print(f"64 answers: aggregation {at64['aggregate_ms']:.2f} ms, full settlement "
              f"{at64['settle_ms']:.2f} ms (medians; aggregation {verdict} the "
              f"{GOAL_MS:.0f} ms goal)")
    quality = quality_rows(args.questions) if args.questions else None
    if quality is not None:
        print(f"\nquality: {quality['questions']} fixed questions, {len(quality['answerers'])} "
              f"answerers ({', '.join(quality['answerers'])}), judges "
              f"{', '.join(quality['judges'])}; models took {quality['model_seconds']} s")
        nodes = quality["node_accuracy"]
        print("node accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in nodes.items()))
        print(f"best single node ({quality['best_node']}) {quality['best_node_accuracy']:.4f}; "
              f"majority vote {quality['majority_vote']:.4f}; "
              f"oracle (some answer right) {quality['oracle_any_right']:.4f}")
        print(f"{'pairs':>9} {'n':>3} {'judge reputation':>17} {'swarm':>7} {'30% adv':>7} "
              f"{'drop pp':>7} {'vs maj pp':>9} {'vs best pp':>10}")
        for row in quality["swarm"]:
            print(f"{row['pairs']:>9} {row['pairs_per_question']:>3} {row['reputation']:>17} "
                  f"{row['swarm']:7.4f} {row['swarm_adversarial']:7.4f} "
                  f"{row['drop_pp']:7.2f} {row['vs_majority_pp']:9.2f} "
                  f"{row['vs_best_node_pp']:10.2f}")
    if args.json:
        print(json.dumps({
            "aggregation": rows,
            "aggregation_64_ms": None if at64 is None else at64["aggregate_ms"],
            "aggregation_64_settle_ms": None if at64 is None else at64["settle_ms"],
            "goal_ms": GOAL_MS,
            "load_average": round(load, 2),
            "quality": quality,
        }))


if __name__ == "__main__":
    main()
