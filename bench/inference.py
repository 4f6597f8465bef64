"""Inference bench (SmolLM2-135M-Instruct): generation speed and the swarm's answer latency.

Measured side by side in one run (the machine is shared and noisy: the variants are
interleaved, ``--repeat`` rounds of each, and the best run of each counts; the ratios also
come as the median of the per-round ratios):

- tokens/s of ``--tokens`` generated tokens (no early stop), batch ``--batch``, for our float
  forward, our int8 forward (exact W8A8, default product) and our int8 forward mined: every
  product through `swarm.runtime.builtin.mining_hook` over a real `pouw.MiningSession` on a
  realistic target (``MAX_TARGET >> --target-shift``: tickets are evaluated, wins are rare),
  plus the mined/unmined ratio;
- `transformers`' own greedy `generate` on the same GGUF as the reference (pyproject's
  `reference` extra, which make installs), interleaved with the rows above at the same
  prompt, length, batch and torch threads, and how its greedy continuation agrees with our
  float forward's (`bench/llm_reference_check.greedy_agreement`);
- the swarm's answer latency over one node's generation of the same length (goal <= 1.5x),
  a round simulated in-process. In a swarm each answerer is its own machine and they
  generate at the same time, so the round's critical path is the slowest answerer's
  generation (each of ``--answerers`` answers generated alone, batch 1, its own seed) plus
  one judge's pass (`SmolLM2Backend.round_judgments`: verdicts on every ordered pair of
  distinct answers and the screen from one scoring pass, the question's prompt run once
  and its KV cache shared, only the most supported answers scored) plus the real
  `swarm.settlement.settle` on signed commitments and openings. Also reported: the same
  round on one machine (the answers in one batch), and judging alone over one generation.
  Ratios: best round over best single run, and the median of the per-round ratios.

    nice -n 10 python bench/inference.py [--tokens 16] [--batch 1] [--repeat 3]
                                         [--answerers 5] [--no-mined] [--json]

Prints a table, then (with --json) one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.llm_reference_check import (
    Reference,
    greedy_agreement,
    load_reference,
    reference_generate,
    reference_installed,
    reference_status,
)
from pouw.mining import MiningSession
from pouw.params import MAX_TARGET
from swarm.bradley_terry import Outcome
from swarm.runtime.base import Outcome as JudgeOutcome
from swarm.runtime.builtin import mining_hook
from swarm.runtime.llm.backend import SmolLM2Backend
from swarm.runtime.llm.cache import default_cache_dir, load_model
from swarm.runtime.llm.engine import Generation, LlamaEngine
from swarm.runtime.llm.shipped import SHA256, shipped_gguf_path
from swarm.settlement import SCREEN_BAD, SCREEN_GOOD, SCREEN_NONE, settle
from tests.framework.roundkit import build_round, make_request, seed

GOAL_RATIO = 1.5
REFERENCE_ROW = "transformers generate"
QUESTION = "Write one short paragraph about the sea."
ROUND_STAKE = 10**9
ROUND_FEE = 10**6


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _generate(engine: LlamaEngine, ids: list[int], batch: int, tokens: int) -> float:
    """Seconds to generate exactly `tokens` tokens for `batch` copies of the prompt."""
    seconds, gens = _timed(lambda: engine.generate([ids] * batch, max_tokens=tokens,
                                                   stop_ids=()))
    assert all(len(g.token_ids) == tokens for g in gens)
    return seconds


def _reference_generate(ref: Reference, ids: list[int], batch: int,
                        tokens: int) -> tuple[float, list[list[int]]]:
    """Seconds for transformers' greedy generate of exactly `tokens` tokens, and its ids."""
    seconds, out = _timed(lambda: reference_generate(ref, ids, batch=batch, tokens=tokens,
                                                     exact=True))
    assert all(len(row) == tokens for row in out)
    return seconds, out


def speed_rows(float_engine: LlamaEngine, int8_engine: LlamaEngine, *, tokens: int,
               batch: int, repeat: int, mined: bool, target_shift: int,
               reference: Reference | None) -> dict[str, Any]:
    """Interleaved runs of float, int8, int8 mined and transformers (the reference, when
    given); best seconds of each, ratios, and the reference's greedy agreement with our
    float forward."""
    ids = int8_engine.chat_ids([{"role": "user", "content": QUESTION}])
    session = MiningSession(commitment=bytes(range(32)), target=MAX_TARGET >> target_shift,
                            max_wins=1)
    hook = mining_hook(session)
    runs: dict[str, list[float]] = {"float": [], "int8": [], "int8 mined": [],
                                    REFERENCE_ROW: []}
    products = 0
    reference_ids: list[list[int]] = []
    for _ in range(repeat):
        if reference is not None:
            ref_s, reference_ids = _reference_generate(reference, ids, batch, tokens)
            runs[REFERENCE_ROW].append(ref_s)
        runs["float"].append(_generate(float_engine, ids, batch, tokens))
        runs["int8"].append(_generate(int8_engine, ids, batch, tokens))
        if mined:
            int8_engine.set_product(hook)
            before = int8_engine.stats.products if int8_engine.stats else 0
            try:
                runs["int8 mined"].append(_generate(int8_engine, ids, batch, tokens))
            finally:
                int8_engine.set_product(None)
            products = (int8_engine.stats.products if int8_engine.stats else 0) - before
    best = {k: min(v) for k, v in runs.items() if v}
    rows = {k: {"seconds": round(s, 3), "tokens_per_s": round(batch * tokens / s, 2),
                "runs": [round(x, 3) for x in runs[k]]} for k, s in best.items()}
    ratio = None if not mined else {
        "best": round(best["int8 mined"] / best["int8"], 2),
        "median_of_rounds": round(statistics.median(
            m / u for m, u in zip(runs["int8 mined"], runs["int8"], strict=True)), 2),
        "products_per_run": products, "backend": session.backend.name}
    agreement = None
    if reference is not None:
        [ours] = float_engine.generate([ids], max_tokens=tokens, stop_ids=())
        agreement = greedy_agreement(ours.token_ids, reference_ids[0], float_engine.stop_ids)
    return {"rows": rows, "mined_over_unmined": ratio,
            "int8_over_float": round(best["int8"] / best["float"], 2),
            "float_over_reference": (round(best["float"] / best[REFERENCE_ROW], 2)
                                     if reference is not None else None),
            "reference_greedy_agreement": agreement, "prompt_tokens": len(ids)}


def _sampled(engine: LlamaEngine, ids: list[int], tokens: int,
             seeds: list[int]) -> list[Generation]:
    """Answers of exactly `tokens` tokens sampled as a swarm node does (t 0.7, top_p 0.95),
    one per seed, in one batch."""
    return engine.generate([ids] * len(seeds), max_tokens=tokens, temperature=0.7, top_p=0.95,
                           seed=seeds, stop_ids=())


def swarm_round_seconds(engine: LlamaEngine, *, answerers: int, tokens: int,
                        nonce: int) -> dict[str, float]:
    """One round in-process, timed by part. In a swarm every answerer is its own machine
    and they generate at the same time, so each answer is generated alone (batch 1, its own
    seed) and the round waits for the slowest; the same answers in one batch on this one
    machine are timed too. Then one judge's pass (`SmolLM2Backend.round_judgments`: every
    ordered pair of distinct answers and the screen from one scoring pass, the question's
    prompt run once) and the real `settle` on signed commitments and openings."""
    backend = SmolLM2Backend(engine, temperature=0.7, top_p=0.95)  # no remembered scores
    ids = engine.chat_ids([{"role": "user", "content": QUESTION}])
    seeds = [nonce * 1000 + i for i in range(answerers)]
    alone = [_timed(functools.partial(_sampled, engine, ids, tokens, [s])) for s in seeds]
    batch_s, gens = _timed(functools.partial(_sampled, engine, ids, tokens, seeds))
    texts = [g.text.strip() or "(no answer)" for g in gens]
    assert texts == [(g.text.strip() or "(no answer)") for _s, [g] in alone]
    distinct = sorted(set(texts))
    ordered = [(a, b) for a in distinct for b in distinct if a != b]
    judge_s, (judged, marks) = _timed(lambda: backend.round_judgments(
        QUESTION, ordered, distinct, texts))
    verdicts = {p: j.outcome for p, j in zip(ordered, judged, strict=True)}
    mark_of = dict(zip(distinct, marks, strict=True))
    code = {JudgeOutcome.A: Outcome.FIRST_WINS, JudgeOutcome.B: Outcome.SECOND_WINS,
            JudgeOutcome.TIE: Outcome.TIE}

    def verdict(_s: bytes, a: bytes, b: bytes) -> Outcome:
        return Outcome.TIE if a == b else code[verdicts[(a.decode(), b.decode())]]

    def screen(_s: bytes, text: bytes) -> int:
        mark = mark_of[text.decode()]
        return SCREEN_NONE if mark is None else SCREEN_GOOD if mark else SCREEN_BAD

    def settle_round() -> Any:
        keys = [seed(f"inference node {i}") for i in range(answerers)]
        r = build_round(request=make_request(seed("inference client"), fee=ROUND_FEE,
                                             answers=answerers, judges=answerers, nonce=nonce),
                        answers=[(k, t.encode()) for k, t in zip(keys, texts, strict=True)],
                        judges=[(k, verdict) for k in keys], screen=screen)
        nodes = r.answerers + r.judges
        return settle(request=r.request, answerers=r.answerers, judges=r.judges,
                      commitments=r.commitments, answer_openings=r.answer_openings,
                      judgment_openings=r.judgment_openings,
                      reputations=dict.fromkeys(nodes, 1000),
                      stakes=dict.fromkeys(nodes, ROUND_STAKE))

    settle_s, result = _timed(settle_round)
    assert result.outcome.ranking
    slowest = max(s for s, _g in alone)
    return {"slowest_answerer": slowest, "answerer_median": statistics.median(
                s for s, _g in alone),
            "batch_generate": batch_s, "judging": judge_s, "settle": settle_s,
            "critical_path": slowest + judge_s + settle_s,
            "one_machine": batch_s + judge_s + settle_s}


def latency_rows(engine: LlamaEngine, *, answerers: int, tokens: int,
                 repeat: int) -> dict[str, Any]:
    """Interleaved: one node's generate of `tokens` vs a whole simulated round. Headline:
    the round's critical path (the slowest answerer + one judge's pass + settle) over one
    node's generation; also the round on one machine (answers in one batch)."""
    ids = engine.chat_ids([{"role": "user", "content": QUESTION}])
    single: list[float] = []
    rounds: list[dict[str, float]] = []
    for i in range(repeat):
        # one node answering alone: the same sampling as a round's answerers, another seed
        single.append(_timed(functools.partial(_sampled, engine, ids, tokens,
                                               [999_999 - i]))[0])
        rounds.append(swarm_round_seconds(engine, answerers=answerers, tokens=tokens,
                                          nonce=i))

    def ratios(part: str) -> tuple[float, float]:
        """(best round over best single, median of the per-round ratios)"""
        best = min(r[part] for r in rounds) / min(single)
        return round(best, 2), round(statistics.median(
            r[part] / s for r, s in zip(rounds, single, strict=True)), 2)

    critical, critical_median = ratios("critical_path")
    machine, machine_median = ratios("one_machine")
    judging, judging_median = ratios("judging")
    best_round = min(rounds, key=lambda r: r["critical_path"])
    return {"answerers": answerers, "tokens": tokens,
            "single_node_s": round(min(single), 3),
            "single_node_runs": [round(x, 3) for x in single],
            "round_s": {k: round(v, 3) for k, v in best_round.items()},
            "ratio": critical, "ratio_median_of_rounds": critical_median,
            "one_machine_ratio": machine, "one_machine_ratio_median_of_rounds": machine_median,
            "judging_over_single": judging, "judging_over_single_median": judging_median,
            "goal": GOAL_RATIO, "meets_goal": critical <= GOAL_RATIO}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16, help="generated tokens per run")
    parser.add_argument("--batch", type=int, default=1, help="rows per generate (speed)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds, best counts")
    parser.add_argument("--answerers", type=int, default=5, help="answers in a swarm round")
    parser.add_argument("--target-shift", type=int, default=24,
                        help="mining target MAX_TARGET >> shift")
    parser.add_argument("--no-mined", action="store_true", help="skip the mined row")
    parser.add_argument("--no-transformers", action="store_true", help="skip the reference")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_s, loaded = _timed(lambda: load_model(shipped_gguf_path(), args.cache_dir,
                                               expected_sha256=SHA256))
    start_s, engines = _timed(lambda: (
        LlamaEngine(loaded.model, loaded.model_id, int8=False),
        LlamaEngine(loaded.model, loaded.model_id, int8=True)))
    float_engine, int8_engine = engines
    use_reference = reference_installed() and not args.no_transformers
    reference_status_text = "skipped" if args.no_transformers else reference_status()
    ref_load_s, reference = (_timed(load_reference) if use_reference else (None, None))
    speed = speed_rows(float_engine, int8_engine, tokens=args.tokens, batch=args.batch,
                       repeat=args.repeat, mined=not args.no_mined,
                       target_shift=args.target_shift, reference=reference)
    latency = latency_rows(int8_engine, answerers=args.answerers, tokens=args.tokens,
                           repeat=args.repeat)
    load = os.getloadavg()
    print(f"inference: {args.tokens} tokens, batch {args.batch}, best of {args.repeat} "
          f"interleaved; torch threads {torch.get_num_threads()}; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; model load "
          f"{load_s:.1f} s, engines {start_s:.1f} s"
          + (f", transformers load {ref_load_s:.1f} s" if ref_load_s is not None else ""))
    print(f"{'forward':<28} {'tokens/s':>9} {'seconds':>8}")
    for name, row in speed["rows"].items():
        print(f"{name:<28} {row['tokens_per_s']:9.2f} {row['seconds']:8.3f}"
              + (f"  ({reference_status_text})" if name == REFERENCE_ROW else ""))
    ref_row = speed["rows"].get(REFERENCE_ROW)
    agreement = speed["reference_greedy_agreement"]
    if ref_row is None:
        print(f"{REFERENCE_ROW:<28} {reference_status_text}")
    else:
        print(f"float/transformers time: {speed['float_over_reference']}x; greedy agreement "
              f"with our float forward: first {agreement['same_prefix']} of "
              f"{agreement['compared']} tokens identical ({agreement['agreement']:.0%})")
    mined = speed["mined_over_unmined"]
    if mined is not None:
        print(f"mined/unmined time: {mined['best']}x (best), {mined['median_of_rounds']}x "
              f"(median of rounds); {mined['products_per_run']} products per run, pouw "
              f"backend {mined['backend']}")
    print(f"int8/float time: {speed['int8_over_float']}x")
    r = latency["round_s"]
    print(f"swarm round ({latency['answerers']} answerers, {latency['tokens']} tokens), best "
          f"round: critical path {r['critical_path']:.2f} s = slowest answerer "
          f"{r['slowest_answerer']:.2f} + judging {r['judging']:.2f} + settle "
          f"{r['settle']:.3f}; one node {latency['single_node_s']:.2f} s")
    print(f"  critical path / one node: {latency['ratio']}x (median of rounds "
          f"{latency['ratio_median_of_rounds']}x), goal <= {GOAL_RATIO}x: "
          f"{'met' if latency['meets_goal'] else 'MISSED'}; judging alone "
          f"{latency['judging_over_single']}x")
    print(f"  one machine (answers in one batch {r['batch_generate']:.2f} s): "
          f"{latency['one_machine_ratio']}x (median "
          f"{latency['one_machine_ratio_median_of_rounds']}x)")
    if args.json:
        print(json.dumps({"tokens": args.tokens, "batch": args.batch, "repeat": args.repeat,
                          "speed": speed, "transformers": {
                              "status": reference_status_text,
                              "load_s": None if ref_load_s is None else round(ref_load_s, 2),
                              "tokens_per_s": None if ref_row is None
                              else ref_row["tokens_per_s"],
                              "greedy_agreement": agreement},
                          "swarm_latency": latency,
                          "load_average": [round(x, 2) for x in load],
                          "model_load_s": round(load_s, 2)}))


if __name__ == "__main__":
    main()
