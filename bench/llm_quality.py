"""Int8 (W8A8) quality of the SmolLM2 engine against its own float forward.

On a fixed shipped text (bench/data/llm_eval.txt, not the SmoothQuant text) and on the
teacher-forced answers of a few fixed chat prompts, for each quantisation variant:
perplexity (and its change against float) and next-token top-1 agreement with float.
Also greedy answers of a few prompts and generation speed (tokens/s, batch of 1 and of 4,
best of three runs).

    python bench/llm_quality.py [--cache-dir DIR] [--quick] [--json]

Prints a table, then (with --json) one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm.runtime.llm.cache import default_cache_dir, load_model  # noqa: E402
from swarm.runtime.llm.engine import LlamaEngine, QuantConfig  # noqa: E402
from swarm.runtime.llm.shipped import shipped_gguf_path  # noqa: E402

EVAL_TEXT = ROOT / "bench" / "data" / "llm_eval.txt"
CHATS = (
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("What colour is the sky on a clear day?", "On a clear day the sky is blue."),
    ("Give me a word that rhymes with cat.", "Hat rhymes with cat."),
)
PROMPTS = ("What is the capital of France?", "How many grams are in 3 kilograms?",
           "Name three primary colors.", "What is 12 + 30?")
#: short checkable questions (answer correct if it contains any of the strings, case-blind):
#: a preview of task accuracy; the swarm bench's 200-question set is the real measure
QUIZ: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What is the capital of France?", ("paris",)),
    ("What is the capital of Italy?", ("rome",)),
    ("What is the capital of Japan?", ("tokyo",)),
    ("What is the capital of Germany?", ("berlin",)),
    ("What is the capital of Spain?", ("madrid",)),
    ("What is the capital of the United Kingdom?", ("london",)),
    ("What is the largest planet in the solar system?", ("jupiter",)),
    ("Which planet is known as the red planet?", ("mars",)),
    ("What is the chemical symbol for water?", ("h2o", "h₂o")),
    ("What gas do plants absorb from the air?", ("carbon dioxide", "co2")),
    ("How many days are in a week?", ("7", "seven")),
    ("How many months are in a year?", ("12", "twelve")),
    ("How many legs does a spider have?", ("8", "eight")),
    ("How many sides does a triangle have?", ("3", "three")),
    ("How many minutes are in an hour?", ("60", "sixty")),
    ("How many grams are in a kilogram?", ("1000", "1,000", "thousand")),
    ("What is 2 + 2?", ("4", "four")),
    ("What is 10 times 10?", ("100",)),
    ("What is half of 50?", ("25",)),
    ("What color is grass?", ("green",)),
    ("At what temperature in Celsius does water boil at sea level?", ("100",)),
    ("Who wrote Romeo and Juliet?", ("shakespeare",)),
    ("Who painted the Mona Lisa?", ("leonardo", "da vinci")),
    ("What color is the sky on a clear day?", ("blue",)),
    ("What color are bananas when they are ripe?", ("yellow",)),
    ("Is a whale a mammal? Answer yes or no.", ("yes",)),
    ("Is the sun a star? Answer yes or no.", ("yes",)),
    ("Which animal says moo?", ("cow",)),
    ("What is the opposite of hot?", ("cold",)),
    ("What is the opposite of up?", ("down",)),
    ("What is the largest ocean on Earth?", ("pacific",)),
    ("What is the tallest mountain on Earth?", ("everest",)),
    ("On which continent is Egypt?", ("africa",)),
    ("What language is mainly spoken in Brazil?", ("portuguese",)),
    ("What is the freezing point of water in Fahrenheit?", ("32",)),
    ("What do bees make?", ("honey",)),
    ("What is the main ingredient of bread?", ("flour", "wheat")),
    ("Which animal is known as the king of the jungle?", ("lion",)),
    ("How many hours are in a day?", ("24", "twenty-four")),
    ("What is the plural of mouse?", ("mice",)),
)
#: (label, int8, quant config)
VARIANTS: tuple[tuple[str, bool, QuantConfig | None], ...] = (
    ("float32", False, None),
    ("int8 ±127 naive", True, QuantConfig(qmax=127, smooth_alpha=None, act_digits=1)),
    ("int8 ±127 SQ α0.5", True, QuantConfig(qmax=127, smooth_alpha=0.5, act_digits=1)),
    ("int7 ±63 naive", True, QuantConfig(qmax=63, smooth_alpha=None, act_digits=1)),
    ("int7 ±63 SQ α0.5", True, QuantConfig(qmax=63, smooth_alpha=0.5, act_digits=1)),
    ("int7 ±63 SQ α0.7", True, QuantConfig(qmax=63, smooth_alpha=0.7, act_digits=1)),
    ("±63 w, 2-digit act, SQ α0.5 (default)", True, QuantConfig()),
    ("default + int8 LM head", True, QuantConfig(quantize_lm_head=True)),
)


def sequences(engine: LlamaEngine) -> list[list[int]]:
    """The teacher-forced token sequences: the eval text and each chat exchange."""
    seqs = [engine.encode(EVAL_TEXT.read_text("utf-8"))]
    for q, a in CHATS:
        seqs.append(engine.chat_ids([{"role": "user", "content": q},
                                     {"role": "assistant", "content": a}],
                                    add_generation_prompt=False))
    return seqs


def tokens_per_second(engine: LlamaEngine, batch: int, repeats: int = 3) -> float:
    """Greedy generation speed, best of `repeats`: 32 new tokens per prompt, stop tokens
    ignored (best-of because other work on a shared 2-core machine makes single runs vary
    several-fold)."""
    prompts = [engine.chat_ids([{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
               for i in range(batch)]
    engine.generate(prompts, max_tokens=4, stop_ids=())  # warm-up (first-call allocations)
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        gens = engine.generate(prompts, max_tokens=32, stop_ids=())
        best = min(best, time.perf_counter() - started)
    return sum(len(g.token_ids) for g in gens) / best


#: the variants whose quiz accuracy is measured (40 greedy answers each)
QUIZ_VARIANTS = ("float32", "±63 w, 2-digit act, SQ α0.5 (default)")


def quiz_accuracy(engine: LlamaEngine) -> float:
    """Share of QUIZ answered right (greedy, 32 tokens, one batch)."""
    prompts = [engine.chat_ids([{"role": "user", "content": q}]) for q, _ in QUIZ]
    gens = engine.generate(prompts, max_tokens=32)
    right = sum(any(k in g.text.lower() for k in keys)
                for g, (_q, keys) in zip(gens, QUIZ, strict=True))
    return right / len(QUIZ)


@dataclass
class Row:
    """One variant's figures."""

    variant: str
    perplexity: float
    tokens: int
    top1_agreement: float
    perplexity_change: float = 0.0
    answers: list[str] = field(default_factory=list)
    tok_s_batch1: float = 0.0
    tok_s_batch4: float = 0.0
    quiz_accuracy: float | None = None


def measure(engine: LlamaEngine, label: str, reference: list[torch.Tensor],
            quick: bool) -> Row:
    """Perplexity and top-1 agreement with `reference` (filled by the float variant)."""
    nll, count, agree = 0.0, 0, 0
    for i, ids in enumerate(sequences(engine)):
        lp = engine.sequence_logprobs(ids)
        target = torch.tensor(ids[1:])
        nll -= float(lp[torch.arange(len(target)), target].sum())
        count += len(target)
        top1 = lp.argmax(dim=-1)
        if len(reference) <= i:
            reference.append(top1)
        agree += int((top1 == reference[i]).sum())
    row = Row(label, math.exp(nll / count), count, agree / count)
    if not quick:
        prompts = [engine.chat_ids([{"role": "user", "content": p}]) for p in PROMPTS]
        row.answers = [g.text for g in engine.generate(prompts, max_tokens=24)]
        if label in QUIZ_VARIANTS:
            row.quiz_accuracy = quiz_accuracy(engine)
        row.tok_s_batch1 = tokens_per_second(engine, 1)
        row.tok_s_batch4 = tokens_per_second(engine, 4)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    ap.add_argument("--quick", action="store_true", help="skip speed and greedy answers")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    started = time.perf_counter()
    load = load_model(shipped_gguf_path(), args.cache_dir)
    load_s = time.perf_counter() - started
    reference: list[torch.Tensor] = []
    rows = []
    for label, int8, quant in VARIANTS:
        engine = LlamaEngine(load.model, load.model_id, int8=int8, quant=quant)
        rows.append(measure(engine, label, reference, args.quick))
        del engine
    for r in rows:
        r.perplexity_change = r.perplexity / rows[0].perplexity - 1

    print(f"SmolLM2-135M-Instruct Q4_1, {rows[0].tokens} scored tokens "
          f"(eval text + {len(CHATS)} chats); load {load_s:.1f} s "
          f"({'cache' if load.from_cache else 'converted'}); torch threads "
          f"{torch.get_num_threads()}")
    head = f"{'variant':40} {'ppl':>7} {'Δppl':>7} {'top-1':>7}"
    if not args.quick:
        head += f" {'tok/s b1':>9} {'tok/s b4':>9}"
    print(head)
    for r in rows:
        line = (f"{r.variant:40} {r.perplexity:7.2f} {100 * r.perplexity_change:+6.1f}% "
                f"{100 * r.top1_agreement:6.1f}%")
        if not args.quick:
            line += f" {r.tok_s_batch1:9.1f} {r.tok_s_batch4:9.1f}"
        print(line)
    if not args.quick:
        for r in rows:
            if r.quiz_accuracy is not None:
                print(f"quiz accuracy ({len(QUIZ)} questions), {r.variant}: "
                      f"{100 * r.quiz_accuracy:.1f}%")
        print("\ngreedy answers (24 tokens max):")
        for r in rows:
            print(f"  {r.variant}:")
            for p, a in zip(PROMPTS, r.answers, strict=True):
                print(f"    {p} -> {a!r}")
    if args.json:
        print(json.dumps({"bench": "llm_quality", "load_s": load_s,
                          "variants": [asdict(r) for r in rows]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
