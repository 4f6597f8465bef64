"""The linear layers of the Llama forward: float reference, and exact int8 W8A8.

Per layer the forward runs four products, each with one input shared by its outputs
(q|k|v fused, gate|up fused, attention output, FFN down), plus the LM head. In the int8
path every product is `product(x_q, w_q)` of int8 operands: weights requantised per output
channel, activations per token with a dynamic scale, so the integer core is an exact
int8 x int8 -> int32 product that a miner can mine (the `product` callable, like
`swarm.runtime.builtin.mining_hook`). Only the rescale around it is float.

SmoothQuant (Xiao et al. 2023) moves activation outliers into the weights: with
s_j = max|X_j|^α / max|W_j|^(1-α) per input channel j, X·W = (X/s)·(s·W), and both factors
quantise better. s comes from a calibration pass of the float model over a fixed text. The
division X/s is applied at run time (not folded into the norms), which keeps the code
uniform; it is one elementwise multiply per layer.

QMAX = 63 keeps every weight entry in [-63, 63], inside pouw's [-64, 63] operand range, so
products can be mined as they are. Activations at ±63 lose too much (top-1 agreement with
float ~82-90% depending on α), so by default they are quantised to 13 bits (±4063) and
split into two int7 digits, hi and lo with q = 64·hi + lo, stacked as the rows of one
product [hi; lo] · W: twice the multiply-accumulates, still one exact mineable product, and
better than plain int8 ±127 (bench/llm_quality.py has the figures).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from pouw.backends import chunked_float_product
from pouw.torch_backend import int_mm_usable

#: product(a, b): the exact product of int8 a (m x k) and int8 b (k x n), any int dtype
ProductFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: default int8 range: pouw mines operands in [-64, 63]
QMAX = 63
#: activation digits by default (see the module docstring)
ACT_DIGITS = 2
#: SmoothQuant migration strength (the paper's default; measured best here with 2 digits)
SMOOTH_ALPHA = 0.5
_TINY = 1e-8
#: two-digit activations: q = 64·hi + lo, so a 13-bit activation is two int7 operands
DIGIT_BASE = 64
TWO_DIGIT_QMAX = 63 * DIGIT_BASE + 31


def linear_names(n_layer: int) -> list[str]:
    """Fused linear names in forward order (the LM head last)."""
    return [f"{i}.{p}" for i in range(n_layer) for p in ("qkv", "o", "gate_up", "down")] + [
        "lm_head"]


def fused_weights(tensors: Mapping[str, torch.Tensor], n_layer: int,
                  tied_embeddings: bool) -> dict[str, torch.Tensor]:
    """Weights (out x in, HF layout) of every fused linear, keyed as `linear_names`."""
    out: dict[str, torch.Tensor] = {}
    for i in range(n_layer):
        b = f"blk.{i}."
        out[f"{i}.qkv"] = torch.cat([tensors[b + "attn_q.weight"], tensors[b + "attn_k.weight"],
                                     tensors[b + "attn_v.weight"]])
        out[f"{i}.o"] = tensors[b + "attn_output.weight"]
        out[f"{i}.gate_up"] = torch.cat([tensors[b + "ffn_gate.weight"],
                                         tensors[b + "ffn_up.weight"]])
        out[f"{i}.down"] = tensors[b + "ffn_down.weight"]
    out["lm_head"] = tensors["token_embd.weight" if tied_embeddings else "output.weight"]
    return out


class FloatLinears:
    """The float32 reference: y = x · Wᵀ. Optionally records per-input-channel |x| maxima
    (SmoothQuant calibration)."""

    def __init__(self, weights: Mapping[str, torch.Tensor]) -> None:
        self.weights = dict(weights)
        self.record: dict[str, torch.Tensor] | None = None

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self.record is not None:
            m = x.detach().abs().reshape(-1, x.shape[-1]).amax(dim=0)
            prev = self.record.get(name)
            self.record[name] = m if prev is None else torch.maximum(prev, m)
        return torch.nn.functional.linear(x, self.weights[name])


def smoothing_factors(act_absmax: torch.Tensor, weight: torch.Tensor,
                      alpha: float) -> torch.Tensor:
    """SmoothQuant's s_j = max|X_j|^α / max|W_j|^(1-α) for weight (out x in)."""
    w_absmax = weight.abs().amax(dim=0).clamp(min=1e-5)
    s = act_absmax.clamp(min=1e-5).pow(alpha) / w_absmax.pow(1.0 - alpha)
    return s.clamp(min=1e-5)


def quantise_weight(weight: torch.Tensor, qmax: int) -> tuple[np.ndarray, torch.Tensor]:
    """Per-output-channel symmetric int8: (w_q as k x n int8 numpy, scale per column n)."""
    scale = (weight.abs().amax(dim=1) / qmax).clamp(min=_TINY)
    q = torch.round(weight / scale[:, None]).clamp(-qmax, qmax).to(torch.int8)
    return np.ascontiguousarray(q.t().numpy()), scale.to(torch.float32)


def quantise_activation(x: torch.Tensor, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (row) dynamic symmetric quantisation: (x_q int32 m x k in [-qmax, qmax],
    scale per row)."""
    scale = (x.abs().amax(dim=1) / qmax).clamp(min=_TINY)
    q = torch.round(x / scale[:, None]).clamp_(-qmax, qmax).to(torch.int32)
    return q, scale


def split_digits(q: torch.Tensor) -> np.ndarray:
    """[hi; lo] stacked rows (2m x k, int8) with q = DIGIT_BASE·hi + lo, hi = round(q / 64)
    (|hi| <= 63 and |lo| <= 32 for |q| <= TWO_DIGIT_QMAX: within pouw's [-64, 63])."""
    hi = torch.div(q + DIGIT_BASE // 2, DIGIT_BASE, rounding_mode="floor")
    lo = q - DIGIT_BASE * hi
    return torch.cat([hi, lo]).to(torch.int8).numpy()


def default_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact int8 product on this machine: torch._int_mm where it is exact and fast (a CPU
    with VNNI or AMX: `int_mm_usable`), else float32 GEMM in inner chunks of 1024, exact
    (pouw's `chunked_float_product`; 15-50x faster than oneDNN's int8 loop without VNNI)."""
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    if int_mm_usable("cpu"):
        return torch._int_mm(ta, tb).numpy()
    out: torch.Tensor = chunked_float_product(torch.matmul, lambda x: x.to(torch.int32),
                                              ta.to(torch.float32), tb.to(torch.float32))
    return out.numpy()


@dataclass
class ProductStats:
    """Inference products and multiply-accumulates done through the product callable."""

    products: int = 0
    macs: int = 0
    shapes: dict[tuple[int, int, int], int] = field(default_factory=dict)

    def add(self, m: int, k: int, n: int) -> None:
        self.products += 1
        self.macs += m * k * n
        self.shapes[(m, k, n)] = self.shapes.get((m, k, n), 0) + 1


class Int8Linears:
    """W8A8 linears: every product is `product(x_q, w_q)` on int8, exact, then rescaled.

    `smooth` maps a linear's name to its SmoothQuant factors (None: naive W8A8).
    `float_names` stay in float (e.g. the LM head, if not quantised).
    """

    def __init__(self, weights: Mapping[str, torch.Tensor], *, qmax: int = QMAX,
                 smooth: Mapping[str, torch.Tensor] | None = None,
                 product: ProductFn | None = None,
                 float_names: frozenset[str] = frozenset(), act_digits: int = 1) -> None:
        if not 1 <= qmax <= 127 or act_digits not in (1, 2):
            raise ValueError("qmax must be in 1..127 and act_digits 1 or 2")
        if act_digits == 2 and qmax > 64:
            raise ValueError("two-digit activations are for weights within [-64, 63]")
        self.qmax = qmax
        self.act_digits = act_digits
        self.product: ProductFn = product or default_product
        self.stats = ProductStats()
        self._float = {n: w for n, w in weights.items() if n in float_names}
        self._wq: dict[str, np.ndarray] = {}
        self._ws: dict[str, torch.Tensor] = {}
        self._inv_s: dict[str, torch.Tensor] = {}
        for name, w in weights.items():
            if name in float_names:
                continue
            if smooth is not None and name in smooth:
                s = smooth[name]
                self._inv_s[name] = (1.0 / s).to(torch.float32)
                w = w * s[None, :]
            self._wq[name], self._ws[name] = quantise_weight(w, qmax)

    @property
    def weights(self) -> Mapping[str, np.ndarray]:
        """The int8 weight operands (k x n) by linear name: the B of every product."""
        return self._wq

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name in self._float:
            return torch.nn.functional.linear(x, self._float[name])
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if name in self._inv_s:
            x2 = x2 * self._inv_s[name]
        wq = self._wq[name]
        m, n = x2.shape[0], wq.shape[1]
        if self.act_digits == 1:
            q, xs = quantise_activation(x2, self.qmax)
            exact = torch.from_numpy(self._product(name, q.to(torch.int8).numpy(), wq))
        else:
            q, xs = quantise_activation(x2, TWO_DIGIT_QMAX)
            prod = torch.from_numpy(self._product(name, split_digits(q), wq))
            exact = DIGIT_BASE * prod[:m] + prod[m:]  # |.| < 4064·63·k: int32 up to k = 8388
        # the rescale is float; the int -> float32 conversion rounds only past 2^24
        y = exact.to(torch.float32) * xs[:, None] * self._ws[name][None, :]
        return y.reshape(*shape[:-1], n)

    def _product(self, name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """One exact int8 product through the callable, counted and shape-checked."""
        self.stats.add(a.shape[0], a.shape[1], b.shape[1])
        prod = np.asarray(self.product(a, b))
        if prod.shape != (a.shape[0], b.shape[1]):
            raise ValueError(f"product returned shape {prod.shape} for {name}")
        return prod
