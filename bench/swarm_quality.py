"""Swarm bench: aggregation time (Bradley-Terry fit and full settlement) and answer quality.

Aggregation: a round of n answers and J judges on the real schedule (about 3n ordered pairs
per judge), judges voting by hidden answer quality with 15% noise; timed are
`swarm.settlement.aggregate` (per-pair weighted verdicts, Bradley-Terry fit, judges'
agreement) and the whole `swarm.settlement.settle` (plus signature checks, openings,
payouts, reputation), median and min of ``--repeat`` runs. Goal: 64 answers < 50 ms.

Quality (`quality_rows`): on ``--questions`` (default 400) fixed questions of the built-in
task, 8 answerers (the 4 shipped variants x 2 answer forms) and the 4 variants as judges
(likelihood verdicts on the round's ring+chord pairs and the likelihood GOOD/BAD screen),
every question settled by the real `swarm.settlement.settle` on signed messages: the
swarm's pick vs majority vote vs the best single node, for static judge reputations (equal,
calibration score, 1:2:4:8) and for reputations that evolve by the settlements themselves,
with and without adversarial judges holding 30% of the judge weight (at the start, for the
evolving run) who push the most common wrong answer. Measured 2026-12-05 (after issue 11: one
pass, relative screen tier, one fit of pairs + screen; docs/swarm.md §5.2a), 200 questions,
load 12-18: swarm 0.945 / 0.96 / 0.96 static (equal / calibration / 1:2:4:8), 0.96 evolving;
with adversaries 0.75 / 0.84 / 0.865 static, 0.95 evolving. Earlier figures (400 questions,
2026-12-02, the two-pass rule) are in docs/swarm.md §10.

    python bench/swarm_quality.py [--answers 8 16 32 64] [--judges 16] [--repeat 7]
                                  [--questions 400] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.tx import public_key
from swarm.bradley_terry import Outcome
from swarm.calibration import calibration_questions, grade_answer
from swarm.messages import SwarmRequest
from swarm.runtime.builtin import BuiltinBackend
from swarm.runtime.evaluate import (
    collect_answers,
    collect_judgments,
    fixed_questions,
    is_correct,
    swarm_backends,
)
from swarm.schedule import judging_pairs
from swarm.settlement import SCREEN_BAD, SCREEN_GOOD, SCREEN_NONE, aggregate, settle
from swarm.tasks import Question, extract_integer
from tests.framework.roundkit import Round, Screen, Verdict, build_round, make_request, seed

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
    fit = aggregate(n=n, pairs=pairs, verdicts=verdicts, weights=weights).fit
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
QUALITY_FEE = 10**6
QUALITY_STAKE = 10**9
START_REPUTATION = 1000  # every judge's reputation when the evolving runs start


def _majority(texts: list[str]) -> int | None:
    """Most frequent extracted integer; a tie goes to the value stated first (candidate
    order: worst variant first, so ties are not resolved in the swarm's favour)."""
    values = [extract_integer(t) for t in texts]
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(v for v in values if v is not None and counts[v] == top)


def _adversary_target(values: list[Any], right: list[bool]) -> object:
    """The wrong value the adversaries push: the most frequent wrong one (the strongest)."""
    wrong = Counter(v for v, ok in zip(values, right, strict=True) if not ok)
    return wrong.most_common(1)[0][0] if wrong else object()


@dataclasses.dataclass(frozen=True)
class QualityInputs:
    """What the models say about the fixed questions, computed once before any round: every
    reputation scheme then settles rounds over the same candidates, verdicts and screens."""

    questions: list[Any]  # graded once, into ``right``
    labels: list[str]  # answerers, worst variant first
    judges: list[str]  # the form-0 answerers, who also judge
    candidates: list[list[str]]  # per question, each answerer's text (in ``labels`` order)
    right: list[list[bool]]  # aligned with candidates
    values: list[list[Any]]  # aligned with candidates: what each text states (None: nothing)
    verdict_of: dict[str, list[dict[tuple[str, str], Outcome]]]  # judge -> q -> (a, b)
    screen_of: dict[str, list[dict[str, bool | None]]]  # judge -> q -> text -> GOOD?
    cal_right: dict[str, int]  # judge -> right answers of the calibration questions
    seeds: dict[str, bytes]  # answerer -> signing seed
    adversary_seeds: list[bytes]
    requests: list[SwarmRequest]  # per question
    model_seconds: float

    @property
    def count(self) -> int:
        """How many questions (rounds per run)."""
        return len(self.questions)

    @property
    def judge_node(self) -> dict[bytes, str]:
        """Judge node id -> label."""
        return {public_key(self.seeds[label]): label for label in self.judges}

    def node_ids(self, reputations: dict[str, int]) -> dict[bytes, int]:
        """Reputations by label -> by node id."""
        return {public_key(self.seeds[label]): r for label, r in reputations.items()}


def _judge_marks(questions: list[Question], distinct: list[list[str]],
                 judges: list[BuiltinBackend]) -> tuple[
        dict[str, list[dict[tuple[str, str], Outcome]]], dict[str, list[dict[str, bool | None]]]]:
    """Every judge compares every ordered pair of distinct texts once and screens every text:
    (verdicts, screen marks), per judge, per question."""
    everything = [[(a, b) for a in range(len(d)) for b in range(len(d)) if a != b]
                  for d in distinct]
    judged = collect_judgments(questions, distinct, everything, judges)
    screened = {j.label: j.screen_many([(q.prompt, t) for q, d in zip(
        questions, distinct, strict=True) for t in d]) for j in judges}
    code = {"A": Outcome.FIRST_WINS, "B": Outcome.SECOND_WINS, "tie": Outcome.TIE}
    verdict_of = {j.label: [{(d[a], d[b]): code[str(v.outcome)] for (a, b), v in zip(
        pairs, verdicts, strict=True)} for d, pairs, verdicts in zip(
        distinct, everything, judged[j.label], strict=True)] for j in judges}
    screen_of: dict[str, list[dict[str, bool | None]]] = {}
    for j in judges:
        marks = iter(screened[j.label])
        screen_of[j.label] = [{t: next(marks) for t in d} for d in distinct]
    return verdict_of, screen_of


def collect_quality_inputs(count: int) -> QualityInputs:
    """Run the models once: answers, judgments, screens and calibration (see quality_rows)."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    questions = fixed_questions(count)
    backends = swarm_backends()
    answers = collect_answers(questions, backends)
    labels = list(answers)
    judges = [b for b in backends if b.answer_form == 0]
    candidates = [[answers[label][q].text for label in labels] for q in range(count)]
    requests = [make_request(seed("quality client"), fee=QUALITY_FEE, answers=len(labels),
                             judges=len(judges) + ADVERSARIES, nonce=q) for q in range(count)]
    verdict_of, screen_of = _judge_marks(questions, [sorted(set(c)) for c in candidates],
                                         judges)
    cal = calibration_questions(b"bench swarm quality", count=CALIBRATION_COUNT)
    cal_right = {j.label: sum(grade_answer(c, a.text) for c, a in zip(
        cal, j.answer_many([c.prompt for c in cal]), strict=True)) for j in judges}
    return QualityInputs(
        questions=questions, labels=labels, judges=[j.label for j in judges],
        candidates=candidates,
        right=[[is_correct(q, t) for t in texts] for q, texts in zip(
            questions, candidates, strict=True)],
        values=[[extract_integer(t) for t in texts] for texts in candidates],
        verdict_of=verdict_of, screen_of=screen_of, cal_right=cal_right,
        seeds={label: seed(f"quality node {label}") for label in labels},
        adversary_seeds=[seed(f"quality adversary {k}") for k in range(ADVERSARIES)],
        requests=requests, model_seconds=time.perf_counter() - started)


def _honest_judge(inputs: QualityInputs, label: str, q: int) -> tuple[Verdict, Screen]:
    """A judge's recorded likelihood verdicts and screen marks on question ``q``."""
    verdicts, marks = inputs.verdict_of[label][q], inputs.screen_of[label][q]

    def verdict(_s: bytes, a: bytes, b: bytes) -> Outcome:
        return Outcome.TIE if a == b else verdicts[(a.decode(), b.decode())]

    def screen(_s: bytes, text: bytes) -> int:
        mark = marks[text.decode()]
        return SCREEN_NONE if mark is None else SCREEN_GOOD if mark else SCREEN_BAD

    return verdict, screen


def _adversary_judge(inputs: QualityInputs, q: int) -> tuple[Verdict, Screen]:
    """The adversaries on question ``q``: the most common wrong answer first and good, then
    every other wrong answer, then the right ones (bad)."""
    good = {t for t, ok in zip(inputs.candidates[q], inputs.right[q], strict=True) if ok}
    target = _adversary_target(inputs.values[q], inputs.right[q])
    value = dict(zip(inputs.candidates[q], inputs.values[q], strict=True))

    def push(text: bytes) -> int:  # the adversaries' order: target, other wrong, right
        t = text.decode()
        return 2 if value[t] == target else 0 if t in good else 1

    def verdict(_s: bytes, a: bytes, b: bytes) -> Outcome:
        pa, pb = push(a), push(b)
        return (Outcome.TIE if pa == pb else Outcome.FIRST_WINS if pa > pb
                else Outcome.SECOND_WINS)

    def screen(_s: bytes, text: bytes) -> int:
        return SCREEN_GOOD if push(text) == 2 else SCREEN_BAD

    return verdict, screen


def quality_round(inputs: QualityInputs, q: int, adversarial: bool) -> Round:
    """Question ``q``'s round, signed: every answerer, the honest judges, and the
    adversaries when ``adversarial``."""
    judging = {inputs.seeds[label]: _honest_judge(inputs, label, q) for label in inputs.judges}
    if adversarial:
        judging |= dict.fromkeys(inputs.adversary_seeds, _adversary_judge(inputs, q))

    def verdict(s: bytes, a: bytes, b: bytes) -> Outcome:
        return judging[s][0](s, a, b)

    def screen(s: bytes, text: bytes) -> int:
        return judging[s][1](s, text)

    return build_round(request=inputs.requests[q],
                       answers=[(inputs.seeds[label], t.encode()) for label, t in zip(
                           inputs.labels, inputs.candidates[q], strict=True)],
                       judges=[(s, verdict) for s in judging], screen=screen)


def _adversary_reputation(inputs: QualityInputs, honest: dict[bytes, int]) -> int:
    """Each adversary's reputation so that together they hold 30% of the judge weight
    (reputations are in the thousands, so rounding moves the share by < 0.1%)."""
    judge_node = inputs.judge_node
    total = sum(r + 1 for node, r in honest.items() if node in judge_node)
    share = total * ADVERSARY_SHARE[0] // (ADVERSARY_SHARE[1] - ADVERSARY_SHARE[0])
    return max(0, share // ADVERSARIES - 1)


def quality_run(inputs: QualityInputs, start: dict[bytes, int], *, adversarial: bool,
                evolve: bool) -> tuple[float, dict[str, int]]:
    """(accuracy of the swarm's top answer, the judges' final reputations by label), every
    question settled by `settle`; ``evolve`` feeds each round's reputations to the next."""
    reputations = dict(start)
    adversaries = [public_key(s) for s in inputs.adversary_seeds]
    if adversarial:
        reputations |= dict.fromkeys(adversaries, _adversary_reputation(inputs, start))
    hits = 0
    for q in range(inputs.count):
        r = quality_round(inputs, q, adversarial)
        stakes = dict.fromkeys(r.answerers + r.judges, QUALITY_STAKE)
        result = settle(request=r.request, answerers=r.answerers, judges=r.judges,
                        commitments=r.commitments, answer_openings=r.answer_openings,
                        judgment_openings=r.judgment_openings,
                        reputations=reputations, stakes=stakes)
        top = result.outcome.ranking[0]
        hits += dict(zip(inputs.candidates[q], inputs.right[q], strict=True))[
            r.answer_text[top].decode()]
        if evolve:
            reputations |= {u.node: u.score for u in result.outcome.reputations}
    judge_node = inputs.judge_node
    final = {judge_node.get(node, "adversary"): score for node, score in reputations.items()
             if node in judge_node or node in adversaries}
    return hits / inputs.count, final


def swarm_rows(inputs: QualityInputs) -> list[dict[str, Any]]:
    """The swarm's accuracy, clean and attacked, per judge reputation scheme."""
    # answerers hold reputation too (it does not weigh judging, only selection)
    static = {
        "equal": dict.fromkeys(inputs.judges, 1000),
        "calibration": {label: 1000 * inputs.cal_right[label] for label in inputs.judges},
        "doubling": {label: 1000 * 2 ** i for i, label in enumerate(inputs.judges)},
    }
    rows: list[dict[str, Any]] = []
    for name, reps in static.items():
        clean, _ = quality_run(inputs, inputs.node_ids(reps), adversarial=False, evolve=False)
        attacked, _ = quality_run(inputs, inputs.node_ids(reps), adversarial=True,
                                  evolve=False)
        rows.append({"reputation": name, "judge_reputation": reps, "swarm": clean,
                     "swarm_adversarial": attacked})
    everyone = inputs.node_ids(dict.fromkeys(inputs.labels, START_REPUTATION))
    clean, learned = quality_run(inputs, everyone, adversarial=False, evolve=True)
    attacked, learned_adv = quality_run(inputs, everyone, adversarial=True, evolve=True)
    rows.append({"reputation": "evolving", "judge_reputation": {
        "start": START_REPUTATION, "end": learned, "end_adversarial": learned_adv},
        "swarm": clean, "swarm_adversarial": attacked})
    return rows


def quality_rows(count: int) -> dict[str, Any]:
    """Swarm vs majority vote vs the best single node on ``count`` fixed questions of the
    built-in task, every round settled by the real `swarm.settlement.settle` on signed
    commitments and openings (the schedule, screen tiers, fit and ranking validators
    recompute), with and without adversarial judges.

    Fixed before measuring: questions `fixed_questions(count)`; answerers `swarm_backends()`
    (4 variants x 2 answer forms = 8 answers per question, worst variant first); judges the
    4 variants (the form-0 answerer nodes: they neither compare nor screen their own
    answer), likelihood verdicts on the round's ring+chord pairs and the likelihood screen
    (`BuiltinBackend.screen_many`); adversaries: 2 judges who call the most common wrong
    answer good and better than everything, every other wrong answer better than every
    right one, and every right answer bad. Reputations:
    * static (never updated): equal; calibration score (right answers of 64 calibration
      questions, x1000); doubling by variant (1:2:4:8 x1000, xs to l). Adversaries hold 30% of the
      judge weight in every round: the worst case, reputation never catches them.
    * evolving: every judge starts at the same reputation (adversaries with 30% of the
      weight), and each settlement's new reputations feed the next round, question by
      question; accuracy counts every round, the first ones included.
    """
    inputs = collect_quality_inputs(count)
    questions, candidates = inputs.questions, inputs.candidates
    per_node = {label: sum(right[i] for right in inputs.right) / count
                for i, label in enumerate(inputs.labels)}
    best_label = max(per_node, key=lambda k: per_node[k])
    majority = sum(_majority(texts) == q.answer
                   for q, texts in zip(questions, candidates, strict=True)) / count
    rows = swarm_rows(inputs)
    for row in rows:
        row |= {"drop_pp": round(100 * (row["swarm"] - row["swarm_adversarial"]), 2),
                "vs_majority_pp": round(100 * (row["swarm"] - majority), 2),
                "vs_best_node_pp": round(100 * (row["swarm"] - per_node[best_label]), 2)}
    return {
        "questions": count, "answerers": inputs.labels, "judges": inputs.judges,
        "adversary_weight_share": 0.3,
        "pairs_per_judge": len(judging_pairs(bytes(32), len(inputs.labels))),
        "node_accuracy": per_node, "best_node": best_label,
        "best_node_accuracy": per_node[best_label], "majority_vote": majority,
        "oracle_any_right": sum(any(r) for r in inputs.right) / count, "swarm": rows,
        "model_seconds": round(inputs.model_seconds, 1),
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
        print(f"{'judge reputation':>17} {'swarm':>7} {'30% adv':>7} "
              f"{'drop pp':>7} {'vs maj pp':>9} {'vs best pp':>10}")
        for row in quality["swarm"]:
            print(f"{row['reputation']:>17} "
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
