"""Tiny GPT-2 checkpoints written on the spot (random or "always 7" weights, a byte-level BPE
vocabulary), for the Hugging Face backend tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from swarm.runtime.hf import bytes_to_unicode

D, HEADS, LAYERS, CTX = 8, 2, 2, 64
MERGES = [("Ġ", "W"), ("h", "a"), ("ha", "t"), ("ĠW", "hat")]


def vocab() -> dict[str, int]:
    chars = [bytes_to_unicode()[b] for b in range(256)]
    toks = chars + [a + b for a, b in MERGES]
    return {t: i for i, t in enumerate(toks)}


def gpt2_tensors(seed: int, *, blank: bool = False) -> dict[str, torch.Tensor]:
    """Random GPT-2 weights; `blank` zeroes the blocks so the model always emits '7'."""
    g = torch.Generator().manual_seed(seed)
    v = len(vocab())

    def r(*shape: int) -> torch.Tensor:
        x = torch.randn(*shape, generator=g) * 0.3
        return torch.zeros(*shape) if blank else x

    t = {"wte.weight": torch.randn(v, D, generator=g) * 0.3,
         "wpe.weight": torch.randn(CTX, D, generator=g) * 0.3,
         "ln_f.weight": 1 + r(D), "ln_f.bias": r(D)}
    for i in range(LAYERS):
        p = f"h.{i}."
        t |= {p + "ln_1.weight": 1 + r(D), p + "ln_1.bias": r(D),
              p + "attn.c_attn.weight": r(D, 3 * D), p + "attn.c_attn.bias": r(3 * D),
              p + "attn.c_proj.weight": r(D, D), p + "attn.c_proj.bias": r(D),
              p + "ln_2.weight": 1 + r(D), p + "ln_2.bias": r(D),
              p + "mlp.c_fc.weight": r(D, 4 * D), p + "mlp.c_fc.bias": r(4 * D),
              p + "mlp.c_proj.weight": r(4 * D, D), p + "mlp.c_proj.bias": r(D)}
    if blank:
        seven = vocab()["7"]
        t["wte.weight"][:, 0] = 0.0
        t["wte.weight"][seven, 0] = 10.0
        t["ln_f.weight"] = torch.zeros(D)
        t["ln_f.bias"] = torch.zeros(D)
        t["ln_f.bias"][0] = 1.0
    return t


def write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], *,
                     model_type: str = "gpt2", tokenizer_json: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({
        "model_type": model_type, "architectures": ["GPT2LMHeadModel"], "n_layer": LAYERS,
        "n_head": HEADS, "n_embd": D, "n_positions": CTX, "vocab_size": len(vocab()),
        "eos_token_id": None}))
    save_file({"transformer." + k: v.contiguous() for k, v in tensors.items()},
              str(path / "model.safetensors"))
    if tokenizer_json:
        (path / "tokenizer.json").write_text(json.dumps({"model": {
            "type": "BPE", "vocab": vocab(), "merges": [f"{a} {b}" for a, b in MERGES]}}))
    else:
        (path / "vocab.json").write_text(json.dumps(vocab()))
        (path / "merges.txt").write_text(
            "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in MERGES) + "\n")
    return path
