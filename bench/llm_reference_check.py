"""Our GGUF loader and float forward against `transformers` on the same file (the reference).

`transformers` is pinned in pyproject's `reference` extra, which make installs with dev; it is
never imported at run time. This module is also the one place that loads transformers on the
shipped GGUF and compares greedy continuations: `bench/inference.py` imports it for its
reference row.

    python bench/llm_reference_check.py [--tokens 32] [--threads 2] [--json]

It compares, on fixed texts and chat prompts:
- token ids: our `tokenizers` BPE built from the GGUF vs transformers' GGUF tokenizer;
- logits, teacher-forced: our float forward vs `LlamaForCausalLM` loaded with `gguf_file=`
  (which also undoes llama.cpp's Q/K permutation). Measured: identical ids, max |Δlogit|
  below 1e-4 (float32);
- greedy continuations: our float `generate` vs transformers' `generate`, both greedy and
  stopping at end of turn; the first `FIRST_TOKENS` must be identical, and the agreement
  over the compared positions is reported.
Prints a table, then a JSON line with --json. Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm.runtime.llm.cache import default_cache_dir  # noqa: E402
from swarm.runtime.llm.engine import LlamaEngine, load_engine  # noqa: E402
from swarm.runtime.llm.shipped import shipped_gguf_path  # noqa: E402

try:
    import transformers
except ImportError:  # the `reference` extra is not installed (make installs it)
    transformers = None

TEXTS = ("The quick brown fox jumps over the lazy dog. In 1987, 12345 people visited Zürich, "
         "naïve café!", "def f(x):\n    return x ** 2  # square\n")
CHATS = ("What is the capital of France?", "How many grams are in 3 kilograms?",
         "Write one short paragraph about the sea.")
#: greedy continuations must agree on at least this many first tokens (float32 both sides:
#: logits differ by < 1e-4, so only a near-tie could split them)
FIRST_TOKENS = 8
MAX_LOGIT_DIFF = 1e-3


@dataclass(frozen=True)
class Reference:
    """transformers' tokenizer and float32 model, both loaded from the shipped GGUF."""

    tokenizer: Any
    model: Any
    version: str


def reference_installed() -> bool:
    """Whether transformers is importable (pyproject's `reference` extra)."""
    return transformers is not None


def reference_status() -> str:
    """"transformers <version>", or why the reference cannot run."""
    if transformers is None:
        return "not installed (make installs the `reference` extra)"
    return f"transformers {transformers.__version__}"


def load_reference() -> Reference:
    """transformers on the shipped GGUF (`gguf_file=`, dequantised to float32)."""
    if transformers is None:
        raise RuntimeError(reference_status())
    transformers.utils.logging.disable_progress_bar()
    path = shipped_gguf_path()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, use_kernels=False)
    model.eval()
    return Reference(tokenizer=tok, model=model, version=transformers.__version__)


def reference_generate(ref: Reference, ids: Sequence[int], *, batch: int, tokens: int,
                       exact: bool) -> list[list[int]]:
    """transformers' greedy `generate` of `batch` copies of the prompt `ids`: the new token
    ids of each row. `exact`: exactly `tokens` tokens (end of turn suppressed, as our
    `generate(stop_ids=())` for speed); else at most `tokens`, stopping at end of turn."""
    input_ids = torch.tensor([list(ids)] * batch)
    pad = ref.tokenizer.pad_token_id
    with torch.no_grad():
        out = ref.model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
            max_new_tokens=tokens, min_new_tokens=tokens if exact else 0, do_sample=False,
            pad_token_id=ref.tokenizer.eos_token_id if pad is None else pad)
    return [row[len(ids):] for row in out.tolist()]


def greedy_agreement(ours: Sequence[int], theirs: Sequence[int],
                     stop_ids: Collection[int]) -> dict[str, Any]:
    """How two greedy continuations of one prompt agree. Each is cut after its first stop
    token, which counts as one position (any stop token the same), so stopping at the same
    place agrees. Positions compared, length of the identical prefix, the share of identical
    positions (after a first difference the contexts differ, so the prefix is the measure)
    and whether the first `FIRST_TOKENS` (or all compared, if fewer) are identical."""
    a = _cut_at_stop(ours, stop_ids)
    b = _cut_at_stop(theirs, stop_ids)
    n = min(len(a), len(b))
    prefix = next((i for i in range(n) if a[i] != b[i]), n)
    same = sum(x == y for x, y in zip(a, b, strict=False))
    return {"compared": n, "same_prefix": prefix,
            "agreement": round(same / n, 4) if n else 1.0,
            "first_ok": prefix >= min(FIRST_TOKENS, n)}


_STOP = -1


def _cut_at_stop(ids: Sequence[int], stop_ids: Collection[int]) -> list[int]:
    cut = next((i for i, t in enumerate(ids) if t in stop_ids), None)
    return list(ids) if cut is None else [*ids[:cut], _STOP]


def logit_rows(engine: LlamaEngine, ref: Reference) -> list[dict[str, Any]]:
    """Teacher-forced: same token ids, and our float logits against transformers'."""
    chat = engine.template.render([{"role": "user", "content": CHATS[0]}])
    rows = []
    for text in (chat, *TEXTS):
        ours = engine.encode(text)
        theirs = list(ref.tokenizer(text, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([ours])
        hidden, _ = engine.model.forward(ids, torch.ones_like(ids, dtype=torch.bool))
        mine = engine.model.logits(hidden)
        with torch.no_grad():
            other = ref.model(ids).logits
        rows.append({"tokens": len(ours), "same_ids": ours == theirs,
                     "max_abs_logit_diff": float((mine - other).abs().max()),
                     "same_argmax": float((mine.argmax(-1) == other.argmax(-1)).float().mean())})
    return rows


def greedy_rows(engine: LlamaEngine, ref: Reference, tokens: int) -> list[dict[str, Any]]:
    """Greedy continuations of the fixed chat prompts, ours (float) against transformers'."""
    rows = []
    for question in CHATS:
        ids = engine.chat_ids([{"role": "user", "content": question}])
        [ours] = engine.generate([ids], max_tokens=tokens)
        [theirs] = reference_generate(ref, ids, batch=1, tokens=tokens, exact=False)
        stopped = [engine.special.eos] if ours.finish_reason == "stop" else []
        rows.append({"prompt": question, **greedy_agreement(
            [*ours.token_ids, *stopped], theirs, engine.stop_ids)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    ap.add_argument("--tokens", type=int, default=32, help="greedy tokens per chat prompt")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if transformers is None:
        print(f"reference check: {reference_status()}")
        return 1
    engine = load_engine(cache_dir=args.cache_dir, int8=False)
    ref = load_reference()
    logits = logit_rows(engine, ref)
    greedy = greedy_rows(engine, ref, args.tokens)
    print(f"{reference_status()} on the shipped GGUF, float32, teacher-forced:")
    print(f"{'tokens':>7} {'same ids':>9} {'max |Δlogit|':>13} {'same argmax':>12}")
    for r in logits:
        print(f"{r['tokens']:7} {r['same_ids']!s:>9} {r['max_abs_logit_diff']:13.2e} "
              f"{r['same_argmax']:12.3f}")
    print(f"greedy continuations (at most {args.tokens} tokens, first {FIRST_TOKENS} must agree):")
    print(f"{'prompt':<42} {'compared':>8} {'same prefix':>11} {'agreement':>9}")
    for r in greedy:
        print(f"{r['prompt']:<42} {r['compared']:8} {r['same_prefix']:11} "
              f"{r['agreement']:9.2%}")
    if args.json:
        print(json.dumps({"bench": "llm_reference_check", "reference": reference_status(),
                          "rows": logits, "greedy": greedy}))
    ok = (all(r["same_ids"] and r["max_abs_logit_diff"] < MAX_LOGIT_DIFF for r in logits)
          and all(r["first_ok"] for r in greedy))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
