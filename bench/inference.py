"""Inference bench (SmolLM2-135M-Instruct): generation speed and the swarm's answer latency.

Measured side by side in one run (the machine is shared and noisy: the variants are
interleaved, ``--repeat`` rounds of each, and the best run of each counts; the ratios also
come as the median of the per-round ratios):

- tokens/s of ``--tokens`` generated tokens (no early stop), batch ``--batch``, for our float
  forward, our int8 forward (exact W8A8, default product) and our int8 forward mined: every
  product through `swarm.runtime.builtin.mining_hook` over a real `pouw.MiningSession` on a
  realistic target (``MAX_TARGET >> --target-shift``: tickets are evaluated, wins are rare),
  plus the mined/unmined ratio;
- `transformers`' own greedy `generate` on the same GGUF as the reference, only when
  `transformers` is importable (it is not a project dependency: else "not installed");
- the swarm's answer latency over one node's: a round simulated in-process, ``--answerers``
  answers generated in one batch (seeded sampling, the same length), one judge's pass
  through the backend's batched calls (pmi verdicts on every ordered pair of distinct
  answers, then the screen), and the real `swarm.settlement.settle` on signed commitments
  and openings; against one node's int8 `generate` of the same length. Goal <= 1.5x.

    nice -n 10 python bench/inference.py [--tokens 16] [--batch 1] [--repeat 3]
                                         [--answerers 5] [--no-mined] [--json]

Prints a table, then (with --json) one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
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

from pouw.mining import MiningSession
from pouw.params import MAX_TARGET
from swarm.bradley_terry import Outcome
from swarm.runtime.base import Outcome as JudgeOutcome
from swarm.runtime.builtin import mining_hook
from swarm.runtime.llm.backend import SmolLM2Backend
from swarm.runtime.llm.cache import default_cache_dir, load_model
from swarm.runtime.llm.engine import LlamaEngine
from swarm.runtime.llm.shipped import SHA256, shipped_gguf_path
from swarm.settlement import SCREEN_BAD, SCREEN_GOOD, SCREEN_NONE, settle
from tests.framework.roundkit import build_round, make_request, seed

GOAL_RATIO = 1.5
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


def transformers_seconds(tokens: int, batch: int) -> tuple[str, float | None]:
    """(status, seconds) of transformers' greedy generate on the shipped GGUF."""
    if importlib.util.find_spec("transformers") is None:
        return "not installed", None
    transformers: Any = importlib.import_module("transformers")  # optional, not a dependency

    path = shipped_gguf_path()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent),
                                                              gguf_file=path.name)
    text = tok.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=False,
                                   add_generation_prompt=True)
    inputs = tok([text] * batch, return_tensors="pt")
    with torch.no_grad():
        seconds, _ = _timed(lambda: model.generate(
            **inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False))
    return f"transformers {transformers.__version__}", seconds


def speed_rows(float_engine: LlamaEngine, int8_engine: LlamaEngine, *, tokens: int,
               batch: int, repeat: int, mined: bool, target_shift: int) -> dict[str, Any]:
    """Interleaved runs of float, int8 and int8 mined; best seconds of each, ratios."""
    ids = int8_engine.chat_ids([{"role": "user", "content": QUESTION}])
    session = MiningSession(commitment=bytes(range(32)), target=MAX_TARGET >> target_shift,
                            max_wins=1)
    hook = mining_hook(session)
    runs: dict[str, list[float]] = {"float": [], "int8": [], "int8 mined": []}
    products = 0
    for _ in range(repeat):
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
    return {"rows": rows, "mined_over_unmined": ratio,
            "int8_over_float": round(best["int8"] / best["float"], 2),
            "prompt_tokens": len(ids)}


def swarm_round_seconds(engine: LlamaEngine, *, answerers: int, tokens: int,
                        nonce: int) -> dict[str, float]:
    """One round in-process: answers in one batch, one judge's pass, the real settle."""
    backend = SmolLM2Backend(engine, temperature=0.7, top_p=0.95)
    ids = engine.chat_ids([{"role": "user", "content": QUESTION}])
    gen_s, gens = _timed(lambda: engine.generate(
        [ids] * answerers, max_tokens=tokens, temperature=0.7, top_p=0.95,
        seed=[nonce * 1000 + i for i in range(answerers)], stop_ids=()))
    texts = [g.text.strip() or "(no answer)" for g in gens]
    distinct = sorted(set(texts))
    ordered = [(a, b) for a in distinct for b in distinct if a != b]

    def judging() -> tuple[dict[tuple[str, str], JudgeOutcome], dict[str, bool | None]]:
        judged = backend.judge_many([(QUESTION, a, b) for a, b in ordered])
        marks = backend.screen_many([(QUESTION, t) for t in distinct])
        return ({p: j.outcome for p, j in zip(ordered, judged, strict=True)},
                dict(zip(distinct, marks, strict=True)))

    judge_s, (verdicts, marks) = _timed(judging)
    code = {JudgeOutcome.A: Outcome.FIRST_WINS, JudgeOutcome.B: Outcome.SECOND_WINS,
            JudgeOutcome.TIE: Outcome.TIE}

    def verdict(_s: bytes, a: bytes, b: bytes) -> Outcome:
        return Outcome.TIE if a == b else code[verdicts[(a.decode(), b.decode())]]

    def screen(_s: bytes, text: bytes) -> int:
        mark = marks[text.decode()]
        return SCREEN_NONE if mark is None else SCREEN_GOOD if mark else SCREEN_BAD

    def settle_round() -> Any:
        seeds = [seed(f"inference node {i}") for i in range(answerers)]
        r = build_round(request=make_request(seed("inference client"), fee=ROUND_FEE,
                                             answers=answerers, judges=answerers, nonce=nonce),
                        answers=[(s, t.encode()) for s, t in zip(seeds, texts, strict=True)],
                        judges=[(s, verdict) for s in seeds], screen=screen)
        nodes = r.answerers + r.judges
        return settle(request=r.request, answerers=r.answerers, judges=r.judges,
                      commitments=r.commitments, answer_openings=r.answer_openings,
                      judgment_openings=r.judgment_openings,
                      reputations=dict.fromkeys(nodes, 1000),
                      stakes=dict.fromkeys(nodes, ROUND_STAKE))

    settle_s, result = _timed(settle_round)
    assert result.outcome.ranking
    return {"generate": gen_s, "judging": judge_s, "settle": settle_s,
            "total": gen_s + judge_s + settle_s}


def latency_rows(engine: LlamaEngine, *, answerers: int, tokens: int,
                 repeat: int) -> dict[str, Any]:
    """Interleaved: one node's generate of `tokens` vs a whole simulated round."""
    ids = engine.chat_ids([{"role": "user", "content": QUESTION}])
    single: list[float] = []
    rounds: list[dict[str, float]] = []
    for i in range(repeat):
        single.append(_generate(engine, ids, 1, tokens))
        rounds.append(swarm_round_seconds(engine, answerers=answerers, tokens=tokens,
                                          nonce=i))
    best_round = min(rounds, key=lambda r: r["total"])
    ratio = best_round["total"] / min(single)
    return {"answerers": answerers, "tokens": tokens,
            "single_node_s": round(min(single), 3),
            "round_s": {k: round(v, 3) for k, v in best_round.items()},
            "ratio": round(ratio, 2),
            "ratio_median_of_rounds": round(statistics.median(
                r["total"] / s for r, s in zip(rounds, single, strict=True)), 2),
            "goal": GOAL_RATIO, "meets_goal": ratio <= GOAL_RATIO}


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
    speed = speed_rows(float_engine, int8_engine, tokens=args.tokens, batch=args.batch,
                       repeat=args.repeat, mined=not args.no_mined,
                       target_shift=args.target_shift)
    reference, ref_s = (("skipped", None) if args.no_transformers
                        else transformers_seconds(args.tokens, args.batch))
    latency = latency_rows(int8_engine, answerers=args.answerers, tokens=args.tokens,
                           repeat=args.repeat)
    load = os.getloadavg()
    print(f"inference: {args.tokens} tokens, batch {args.batch}, best of {args.repeat} "
          f"interleaved; torch threads {torch.get_num_threads()}; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; model load "
          f"{load_s:.1f} s, engines {start_s:.1f} s")
    print(f"{'forward':<28} {'tokens/s':>9} {'seconds':>8}")
    for name, row in speed["rows"].items():
        print(f"{name:<28} {row['tokens_per_s']:9.2f} {row['seconds']:8.3f}")
    ref_tps = None if ref_s is None else round(args.batch * args.tokens / ref_s, 2)
    print(f"{'transformers generate':<28} "
          + (f"{ref_tps:9.2f} {ref_s:8.3f}  ({reference})" if ref_s is not None
             else f"{reference:>9}"))
    mined = speed["mined_over_unmined"]
    if mined is not None:
        print(f"mined/unmined time: {mined['best']}x (best), {mined['median_of_rounds']}x "
              f"(median of rounds); {mined['products_per_run']} products per run, pouw "
              f"backend {mined['backend']}")
    print(f"int8/float time: {speed['int8_over_float']}x")
    r = latency["round_s"]
    print(f"swarm round ({latency['answerers']} answers of {latency['tokens']} tokens): "
          f"{r['total']:.2f} s = generate {r['generate']:.2f} + judging {r['judging']:.2f} + "
          f"settle {r['settle']:.3f}; one node {latency['single_node_s']:.2f} s; ratio "
          f"{latency['ratio']}x (median {latency['ratio_median_of_rounds']}x), goal <= "
          f"{GOAL_RATIO}x: {'met' if latency['meets_goal'] else 'MISSED'}")
    if args.json:
        print(json.dumps({"tokens": args.tokens, "batch": args.batch, "repeat": args.repeat,
                          "speed": speed, "transformers": {"status": reference,
                                                           "seconds": ref_s,
                                                           "tokens_per_s": ref_tps},
                          "swarm_latency": latency,
                          "load_average": [round(x, 2) for x in load],
                          "model_load_s": round(load_s, 2)}))


if __name__ == "__main__":
    main()
