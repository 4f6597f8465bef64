"""The built-in arithmetic model: a tiny character-level decoder whose linear layers are
exact integer matmuls.

Every linear layer quantises its input per row and its weight per output column to int7
([-64, 63], symmetric scales), so the layer's core is an int8 x int8 -> int32 product that
can run through a pouw MiningSession: inference is the useful work. Attention scores,
softmax and layer norms stay in float32 (they are cheap and not matmuls with weights).

The same functional forward serves training (fake quantisation with a straight-through
estimator, so the trained weights survive int7) and inference (the integer path).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

VOCAB = "_0123456789+-*=$"  # '_' pads prompts on the left, '$' ends an answer
PAD, EQ, END = 0, VOCAB.index("="), VOCAB.index("$")
STOI = {c: i for i, c in enumerate(VOCAB)}
NUM_WIDTH = 2  # operands are zero-padded to fixed width: digits sit at fixed positions
ANSWER_DIGITS = 3
PROMPT_LEN = 9  # "72*09+45=" fits
ANSWER_LEN = ANSWER_DIGITS + 2  # sign, digits least significant first, '$'
SEQ_LEN = PROMPT_LEN + ANSWER_LEN
QMAX = 63  # symmetric int7: values in [-63, 63] within the pouw range [-64, 63]

LINEARS = ("qkv", "proj", "fc", "fc2")

@dataclass(frozen=True)
class ModelConfig:
    """Shape of one variant."""

    d_model: int
    n_layer: int
    n_head: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plain exact int product: float32 GEMM is exact while |partial sums| < 2^24.

    With entries in [-64, 64] every partial sum is below 4096·k, so k <= 4096 is exact; a
    longer k falls back to int64 numpy.
    """
    if a.shape[1] <= 4096:
        prod = torch.from_numpy(a.astype(np.float32)) @ torch.from_numpy(b.astype(np.float32))
        return prod.numpy().astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def encode_prompt(expr: str) -> list[int]:
    """Left-padded token ids of "expr=" with operands zero-padded to NUM_WIDTH digits.

    Fixed-width operands put every digit at a fixed position per family, which a tiny
    model learns far faster; raises ValueError when the expression does not fit.
    """
    text = re.sub(r"\d+", lambda m: m.group(0).rjust(NUM_WIDTH, "0"), expr) + "="
    if (len(text) > PROMPT_LEN or any(c not in STOI for c in text)
            or any(len(d) > NUM_WIDTH for d in re.findall(r"\d+", text))):
        raise ValueError(f"expression does not fit the model: {expr!r}")
    return [PAD] * (PROMPT_LEN - len(text)) + [STOI[c] for c in text]


def encode_answer(value: int) -> list[int]:
    """Sign, then ANSWER_DIGITS zero-padded digits least significant first, then '$'."""
    digits = str(abs(value)).rjust(ANSWER_DIGITS, "0")
    if len(digits) > ANSWER_DIGITS:
        raise ValueError(f"answer does not fit the model: {value}")
    return [STOI["-" if value < 0 else "+"]] + [STOI[c] for c in digits[::-1]] + [END]


def decode_answer(ids: list[int]) -> str:
    """Generated ids back to a normal integer string (raw characters if malformed)."""
    raw = "".join(VOCAB[i] for i in ids)
    body = raw.split("$", 1)[0]
    sign, digits = body[:1], body[1:]
    if sign not in ("+", "-") or not digits.isdigit():
        return body
    value = int(digits[::-1])
    return str(-value if sign == "-" else value)


def init_params(cfg: ModelConfig, *, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Float parameters for training (GPT-2 style initialisation)."""
    d, v = cfg.d_model, len(VOCAB)

    def normal(*shape: int, std: float = 0.02) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std

    p: dict[str, torch.Tensor] = {
        "wte": normal(v, d), "wpe": normal(SEQ_LEN, d),
        "lnf.w": torch.ones(d), "lnf.b": torch.zeros(d),
        "head.w": normal(d, v), "head.b": torch.zeros(v),
    }
    shapes = {"qkv": (d, 3 * d), "proj": (d, d), "fc": (d, 4 * d), "fc2": (4 * d, d)}
    for layer in range(cfg.n_layer):
        for ln in ("ln1", "ln2"):
            p[f"h{layer}.{ln}.w"] = torch.ones(d)
            p[f"h{layer}.{ln}.b"] = torch.zeros(d)
        for name, (k, n) in shapes.items():
            std = 0.02 / math.sqrt(2 * cfg.n_layer) if name in ("proj", "fc2") else 0.02
            p[f"h{layer}.{name}.w"] = normal(k, n, std=std)
            p[f"h{layer}.{name}.b"] = torch.zeros(n)
    return p


def quantise(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int7 quantisation along `dim` (the reduced axis): (ints, scales)."""
    amax = x.abs().amax(dim=dim, keepdim=True)
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    return torch.clamp(torch.round(x / scale), -QMAX, QMAX), scale


def fake_quant_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Training-time linear: quantise-dequantise both operands, gradients straight through."""
    xq, xs = quantise(x, dim=-1)
    wq, ws = quantise(w, dim=0)
    x_hat = x + (xq * xs - x).detach()
    w_hat = w + (wq * ws - w).detach()
    return x_hat @ w_hat + b


Linear = Callable[[str, torch.Tensor], torch.Tensor]


def forward(p: Mapping[str, torch.Tensor], cfg: ModelConfig, tokens: torch.Tensor,
            linear: Linear) -> torch.Tensor:
    """Logits (B, T, V) for token ids (B, T); `linear(name, x)` applies layer `name`."""
    bsz, t = tokens.shape
    d, nh = cfg.d_model, cfg.n_head
    x = p["wte"][tokens] + p["wpe"][:t]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    for layer in range(cfg.n_layer):
        pre = f"h{layer}."
        h = F.layer_norm(x, (d,), p[pre + "ln1.w"], p[pre + "ln1.b"])
        qkv = linear(pre + "qkv", h).view(bsz, t, 3, nh, d // nh).permute(2, 0, 3, 1, 4)
        att = (qkv[0] @ qkv[1].transpose(-1, -2)) / math.sqrt(d // nh)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ qkv[2]).transpose(1, 2).reshape(bsz, t, d)
        x = x + linear(pre + "proj", y)
        h = F.layer_norm(x, (d,), p[pre + "ln2.w"], p[pre + "ln2.b"])
        x = x + linear(pre + "fc2", F.gelu(linear(pre + "fc", h)))
    x = F.layer_norm(x, (d,), p["lnf.w"], p["lnf.b"])
    return linear("head", x)


def training_linear(p: Mapping[str, torch.Tensor]) -> Linear:
    def apply(name: str, x: torch.Tensor) -> torch.Tensor:
        return fake_quant_linear(x, p[name + ".w"], p[name + ".b"])
    return apply


def export_tensors(p: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Shipped form: every linear weight as int8 plus float32 per-column scales."""
    out: dict[str, torch.Tensor] = {}
    for name, value in p.items():
        if name.endswith(".w") and name[:-2].split(".")[-1] in (*LINEARS, "head"):
            wq, ws = quantise(value.detach(), dim=0)
            out[name[:-2] + ".wq"] = wq.to(torch.int8).contiguous()
            out[name[:-2] + ".ws"] = ws.reshape(-1).to(torch.float32).contiguous()
        else:
            out[name] = value.detach().to(torch.float32).contiguous()
    return out
