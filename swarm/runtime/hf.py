"""A local Hugging Face checkpoint directory (config.json + *.safetensors) in plain torch.

Supported: GPT-2-style decoders (`model_type: "gpt2"`) and Llama-style decoders
(`"llama"`, also `"qwen2"` and `"mistral"` without sliding windows: RMSNorm, rotary
positions, grouped-query attention, SwiGLU) with a byte-level BPE tokenizer (vocab.json +
merges.txt, or tokenizer.json; sentencepiece `tokenizer.model` files are not read). Other
architectures raise
UnsupportedArchitecture naming what was found, so a node operator learns at start-up, not
mid-round. Nothing is downloaded: the directory must already hold every file.

Answers are greedy continuations of "Question: …\\nAnswer:"; judgments compare the mean
per-token log-likelihood of the two answers under the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from swarm.runtime.base import (
    Answer,
    BackendError,
    Judgment,
    Outcome,
    UnsupportedArchitecture,
)

SUPPORTED = ("gpt2", "llama", "qwen2", "mistral")
PROMPT = "Question: {q}\nAnswer:"
#: Mean log-likelihood gap under which the likelihood judge calls a tie.
TIE_MARGIN = 1e-4

# GPT-2's pre-tokeniser with \p{L} / \p{N} spelled for Python's re.
_PRETOKEN = re.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


class ByteBPETokenizer:
    """GPT-2 byte-level BPE: vocab (token -> id) and ranked merges."""

    def __init__(self, vocab: dict[str, int], merges: Sequence[tuple[str, str]]) -> None:
        self.vocab = vocab
        self.inverse = {i: t for t, i in vocab.items()}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.byte_map = bytes_to_unicode()
        self.byte_unmap = {c: b for b, c in self.byte_map.items()}
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def from_dir(cls, path: Path) -> ByteBPETokenizer:
        if (path / "vocab.json").exists() and (path / "merges.txt").exists():
            vocab = json.loads((path / "vocab.json").read_text())
            lines = (path / "merges.txt").read_text().splitlines()
            merges = [tuple(line.split()) for line in lines
                      if line and not line.startswith("#version")]
        elif (path / "tokenizer.json").exists():
            model = json.loads((path / "tokenizer.json").read_text()).get("model", {})
            if model.get("type") != "BPE":
                raise UnsupportedArchitecture(f"tokenizer type {model.get('type')!r}")
            vocab = model["vocab"]
            merges = [tuple(m.split()) if isinstance(m, str) else tuple(m)
                      for m in model["merges"]]
        else:
            raise BackendError(f"{path} has no vocab.json/merges.txt or tokenizer.json")
        return cls(vocab, [(a, b) for a, b in merges])

    def _bpe(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), math.inf), i)
                     for i, (a, b) in enumerate(itertools.pairwise(parts))]
            rank, i = min(pairs)
            if rank == math.inf:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        self._cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in _PRETOKEN.findall(text):
            mapped = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
            for tok in self._bpe(mapped):
                if tok not in self.vocab:
                    raise BackendError(f"token {tok!r} missing from the vocabulary")
                ids.append(self.vocab[tok])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        chars = "".join(self.inverse.get(i, "") for i in ids)
        return bytes(self.byte_unmap[c] for c in chars if c in self.byte_unmap).decode(
            "utf-8", "replace")


def _require_tensors(tensors: Mapping[str, torch.Tensor], needed: Iterable[str]) -> None:
    """A checkpoint must hold every tensor its architecture reads (names the first five)."""
    missing = [n for n in needed if n not in tensors]
    if missing:
        raise BackendError(f"checkpoint lacks tensors: {', '.join(missing[:5])}")


def _check_context(length: int, n_ctx: int) -> None:
    """A sequence must fit the model's context (positions past it were never trained)."""
    if length > n_ctx:
        raise BackendError(f"sequence of {length} tokens exceeds the context of {n_ctx}")


class GPT2:
    """GPT-2 forward pass over a checkpoint's tensors (HF naming, Conv1D weights in x out)."""

    def __init__(self, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.n_layer = int(config["n_layer"])
        self.n_head = int(config["n_head"])
        self.n_embd = int(config["n_embd"])
        self.n_ctx = int(config.get("n_positions", config.get("n_ctx", 1024)))
        self.eps = float(config.get("layer_norm_epsilon", 1e-5))
        self.t = {k.removeprefix("transformer."): v.to(torch.float32) for k, v in
                  tensors.items()}
        needed = ["wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"] + [
            f"h.{i}.{n}" for i in range(self.n_layer) for n in (
                "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")]
        _require_tensors(self.t, needed)
        self.lm_head = self.t.get("lm_head.weight", self.t["wte.weight"])

    @torch.no_grad()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for ids (B, T)."""
        t = self.t
        bsz, n = ids.shape
        _check_context(n, self.n_ctx)
        d, nh = self.n_embd, self.n_head
        x = t["wte.weight"][ids] + t["wpe.weight"][:n]
        for i in range(self.n_layer):
            p = f"h.{i}."
            h = F.layer_norm(x, (d,), t[p + "ln_1.weight"], t[p + "ln_1.bias"], self.eps)
            qkv = (h @ t[p + "attn.c_attn.weight"] + t[p + "attn.c_attn.bias"])
            q, k, v = qkv.view(bsz, n, 3, nh, d // nh).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            y = y.transpose(1, 2).reshape(bsz, n, d)
            x = x + y @ t[p + "attn.c_proj.weight"] + t[p + "attn.c_proj.bias"]
            h = F.layer_norm(x, (d,), t[p + "ln_2.weight"], t[p + "ln_2.bias"], self.eps)
            h = F.gelu(h @ t[p + "mlp.c_fc.weight"] + t[p + "mlp.c_fc.bias"],
                       approximate="tanh")
            x = x + h @ t[p + "mlp.c_proj.weight"] + t[p + "mlp.c_proj.bias"]
        x = F.layer_norm(x, (d,), t["ln_f.weight"], t["ln_f.bias"], self.eps)
        return x @ self.lm_head.T


class Llama:
    """Llama-family forward pass (HF naming, nn.Linear weights out x in)."""

    def __init__(self, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.n_layer = int(config["num_hidden_layers"])
        self.n_head = int(config["num_attention_heads"])
        self.n_kv = int(config.get("num_key_value_heads", self.n_head))
        self.d = int(config["hidden_size"])
        self.hd = int(config.get("head_dim", self.d // self.n_head))
        self.n_ctx = int(config.get("max_position_embeddings", 2048))
        self.eps = float(config.get("rms_norm_eps", 1e-6))
        self.theta = float(config.get("rope_theta", 10000.0))
        if config.get("rope_scaling"):
            raise UnsupportedArchitecture("rope_scaling is not supported")
        window = config.get("sliding_window") if config.get("use_sliding_window", True) else None
        if isinstance(window, int):  # exact as long as no sequence is longer than the window
            self.n_ctx = min(self.n_ctx, window)
        self.t = {k.removeprefix("model."): v.to(torch.float32) for k, v in tensors.items()}
        needed = ["embed_tokens.weight", "norm.weight"] + [
            f"layers.{i}.{n}.weight" for i in range(self.n_layer) for n in (
                "input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                "self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj",
                "mlp.down_proj")]
        _require_tensors(self.t, needed)
        self.lm_head = self.t.get("lm_head.weight", self.t["embed_tokens.weight"])

    def _norm(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w
        return out

    def _rope(self, x: torch.Tensor) -> torch.Tensor:
        """Rotary positions, HF layout: dimension i pairs with i + head_dim/2."""
        n = x.shape[-2]
        inv = 1.0 / (self.theta ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        ang = torch.outer(torch.arange(n, dtype=torch.float32), inv)
        cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
        half = self.hd // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    @torch.no_grad()
    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for ids (B, T)."""
        t = self.t
        bsz, n = ids.shape
        _check_context(n, self.n_ctx)
        x = t["embed_tokens.weight"][ids]
        for i in range(self.n_layer):
            p = f"layers.{i}."
            h = self._norm(x, t[p + "input_layernorm.weight"])

            def proj(name: str, heads: int, h: torch.Tensor = h, p: str = p) -> torch.Tensor:
                y = h @ t[p + f"self_attn.{name}.weight"].T
                bias = t.get(p + f"self_attn.{name}.bias")
                y = y if bias is None else y + bias
                return y.view(bsz, n, heads, self.hd).transpose(1, 2)

            q = self._rope(proj("q_proj", self.n_head))
            k = self._rope(proj("k_proj", self.n_kv))
            v = proj("v_proj", self.n_kv)
            rep = self.n_head // self.n_kv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + y.transpose(1, 2).reshape(bsz, n, -1) @ t[p + "self_attn.o_proj.weight"].T
            h = self._norm(x, t[p + "post_attention_layernorm.weight"])
            gate = F.silu(h @ t[p + "mlp.gate_proj.weight"].T)
            x = x + (gate * (h @ t[p + "mlp.up_proj.weight"].T)) @ t[p + "mlp.down_proj.weight"].T
        out: torch.Tensor = self._norm(x, t["norm.weight"]) @ self.lm_head.T
        return out


def checkpoint_files(path: Path) -> list[Path]:
    files = sorted(path.glob("*.safetensors"))
    if not (path / "config.json").exists() or not files:
        raise BackendError(f"{path} needs config.json and *.safetensors")
    return files


def checkpoint_model_id(path: Path) -> bytes:
    """SHA-256 over the weights files (sorted by name, each length-prefixed)."""
    h = hashlib.sha256()
    for f in checkpoint_files(path):
        data = f.read_bytes()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.digest()


class HFCheckpointBackend:
    """InferenceBackend over a local checkpoint directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        files = checkpoint_files(self.path)
        config = json.loads((self.path / "config.json").read_text())
        arch = config.get("model_type")
        if arch not in SUPPORTED:
            raise UnsupportedArchitecture(
                f"model_type {arch!r} ({config.get('architectures')}) is not supported; "
                f"supported: {', '.join(SUPPORTED)}")
        tensors: dict[str, torch.Tensor] = {}
        for f in files:
            tensors.update(load_file(str(f)))
        self.model: GPT2 | Llama = (GPT2(config, tensors) if arch == "gpt2"
                                    else Llama(config, tensors))
        self.tokenizer = ByteBPETokenizer.from_dir(self.path)
        eos = config.get("eos_token_id")
        self.eos: int | None = int(eos) if isinstance(eos, int) else None
        self._model_id = checkpoint_model_id(self.path)

    @property
    def model_id(self) -> bytes:
        return self._model_id

    def generate(self, prompt: str, *, max_tokens: int) -> tuple[str, float]:
        """Greedy continuation of `prompt` (stops at EOS or a blank line)."""
        ids = self.tokenizer.encode(PROMPT.format(q=prompt))
        start = len(ids)
        total = 0.0
        for _ in range(max_tokens):
            window = ids[-self.model.n_ctx:]
            lp = self.model.logits(torch.tensor([window]))[0, -1].log_softmax(-1)
            nxt = int(lp.argmax())
            if nxt == self.eos:
                break
            total += float(lp[nxt])
            ids.append(nxt)
            if self.tokenizer.decode(ids[start:]).endswith("\n\n"):
                break
        return self.tokenizer.decode(ids[start:]).strip(), total

    def mean_logprob(self, question: str, answer: str) -> float:
        """Mean per-token log-likelihood of `answer` after the question prompt."""
        prefix = self.tokenizer.encode(PROMPT.format(q=question))
        target = self.tokenizer.encode(" " + answer.strip())
        if not target:
            return -math.inf
        ids = (prefix + target)[-self.model.n_ctx:]
        lp = self.model.logits(torch.tensor([ids[:-1]]))[0].log_softmax(-1)
        n = min(len(target), len(ids) - 1)
        pos = torch.arange(len(ids) - 1 - n, len(ids) - 1)
        return float(lp[pos, torch.tensor(ids[-n:])].mean())

    def judge_sync(self, question: str, answer_a: str, answer_b: str) -> Judgment:
        a, b = self.mean_logprob(question, answer_a), self.mean_logprob(question, answer_b)
        reason = f"mean log-likelihood A={a:.4f} B={b:.4f}"
        if abs(a - b) <= TIE_MARGIN or (math.isinf(a) and math.isinf(b)):
            return Judgment(Outcome.TIE, reason)
        return Judgment(Outcome.A if a > b else Outcome.B, reason)

    async def answer(self, prompt: str, *, max_tokens: int) -> Answer:
        text, lp = await asyncio.to_thread(self.generate, prompt, max_tokens=max_tokens)
        return Answer(text, self.model_id, lp)

    async def judge(self, question: str, answer_a: str, answer_b: str) -> Judgment:
        return await asyncio.to_thread(self.judge_sync, question, answer_a, answer_b)

    async def screen(self, question: str, answer: str) -> bool | None:
        """No opinion: a base checkpoint's likelihood of one answer says little about whether
        it is right, so this backend only compares answers (its `judge`)."""
        return None

    async def judge_pairs(self, question: str,
                          pairs: Sequence[tuple[str, str]]) -> list[Judgment]:
        return await asyncio.to_thread(
            lambda: [self.judge_sync(question, a, b) for a, b in pairs])

    async def screen_answers(self, question: str, answers: Sequence[str]) -> list[bool | None]:
        return [None] * len(answers)
