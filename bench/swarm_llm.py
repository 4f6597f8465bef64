"""Swarm bench with the real language model (SmolLM2-135M-Instruct, int8): task accuracy.

On the shipped question set's ``bench`` split (225 short checkable questions,
`swarm.questions`, graded by `is_correct`), the accuracy of:

- one node, greedy;
- each sampled answerer alone: ``--answerers`` nodes (default 5) with distinct seeds (drawn
  from (question, node)) and temperatures (`TEMPERATURES`, top_p 0.95); every node's
  answers to ``--batch`` questions are generated in one batch (per-row seed and
  temperature);
- majority vote over the sampled answers, answers normalised for voting
  (`swarm.runtime.llm.agreement.answer_key` with the question's kind: the final number,
  yes/no, or the answer's own words less the question's and filler words; a tie goes to
  the value stated first);
- the swarm's chosen answer: each question is a round with the sampled answerers, every one
  of them also a judge (`SmolLM2Backend.round_judgments`: verdicts on every ordered pair of
  distinct answers and the GOOD/BAD screen; an answer ranks by how many of the round's
  answers agree with it, the same normaliser with the kind read from the
  question, then by the model's mean log-likelihood; the model's scores of a batch of
  questions come from one batched pass), settled by the real `swarm.settlement.settle` on
  signed commitments and openings with `bench/swarm_quality.py`'s machinery
  (`QualityInputs`, `quality_run`);
- the swarm with adversarial judges holding 30% of the judge weight (two judges pushing the
  most common wrong answer, as in `bench/swarm_quality.py`): static equal reputations (the
  worst case, reputation never catches them) and evolving reputations (each settlement's
  reputations feed the next round);
- the swarm whose judges use the model's likelihood alone (they see no other answer), with
  and without the adversaries: what the agreement adds.

Judge k is answerer k: like a node, it sees every answer of the round, its own included (a
judge blind to its own answer would count a 3-2 majority as 2-2), and settle drops its
verdicts and marks on its own answer. ``--answers-cache FILE`` keeps the generated
answers; a run with the same settings reads them and only judges.

    nice -n 10 python bench/swarm_llm.py [--questions 225] [--answerers 5]
                                         [--max-tokens 40] [--batch 32] [--float]
                                         [--answers-cache FILE [--cached-only]] [--json]

Prints a table, then (with --json) one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import zlib
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.swarm_quality import (
    ADVERSARIES,
    QUALITY_FEE,
    START_REPUTATION,
    QualityInputs,
    quality_run,
)
from swarm.bradley_terry import Outcome
from swarm.questions import Question, is_correct, load_questions
from swarm.runtime.base import Judgment
from swarm.runtime.base import Outcome as JudgeOutcome
from swarm.runtime.llm.agreement import answer_key, majority_pick
from swarm.runtime.llm.backend import SmolLM2Backend
from swarm.runtime.llm.cache import default_cache_dir
from swarm.runtime.llm.engine import LlamaEngine, load_engine
from tests.framework.roundkit import make_request, seed

#: the sampled answerers' temperatures, node i takes TEMPERATURES[i % len]
TEMPERATURES = (0.3, 0.5, 0.7, 0.5, 0.3)
TOP_P = 0.95
EMPTY = "(no answer)"  # an empty generation, so every answer commits to some bytes


def vote_key(question: Question, text: str) -> Hashable | None:
    """What an answer says, for voting (`agreement.answer_key` with the question's kind)."""
    return answer_key(question.question, text, question.kind)


def _seed(question: Question, node: int) -> int:
    """Node ``node``'s sampling seed for ``question`` (node 0 is the greedy node)."""
    return zlib.crc32(f"{question.id}/{node}".encode())


def _chunks(n: int, size: int) -> list[range]:
    return [range(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _answers(engine: LlamaEngine, questions: Sequence[Question],
             temperatures: Sequence[float], max_tokens: int, batch: int,
             cache: Path | None = None) -> list[list[str]]:
    """Every node's answers (node i at temperatures[i], 0 greedy), per node: the nodes'
    rows of ``batch`` questions share one batched `generate` (per-row seed and
    temperature), as the answerers of the round's questions would in parallel.

    ``cache`` (a JSON file) keeps the answers, batch by batch, under the settings that
    made them (model id, int8, temperatures, top_p, max_tokens, seeds by question id): a
    later run with the same settings reads them instead of generating them again (the
    sampling is seeded, so it would generate the same), and only judges."""
    settings = {"model": engine.model_id.hex(), "int8": engine.int8,
                "temperatures": list(temperatures), "top_p": TOP_P, "max_tokens": max_tokens}
    stored: dict[str, list[str]] = {}
    if cache is not None and cache.exists():
        saved = json.loads(cache.read_text("utf-8"))
        stored = saved["answers"] if saved.get("settings") == settings else {}
    texts: list[list[str]] = [[] for _ in temperatures]
    for part in _chunks(len(questions), batch):
        qs = [questions[i] for i in part]
        if not all(q.id in stored for q in qs):
            ids = [engine.chat_ids([{"role": "user", "content": q.question}]) for q in qs]
            gens = engine.generate(
                [p for _node in temperatures for p in ids], max_tokens=max_tokens,
                temperature=[t for t in temperatures for _q in qs], top_p=TOP_P,
                seed=[_seed(q, node) for node in range(len(temperatures)) for q in qs])
            for j, q in enumerate(qs):
                stored[q.id] = [gens[node * len(qs) + j].text.strip() or EMPTY
                                for node in range(len(temperatures))]
            if cache is not None:
                cache.write_text(json.dumps({"settings": settings, "answers": stored}),
                                 "utf-8")
        for node in range(len(temperatures)):
            texts[node] += [stored[q.id][node] for q in qs]
        print(f"  {len(texts[0])}/{len(questions)} questions answered by "
              f"{len(temperatures)} nodes", file=sys.stderr, flush=True)
    return texts


Verdicts = list[dict[tuple[str, str], Outcome]]  # per question: (a, b) -> outcome
Screens = list[dict[str, bool | None]]  # per question: answer -> GOOD?
CODE = {JudgeOutcome.A: Outcome.FIRST_WINS, JudgeOutcome.B: Outcome.SECOND_WINS,
        JudgeOutcome.TIE: Outcome.TIE}


def _judging(judge: SmolLM2Backend, questions: Sequence[Question],
             candidates: Sequence[Sequence[str]], batch: int, *, agreement: bool = True
             ) -> tuple[list[Verdicts], list[Screens]]:
    """Each judge's verdicts on every ordered pair of distinct answers and its screen
    marks, per question. Judge k is answerer k and, as a node does, sees every answer of
    the round, its own included (`round_judgments` with ``seen`` = those; settle drops its
    verdicts and marks on its own answer); the model's scores of
    ``batch`` questions' distinct answers come from one batched pass (remembered, so a
    second call costs no pass). Without ``agreement`` the judges see no other answer: the
    likelihood alone ranks, and the screen passes every answer that says something."""
    judges = len(candidates[0]) if candidates else 0
    verdicts: list[Verdicts] = [[] for _ in range(judges)]
    screens: list[Screens] = [[] for _ in range(judges)]
    for part in _chunks(len(questions), batch):
        judge.answer_scores([(questions[i].question, t) for i in part
                             for t in sorted(set(candidates[i]))])  # the pass; remembered
        for i in part:
            q, distinct = questions[i].question, sorted(set(candidates[i]))
            ordered = [(a, b) for a in distinct for b in distinct if a != b]
            judged, marks = judge.round_judgments(q, ordered, distinct,
                                                  candidates[i] if agreement else [])
            for k in range(judges):  # every judge sees the same round: the same verdicts
                verdicts[k].append(_verdict_map(ordered, judged))
                screens[k].append(dict(zip(distinct, marks, strict=True)))
    return verdicts, screens


def _verdict_map(ordered: Sequence[tuple[str, str]], judged: Sequence[Judgment]
                 ) -> dict[tuple[str, str], Outcome]:
    return {pair: CODE[j.outcome] for pair, j in zip(ordered, judged, strict=True)}


def collect_inputs(questions: Sequence[Question], *, answerers: int, max_tokens: int,
                   batch: int, int8: bool, cache_dir: Path, answers_cache: Path | None = None
                   ) -> tuple[QualityInputs, QualityInputs, list[str], dict[str, float]]:
    """Run the model once: greedy answers, sampled answers, judging. (the swarm's inputs,
    the same with likelihood-only judges, the greedy answers, seconds per phase)"""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    engine = load_engine(cache_dir=cache_dir, int8=int8)
    seconds["load"] = time.perf_counter() - started
    greedy = SmolLM2Backend(engine, temperature=0.0)
    started = time.perf_counter()
    temps = [0.0] + [TEMPERATURES[i % len(TEMPERATURES)] for i in range(answerers)]
    greedy_texts, *sampled = _answers(engine, questions, temps, max_tokens, batch,
                                      answers_cache)
    seconds["answers"] = time.perf_counter() - started
    labels = [f"t{t:g}#{i}" for i, t in enumerate(temps[1:])]
    candidates = [[sampled[a][q] for a in range(answerers)] for q in range(len(questions))]
    started = time.perf_counter()
    verdicts, screens = _judging(greedy, questions, candidates, batch)
    seconds["judging"] = time.perf_counter() - started
    alone, alone_screens = _judging(greedy, questions, candidates, batch, agreement=False)
    inputs = QualityInputs(
        questions=list(questions), labels=labels, judges=labels, candidates=candidates,
        right=[[is_correct(q, t) for t in c] for q, c in zip(questions, candidates,
                                                            strict=True)],
        values=[[vote_key(q, t) for t in c] for q, c in zip(questions, candidates,
                                                           strict=True)],
        verdict_of=dict(zip(labels, verdicts, strict=True)),
        screen_of=dict(zip(labels, screens, strict=True)),
        cal_right={}, seeds={label: seed(f"llm node {label}") for label in labels},
        adversary_seeds=[seed(f"llm adversary {k}") for k in range(ADVERSARIES)],
        requests=[make_request(seed("llm client"), fee=QUALITY_FEE, answers=answerers,
                               judges=answerers + ADVERSARIES, nonce=q)
                  for q in range(len(questions))],
        model_seconds=sum(seconds.values()))
    likelihood_only = dataclasses.replace(
        inputs, verdict_of=dict(zip(labels, alone, strict=True)),
        screen_of=dict(zip(labels, alone_screens, strict=True)))
    return inputs, likelihood_only, greedy_texts, seconds


def accuracy_rows(inputs: QualityInputs, likelihood_only: QualityInputs,
                  greedy_texts: Sequence[str]) -> dict[str, Any]:
    """Every method's accuracy over the same questions (see the module docstring)."""
    count = inputs.count
    questions: list[Question] = inputs.questions
    greedy = sum(is_correct(q, t) for q, t in zip(questions, greedy_texts, strict=True)) / count
    per_node = {label: sum(r[i] for r in inputs.right) / count
                for i, label in enumerate(inputs.labels)}
    picks = [majority_pick(v) for v in inputs.values]
    majority = sum(p is not None and r[p] for p, r in zip(picks, inputs.right,
                                                          strict=True)) / count
    equal = inputs.node_ids(dict.fromkeys(inputs.labels, START_REPUTATION))
    swarm, _ = quality_run(inputs, equal, adversarial=False, evolve=False)
    swarm_adv, _ = quality_run(inputs, equal, adversarial=True, evolve=False)
    evolving, _ = quality_run(inputs, equal, adversarial=False, evolve=True)
    evolving_adv, learned = quality_run(inputs, equal, adversarial=True, evolve=True)
    alone, _ = quality_run(likelihood_only, equal, adversarial=False, evolve=False)
    alone_adv, _ = quality_run(likelihood_only, equal, adversarial=True, evolve=False)
    rows = {
        "one node greedy": greedy,
        "sampled node (mean)": sum(per_node.values()) / len(per_node),
        "majority vote": majority,
        "swarm": swarm,
        "swarm, 30% adversarial judges": swarm_adv,
        "swarm evolving reputation": evolving,
        "swarm evolving, 30% adversarial": evolving_adv,
        "swarm, likelihood-only judges": alone,
        "swarm, likelihood-only, 30% adversarial": alone_adv,
        "oracle (some answer right)": sum(any(r) for r in inputs.right) / count,
    }
    contenders = ("one node greedy", "majority vote", "swarm")
    return {"questions": count, "answerers": inputs.labels, "accuracy": rows,
            "node_accuracy": per_node,
            "winner": max(contenders, key=lambda k: (rows[k], -contenders.index(k))),
            "adversary_weight_share": 0.3, "evolving_end_reputation": learned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=225,
                        help="how many of the bench split's questions (first N)")
    parser.add_argument("--answerers", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32, help="questions per batched pass")
    parser.add_argument("--float", action="store_true", help="the float forward, not int8")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--answers-cache", type=Path, default=None,
                        help="JSON file keeping the generated answers (reused when the "
                             "settings match: the run then only judges)")
    parser.add_argument("--cached-only", action="store_true",
                        help="only the questions whose answers the cache holds (no generation)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    questions = list(load_questions("bench")[: args.questions])
    if args.cached_only:
        if args.answers_cache is None or not args.answers_cache.exists():
            parser.error("--cached-only needs an existing --answers-cache")
        cached = json.loads(args.answers_cache.read_text("utf-8"))["answers"]
        questions = [q for q in questions if q.id in cached]
        print(f"answers cache only: {len(questions)} of the first {args.questions} questions",
              file=sys.stderr)
    inputs, likelihood_only, greedy_texts, seconds = collect_inputs(
        questions, answerers=args.answerers, max_tokens=args.max_tokens, batch=args.batch,
        int8=not args.float, cache_dir=args.cache_dir, answers_cache=args.answers_cache)
    started = time.perf_counter()
    result = accuracy_rows(inputs, likelihood_only, greedy_texts)
    seconds["settlement"] = time.perf_counter() - started
    load = os.getloadavg()
    print(f"swarm_llm: {result['questions']} questions (bench split), "
          f"{'float' if args.float else 'int8'}, max_tokens {args.max_tokens}; answerers "
          f"{', '.join(result['answerers'])}; load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'method':<42} {'accuracy':>8}")
    for name, acc in result["accuracy"].items():
        print(f"{name:<42} {acc:8.4f}")
    print("per sampled node: " + ", ".join(
        f"{k} {v:.4f}" for k, v in result["node_accuracy"].items()))
    print(f"best of greedy / majority / swarm: {result['winner']}; seconds: " + ", ".join(
        f"{k} {v:.1f}" for k, v in seconds.items()))
    if args.json:
        print(json.dumps(result | {"seconds": {k: round(v, 2) for k, v in seconds.items()},
                                   "int8": not args.float, "max_tokens": args.max_tokens,
                                   "answers_cache": None if args.answers_cache is None
                                   else str(args.answers_cache),
                                   "cached_only": args.cached_only,
                                   "questions_asked": args.questions,
                                   "load_average": [round(x, 2) for x in load]}))


if __name__ == "__main__":
    main()
