"""Train the built-in arithmetic model variants on CPU (`make model`).

Data is generated on the fly from a fixed seed, so a run is reproducible up to the CPU's
float arithmetic; the shipped files in swarm/models/ are what nodes load (their hash is the
model id). Variants differ in size and training steps on purpose: a local swarm should be
heterogeneous, with some nodes much better than others.

Usage: python -m swarm.runtime.train [--only NAME] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from swarm.runtime.arith_model import (
    PROMPT_LEN,
    ModelConfig,
    encode_answer,
    encode_prompt,
    export_tensors,
    forward,
    init_params,
    training_linear,
)
from swarm.tasks import EVAL_SEED, FAMILIES, FAMILY_NAMES, Question, question_set

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class Variant:
    """One shipped variant: its shape and how long it trains."""

    name: str
    config: ModelConfig
    steps: int
    lr: float
    batch: int = 128
    seed: int = 1


VARIANTS: tuple[Variant, ...] = (
    Variant("arith-xs", ModelConfig(d_model=32, n_layer=1, n_head=2), steps=1000, lr=3e-3),
    Variant("arith-s", ModelConfig(d_model=48, n_layer=2, n_head=4), steps=1200, lr=3e-3),
    Variant("arith-m", ModelConfig(d_model=64, n_layer=3, n_head=4), steps=2500, lr=2.5e-3),
    Variant("arith-l", ModelConfig(d_model=96, n_layer=3, n_head=4), steps=3500, lr=2e-3),
)


def batch_tensors(questions: list[Question]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, T) and next-token targets (B, T) with -100 outside the answer."""
    seqs, targets = [], []
    for q in questions:
        ans = encode_answer(q.answer)
        seq = encode_prompt(q.expression) + ans[:-1]
        tgt = [-100] * (PROMPT_LEN - 1) + ans
        seqs.append(seq)
        targets.append(tgt)
    return torch.tensor(seqs), torch.tensor(targets)


def random_questions(rng: np.random.Generator, n: int, held_out: set[Question]) -> list[Question]:
    """Training questions, never one of the fixed evaluation questions."""
    out: list[Question] = []
    while len(out) < n:
        fam = FAMILY_NAMES[int(rng.integers(len(FAMILY_NAMES)))]
        ops = tuple(int(rng.integers(lo, hi + 1)) for lo, hi in FAMILIES[fam])
        q = Question(family=fam, operands=ops)
        if q not in held_out:
            out.append(q)
    return out


def canonicalise_safetensors(path: Path) -> None:
    """Rewrite the header with sorted keys: safetensors writes metadata in hash-map order,
    so identical tensors could give different bytes and therefore a different model id."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data stays 8-byte aligned
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + size:])


def train(variant: Variant, *, out_dir: Path, log_every: int = 250) -> Path:
    """Train one variant and write `{name}.safetensors`; returns the path."""
    torch.manual_seed(variant.seed)
    gen = torch.Generator().manual_seed(variant.seed)
    rng = np.random.default_rng(variant.seed)
    held_out = set(question_set(EVAL_SEED, 1000))
    params = {k: v.requires_grad_(True) for k, v in init_params(variant.config,
                                                                 generator=gen).items()}
    decay = [v for k, v in params.items() if k.endswith(".w") and v.dim() == 2]
    other = [v for k, v in params.items() if not (k.endswith(".w") and v.dim() == 2)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": other, "weight_decay": 0.0}],
                            lr=variant.lr, betas=(0.9, 0.98))
    warmup = max(1, variant.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup)
        * 0.5 * (1 + np.cos(np.pi * min(1.0, s / variant.steps))))
    linear = training_linear(params)
    started = time.perf_counter()
    for step in range(variant.steps):
        tokens, targets = batch_tensors(random_questions(rng, variant.batch, held_out))
        logits = forward(params, variant.config, tokens, linear)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 targets.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == variant.steps - 1:
            print(f"{variant.name} step {step:5d} loss {loss.item():.4f} "
                  f"{time.perf_counter() - started:6.1f}s", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{variant.name}.safetensors"
    meta = {"name": variant.name, "config": variant.config.to_json(),
            "format": "pouwchain-arith-v1", "steps": str(variant.steps)}
    save_file(export_tensors(params, variant.config), str(path), metadata=meta)
    canonicalise_safetensors(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", action="append", help="train only these variants")
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every variant's steps (quick trials)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: tiny matmuls gain nothing from more, and one "
                             "thread makes the float arithmetic independent of core count)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = {}
    for v in VARIANTS:
        if args.only and v.name not in args.only:
            continue
        if args.steps_scale != 1.0:
            v = Variant(v.name, v.config, max(1, int(v.steps * args.steps_scale)), v.lr,
                        v.batch, v.seed)
        path = train(v, out_dir=args.out)
        summary[v.name] = {"path": str(path), "bytes": path.stat().st_size}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
