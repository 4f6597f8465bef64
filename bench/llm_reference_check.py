"""Dev-only check: our GGUF loader and float forward against `transformers` on the same file.

`transformers` is not a dependency; install it somewhere else for this one check, e.g.

    .venv/bin/pip install --target /tmp/hfpkgs --no-deps transformers regex
    PYTHONPATH=/tmp/hfpkgs .venv/bin/python bench/llm_reference_check.py

It compares token ids (our `tokenizers` BPE built from the GGUF vs transformers' GGUF
tokenizer) and logits (our forward vs `LlamaForCausalLM` loaded with `gguf_file=`, which
also undoes llama.cpp's Q/K permutation). Measured: identical token ids; max |Δlogit|
below 1e-4 (float32). Prints a table, then a JSON line with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm.runtime.llm.cache import default_cache_dir  # noqa: E402
from swarm.runtime.llm.engine import load_engine  # noqa: E402
from swarm.runtime.llm.shipped import shipped_gguf_path  # noqa: E402

TEXTS = ("The quick brown fox jumps over the lazy dog. In 1987, 12345 people visited Zürich, "
         "naïve café!", "def f(x):\n    return x ** 2  # square\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        print("transformers is not installed: skipped (see the docstring)")
        return 0
    path = shipped_gguf_path()
    engine = load_engine(cache_dir=args.cache_dir, int8=False)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                              dtype=torch.float32, use_kernels=False)
    chat = engine.template.render([{"role": "user", "content": "What is the capital of France?"}])
    rows = []
    for text in (chat, *TEXTS):
        ours = engine.encode(text)
        theirs = list(tok(text, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([ours])
        hidden, _ = engine.model.forward(ids, torch.ones_like(ids, dtype=torch.bool))
        mine = engine.model.logits(hidden)
        with torch.no_grad():
            ref = hf(ids).logits
        rows.append({"tokens": len(ours), "same_ids": ours == theirs,
                     "max_abs_logit_diff": float((mine - ref).abs().max()),
                     "same_argmax": float((mine.argmax(-1) == ref.argmax(-1)).float().mean())})
    print(f"{'tokens':>7} {'same ids':>9} {'max |Δlogit|':>13} {'same argmax':>12}")
    for r in rows:
        print(f"{r['tokens']:7} {r['same_ids']!s:>9} {r['max_abs_logit_diff']:13.2e} "
              f"{r['same_argmax']:12.3f}")
    if args.json:
        print(json.dumps({"bench": "llm_reference_check", "rows": rows}))
    ok = all(r["same_ids"] and float(r["max_abs_logit_diff"]) < 1e-3 for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
