"""The project's own Llama forward pass in torch (CPU): RMSNorm, rotary positions, grouped-
query attention, SwiGLU, a KV cache, and left-padded batches of prompts of any lengths.

Linear layers are a callable `linears(name, x)` (quant.FloatLinears or quant.Int8Linears),
so the same forward serves the float reference and the exact int8 path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from swarm.runtime.llm.gguf_file import LlamaConfig

Linears = Callable[[str, torch.Tensor], torch.Tensor]


@dataclass
class KVCache:
    """Keys and values of every layer ([B, kv_heads, S, head_dim]), which of the S slots
    hold real tokens (left padding does not), and how many real tokens each row has."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor  # [B, S] bool
    lengths: torch.Tensor  # [B] long

    def select(self, rows: torch.Tensor) -> KVCache:
        """The cache of a subset of rows (finished rows leave the batch)."""
        return KVCache([k[rows] for k in self.keys], [v[rows] for v in self.values],
                       self.valid[rows], self.lengths[rows])


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class LlamaModel:
    """Weights plus the forward; `linears` holds every matmul with a weight."""

    def __init__(self, config: LlamaConfig, tensors: dict[str, torch.Tensor],
                 linears: Linears) -> None:
        self.config = config
        self.embed = tensors["token_embd.weight"]
        self.final_norm = tensors["output_norm.weight"]
        self.attn_norms = [tensors[f"blk.{i}.attn_norm.weight"] for i in range(config.n_layer)]
        self.ffn_norms = [tensors[f"blk.{i}.ffn_norm.weight"] for i in range(config.n_layer)]
        self.linears = linears
        hd = config.head_dim
        self.inv_freq = 1.0 / (config.rope_base ** (
            torch.arange(0, hd, 2, dtype=torch.float64) / hd))

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape [B, 1, T, head_dim] for integer positions [B, T]."""
        angles = positions.to(torch.float64)[..., None] * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1)[:, None]
        return angles.cos().to(torch.float32), angles.sin().to(torch.float32)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, valid: torch.Tensor,
                cache: KVCache | None = None) -> tuple[torch.Tensor, KVCache]:
        """Final hidden states [B, T, D] (normed; `logits` maps them to the vocabulary) of
        new tokens [B, T] after `cache`, and the cache extended by them.

        `valid` [B, T] is False on left padding; padded slots are never attended to.
        Only the positions whose logits are needed go through the LM head (`logits`).
        """
        c = self.config
        b, t = tokens.shape
        hd, nh, nkv = c.head_dim, c.n_head, c.n_kv_head
        prev_len = 0 if cache is None else cache.valid.shape[1]
        prev_lengths = (torch.zeros(b, dtype=torch.long) if cache is None else cache.lengths)
        positions = (prev_lengths[:, None] + valid.long().cumsum(dim=1) - 1).clamp(min=0)
        cos, sin = self._rope(positions)
        key_valid = valid if cache is None else torch.cat([cache.valid, valid], dim=1)
        causal = torch.ones(t, prev_len + t, dtype=torch.bool).tril(diagonal=prev_len)
        allowed = key_valid[:, None, :] & causal[None]
        # a padding query attends to itself only, so no softmax row is empty
        query_slot = torch.arange(prev_len, prev_len + t)[:, None]
        allowed |= (torch.arange(prev_len + t)[None, :] == query_slot)[None]
        allowed = allowed[:, None]

        x = self.embed[tokens]
        keys, values = [], []
        for i in range(c.n_layer):
            h = rms_norm(x, self.attn_norms[i], c.rms_eps)
            qkv = self.linears(f"{i}.qkv", h)
            q, k, v = torch.split(qkv, [nh * hd, nkv * hd, nkv * hd], dim=-1)
            q = q.view(b, t, nh, hd).transpose(1, 2)
            k = k.view(b, t, nkv, hd).transpose(1, 2)
            v = v.view(b, t, nkv, hd).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            if cache is not None:
                k = torch.cat([cache.keys[i], k], dim=2)
                v = torch.cat([cache.values[i], v], dim=2)
            keys.append(k)
            values.append(v)
            groups = nh // nkv
            # the math kernel: torch's CPU flash kernel gives a batch row a result that
            # depends on the thread that ran it (1-3 queries, i.e. decoding; seen on AVX2
            # with 2 threads), so two copies of one prompt in a batch answered differently
            with sdpa_kernel(SDPBackend.MATH):
                attn = F.scaled_dot_product_attention(
                    q, k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1),
                    attn_mask=allowed)
            x = x + self.linears(f"{i}.o", attn.transpose(1, 2).reshape(b, t, nh * hd))
            h = rms_norm(x, self.ffn_norms[i], c.rms_eps)
            gate, up = self.linears(f"{i}.gate_up", h).chunk(2, dim=-1)
            x = x + self.linears(f"{i}.down", F.silu(gate) * up)
        new_cache = KVCache(keys, values, key_valid, prev_lengths + valid.long().sum(dim=1))
        return rms_norm(x, self.final_norm, c.rms_eps), new_cache

    @torch.no_grad()
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of final hidden states (any leading shape)."""
        return self.linears("lm_head", hidden)
