"""Answers and judgments of the built-in variants on a fixed question set, in batches.

The swarm-quality bench (bench/swarm_quality.py) calls this to get every variant's answers
and pairwise likelihood judgments without going through a network; the question set, the
variants and the judging rule are fixed here before anything is measured.

Measured on the 400 fixed questions with `swarm_backends()` (4 variants x 2 answer forms =
8 answerers) and the 4 variants judging over 8 phrasings, all ordered pairs, Copeland
count: best single 0.925, majority vote 0.8925, oracle (any answer right) 0.975; arith-l
judging alone picks 0.9625, judges weighted 1:2:4:8 (xs..l) 0.955, unweighted 0.8225.

Usage: python -m swarm.runtime.evaluate [--count N]   (prints each variant's accuracy)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence

import torch

from swarm.runtime.base import Answer, Judgment
from swarm.runtime.builtin import VARIANT_NAMES, BuiltinBackend, load_variants
from swarm.runtime.mined import MatmulHook
from swarm.tasks import EVAL_SEED, Question, extract_integer, question_set

#: Size of the fixed evaluation set (the bench uses at least 200 questions).
DEFAULT_COUNT = 400


def fixed_questions(count: int = DEFAULT_COUNT) -> list[Question]:
    """The fixed evaluation questions (never seen in training: train.py holds them out)."""
    return question_set(EVAL_SEED, count)


def is_correct(question: Question, text: str) -> bool:
    """An answer is right iff the last integer it states is the exact value."""
    return extract_integer(text) == question.answer


def swarm_backends(*, forms_per_variant: int = 2, names: Sequence[str] = VARIANT_NAMES,
                   matmul_hook: MatmulHook | None = None) -> list[BuiltinBackend]:
    """A heterogeneous local swarm: every variant once per answer form (0, 1, ...).

    Nodes with the same weights but different forms answer independently, so the swarm's
    candidates contain the right answer more often than any one node gives it.
    """
    return [BuiltinBackend.load(n, matmul_hook=matmul_hook, answer_form=f)
            for n in names for f in range(forms_per_variant)]


def collect_answers(questions: Sequence[Question],
                    backends: Sequence[BuiltinBackend] | None = None, *,
                    matmul_hook: MatmulHook | None = None) -> dict[str, list[Answer]]:
    """Each backend's answer to each question, keyed by its label (variant name, plus
    "#form" for answer forms other than 0), in the order given (default: the variants,
    worst to best)."""
    backends = list(backends) if backends is not None else load_variants(
        matmul_hook=matmul_hook)
    prompts = [q.prompt for q in questions]
    return {b.label: b.answer_many(prompts) for b in backends}


def accuracy(questions: Sequence[Question], answers: Sequence[Answer | str]) -> float:
    """Share of questions answered correctly."""
    if not questions:
        return 0.0
    texts = [a if isinstance(a, str) else a.text for a in answers]
    return sum(is_correct(q, t) for q, t in zip(questions, texts, strict=True)) / len(questions)


def collect_judgments(
    questions: Sequence[Question],
    candidates: Sequence[Sequence[str]],
    pairs: Sequence[Sequence[tuple[int, int]]],
    judges: Sequence[BuiltinBackend],
) -> dict[str, list[list[Judgment]]]:
    """Each judge's verdict on each scheduled pair of candidate answers, per question.

    `candidates[q]` are the answer texts of question q; `pairs[q]` the ordered (first,
    second) index pairs to judge (e.g. swarm.schedule.judging_pairs). Returns, per judge
    label, per question, one Judgment per pair in order ("A" means the first answer wins;
    swarm.bradley_terry reads A, B, tie as FIRST_WINS, SECOND_WINS, TIE).
    All comparisons of one judge run as one batch.
    """
    items: list[tuple[str, str, str]] = []
    bounds: list[tuple[int, int]] = []
    for q, cands, qpairs in zip(questions, candidates, pairs, strict=True):
        start = len(items)
        items.extend((q.prompt, cands[i], cands[j]) for i, j in qpairs)
        bounds.append((start, len(items)))
    out: dict[str, list[list[Judgment]]] = {}
    for judge in judges:
        flat = judge.judge_many(items)
        out[judge.label] = [flat[lo:hi] for lo, hi in bounds]
    return out


def variant_accuracies(count: int = DEFAULT_COUNT) -> Mapping[str, float]:
    """Accuracy of each shipped variant on the fixed question set."""
    qs = fixed_questions(count)
    return {name: accuracy(qs, ans) for name, ans in collect_answers(qs).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny matmuls: more threads only spin on a loaded machine
    qs = fixed_questions(args.count)
    started = time.perf_counter()
    answers = collect_answers(qs)
    elapsed = time.perf_counter() - started
    families = sorted({q.family for q in qs})
    print(f"{'variant':10s} {'all':>6s} " + " ".join(f"{f:>7s}" for f in families))
    result: dict[str, dict[str, float]] = {}
    for name, ans in answers.items():
        row = {"all": accuracy(qs, ans)}
        for f in families:
            idx = [i for i, q in enumerate(qs) if q.family == f]
            row[f] = accuracy([qs[i] for i in idx], [ans[i] for i in idx])
        result[name] = row
        print(f"{name:10s} {row['all']:6.3f} " + " ".join(f"{row[f]:7.3f}" for f in families))
    print(f"answered {len(qs)} x {len(answers)} in {elapsed:.1f} s")
    print(json.dumps({"count": len(qs), "variants": list(VARIANT_NAMES), "accuracy": result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
