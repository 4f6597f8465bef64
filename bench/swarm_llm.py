"""Swarm bench with the real language model (SmolLM2-135M-Instruct, int8): task accuracy.

On the shipped question set's ``bench`` split (225 short checkable questions,
`swarm.questions`, graded by `is_correct`), the accuracy of:

- one node, greedy;
- each sampled answerer alone: ``--answerers`` nodes (default 5) with distinct seeds (drawn
  from (question, node)) and temperatures (`TEMPERATURES`, top_p 0.95); every node's
  answers to ``--batch`` questions are generated in one batch (per-row seed and
  temperature);
- majority vote over the sampled answers, answers normalised for voting (`vote_key`: the
  final number, yes/no, or the answer's own words less the question's and filler words;
  a tie goes to the value stated first);
- the swarm's chosen answer: each question is a round with the sampled answerers, every one
  of them also a judge (likelihood judging, `SmolLM2Backend.judge_many`: pmi verdicts on
  every ordered pair of distinct answers and the pmi GOOD/BAD screen, one batched pass),
  settled by the real `swarm.settlement.settle` on signed commitments and openings with
  `bench/swarm_quality.py`'s machinery (`QualityInputs`, `quality_run`);
- the swarm with adversarial judges holding 30% of the judge weight (two judges pushing the
  most common wrong answer, as in `bench/swarm_quality.py`): static equal reputations (the
  worst case, reputation never catches them) and evolving reputations (each settlement's
  reputations feed the next round).

Every honest judge runs the same weights, so their verdicts coincide (computed once).

    nice -n 10 python bench/swarm_llm.py [--questions 225] [--answerers 5]
                                         [--max-tokens 40] [--batch 32] [--float] [--json]

Prints a table, then (with --json) one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from collections import Counter
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
from swarm.questions import (
    Question,
    final_number,
    is_correct,
    load_questions,
    normalize,
    yes_or_no,
)
from swarm.runtime.base import Outcome as JudgeOutcome
from swarm.runtime.llm.backend import (
    SCREEN_BAD_PMI,
    SCREEN_GOOD_PMI,
    SmolLM2Backend,
    judgment_from_scores,
)
from swarm.runtime.llm.cache import default_cache_dir
from swarm.runtime.llm.engine import LlamaEngine, load_engine
from tests.framework.roundkit import make_request, seed

#: the sampled answerers' temperatures, node i takes TEMPERATURES[i % len]
TEMPERATURES = (0.3, 0.5, 0.7, 0.5, 0.3)
TOP_P = 0.95
#: words that carry no answer (dropped from text answers before voting)
FILLER = frozenset(
    "a an the is are was were be it its this that of in on at to for and or as by with "
    "answer correct called known named spelled spelt word words letter letters yes no "
    "i think so".split())
EMPTY = "(no answer)"  # an empty generation, so every answer commits to some bytes


def vote_key(question: Question, text: str) -> Hashable | None:
    """What an answer says, for voting: the number it commits to, yes/no, or (text
    questions) the set of its first sentence's words less the question's and filler words;
    None when it says nothing."""
    if question.kind == "number":
        return final_number(text, question.question)
    if question.kind == "yesno":
        return yes_or_no(text)
    first = text.split(". ")[0]
    asked = set(normalize(question.question).split())
    words = frozenset(w for w in normalize(first).split() if w not in asked | FILLER)
    return words or None


def majority_pick(keys: Sequence[Hashable | None]) -> int | None:
    """Index of the first answer holding the most frequent key (ties: stated first)."""
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(i for i, k in enumerate(keys) if k is not None and counts[k] == top)


def _seed(question: Question, node: int) -> int:
    """Node ``node``'s sampling seed for ``question`` (node 0 is the greedy node)."""
    return zlib.crc32(f"{question.id}/{node}".encode())


def _chunks(n: int, size: int) -> list[range]:
    return [range(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _answers(engine: LlamaEngine, questions: Sequence[Question],
             temperatures: Sequence[float], max_tokens: int, batch: int) -> list[list[str]]:
    """Every node's answers (node i at temperatures[i], 0 greedy), per node: the nodes'
    rows of ``batch`` questions share one batched `generate` (per-row seed and
    temperature), as the answerers of the round's questions would in parallel."""
    texts: list[list[str]] = [[] for _ in temperatures]
    for part in _chunks(len(questions), batch):
        qs = [questions[i] for i in part]
        ids = [engine.chat_ids([{"role": "user", "content": q.question}]) for q in qs]
        gens = engine.generate(
            [p for _node in temperatures for p in ids], max_tokens=max_tokens,
            temperature=[t for t in temperatures for _q in qs], top_p=TOP_P,
            seed=[_seed(q, node) for node in range(len(temperatures)) for q in qs])
        for node in range(len(temperatures)):
            texts[node] += [g.text.strip() or EMPTY
                            for g in gens[node * len(qs):(node + 1) * len(qs)]]
        print(f"  {len(texts[0])}/{len(questions)} questions answered by "
              f"{len(temperatures)} nodes", file=sys.stderr, flush=True)
    return texts


def _judging(judge: SmolLM2Backend, questions: Sequence[Question],
             distinct: Sequence[Sequence[str]], batch: int) -> tuple[
        list[dict[tuple[str, str], Outcome]], list[dict[str, bool | None]]]:
    """pmi verdicts on every ordered pair of distinct answers and screen marks, per question
    (batched: every distinct answer of ``batch`` questions scored in one pass)."""
    code = {JudgeOutcome.A: Outcome.FIRST_WINS, JudgeOutcome.B: Outcome.SECOND_WINS,
            JudgeOutcome.TIE: Outcome.TIE}
    verdicts: list[dict[tuple[str, str], Outcome]] = []
    screens: list[dict[str, bool | None]] = []
    for part in _chunks(len(questions), batch):
        items = [(questions[i].question, t) for i in part for t in distinct[i]]
        scores = iter(judge.answer_scores(items))
        for i in part:
            score = {t: next(scores) for t in distinct[i]}
            triples = [(questions[i].question, a, b) for a in distinct[i] for b in distinct[i]
                       if a != b]
            judged = [judgment_from_scores(score[a], score[b]).outcome for _q, a, b in triples]
            verdicts.append({(a, b): code[j] for (_q, a, b), j in zip(
                triples, judged, strict=True)})
            screens.append({t: True if score[t] >= SCREEN_GOOD_PMI else False
                            if score[t] < SCREEN_BAD_PMI else None for t in distinct[i]})
    return verdicts, screens


def collect_inputs(questions: Sequence[Question], *, answerers: int, max_tokens: int,
                   batch: int, int8: bool, cache_dir: Path) -> tuple[QualityInputs, list[str],
                                                                    dict[str, float]]:
    """Run the model once: greedy answers, sampled answers, judging. (the swarm's inputs,
    the greedy answers, seconds per phase)"""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    engine = load_engine(cache_dir=cache_dir, int8=int8)
    seconds["load"] = time.perf_counter() - started
    greedy = SmolLM2Backend(engine, temperature=0.0)
    started = time.perf_counter()
    temps = [0.0] + [TEMPERATURES[i % len(TEMPERATURES)] for i in range(answerers)]
    greedy_texts, *sampled = _answers(engine, questions, temps, max_tokens, batch)
    seconds["answers"] = time.perf_counter() - started
    labels = [f"t{t:g}#{i}" for i, t in enumerate(temps[1:])]
    candidates = [[sampled[a][q] for a in range(answerers)] for q in range(len(questions))]
    distinct = [sorted(set(c)) for c in candidates]
    started = time.perf_counter()
    verdicts, screens = _judging(greedy, questions, distinct, batch)
    seconds["judging"] = time.perf_counter() - started
    inputs = QualityInputs(
        questions=list(questions), labels=labels, judges=labels, candidates=candidates,
        right=[[is_correct(q, t) for t in c] for q, c in zip(questions, candidates,
                                                            strict=True)],
        values=[[vote_key(q, t) for t in c] for q, c in zip(questions, candidates,
                                                           strict=True)],
        verdict_of=dict.fromkeys(labels, verdicts), screen_of=dict.fromkeys(labels, screens),
        cal_right={}, seeds={label: seed(f"llm node {label}") for label in labels},
        adversary_seeds=[seed(f"llm adversary {k}") for k in range(ADVERSARIES)],
        requests=[make_request(seed("llm client"), fee=QUALITY_FEE, answers=answerers,
                               judges=answerers + ADVERSARIES, nonce=q)
                  for q in range(len(questions))],
        model_seconds=sum(seconds.values()))
    return inputs, greedy_texts, seconds


def accuracy_rows(inputs: QualityInputs, greedy_texts: Sequence[str]) -> dict[str, Any]:
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
    rows = {
        "one node greedy": greedy,
        "sampled node (mean)": sum(per_node.values()) / len(per_node),
        "majority vote": majority,
        "swarm": swarm,
        "swarm, 30% adversarial judges": swarm_adv,
        "swarm evolving reputation": evolving,
        "swarm evolving, 30% adversarial": evolving_adv,
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
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    questions = list(load_questions("bench")[: args.questions])
    inputs, greedy_texts, seconds = collect_inputs(
        questions, answerers=args.answerers, max_tokens=args.max_tokens, batch=args.batch,
        int8=not args.float, cache_dir=args.cache_dir)
    started = time.perf_counter()
    result = accuracy_rows(inputs, greedy_texts)
    seconds["settlement"] = time.perf_counter() - started
    load = os.getloadavg()
    print(f"swarm_llm: {result['questions']} questions (bench split), "
          f"{'float' if args.float else 'int8'}, max_tokens {args.max_tokens}; answerers "
          f"{', '.join(result['answerers'])}; load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'method':<34} {'accuracy':>8}")
    for name, acc in result["accuracy"].items():
        print(f"{name:<34} {acc:8.4f}")
    print("per sampled node: " + ", ".join(
        f"{k} {v:.4f}" for k, v in result["node_accuracy"].items()))
    print(f"best of greedy / majority / swarm: {result['winner']}; seconds: " + ", ".join(
        f"{k} {v:.1f}" for k, v in seconds.items()))
    if args.json:
        print(json.dumps(result | {"seconds": {k: round(v, 2) for k, v in seconds.items()},
                                   "int8": not args.float, "max_tokens": args.max_tokens,
                                   "load_average": [round(x, 2) for x in load]}))


if __name__ == "__main__":
    main()
