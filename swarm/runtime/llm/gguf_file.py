"""Read a Llama-architecture GGUF file: hyper-parameters, float weights, tokenizer, template.

Weights are dequantised with `gguf.quants.dequantize` (Q4_1, Q8_0, F32, F16, …) to float32
in Hugging Face layout: llama.cpp's converter permutes the rows of the Q and K projections
(each head's rotary halves interleaved, for its pairwise RoPE); we undo that permutation so
the forward pass uses the usual half-split ("rotate_half") RoPE.

The tokenizer is a Hugging Face `tokenizers` byte-level BPE built from the file's own
vocabulary and merges (no hand-written BPE), and prompts are formatted by the file's own
chat template, rendered with jinja2 in a sandbox.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from swarm.runtime.base import BackendError


class GGUFError(BackendError, ValueError):
    """The GGUF file is unreadable, truncated, or not a Llama model we can run."""


#: GGUF token_type values (llama.cpp's llama_token_type): 3 = control, 4 = user-defined
_SPECIAL_TOKEN_TYPES = (3, 4)
#: tokenizer.ggml.pre values whose pre-tokenisation we build: GPT-2 byte-level regex,
#: and SmolLM's, which also splits every digit on its own
_PRE_TOKENIZERS = ("smollm", "gpt-2", "default")


@dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters of a Llama-style decoder, read from GGUF metadata."""

    n_layer: int
    d_model: int
    d_ff: int
    n_head: int
    n_kv_head: int
    vocab_size: int
    context_length: int
    rope_base: float
    rms_eps: float
    tied_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LlamaConfig:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class SpecialTokens:
    """Ids the generator needs; eos ends an answer (`<|im_end|>` for SmolLM2-Instruct)."""

    bos: int
    eos: int
    pad: int
    bos_text: str
    eos_text: str


@dataclass
class LoadedModel:
    """Everything a forward pass and a chat need, independent of where it was read from."""

    config: LlamaConfig
    tensors: dict[str, torch.Tensor]
    tokenizer: Tokenizer
    chat_template: str
    special: SpecialTokens
    name: str


def tensor_names(config: LlamaConfig) -> list[str]:
    """Names (GGUF's) of every tensor the forward pass reads."""
    names = ["token_embd.weight", "output_norm.weight"]
    if not config.tied_embeddings:
        names.append("output.weight")
    for i in range(config.n_layer):
        names += [f"blk.{i}.{p}.weight" for p in (
            "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
            "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")]
    return names


def expected_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Shapes (rows = output features, HF layout) every tensor must have."""
    d, kv = config.d_model, config.n_kv_head * config.head_dim
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (config.vocab_size, d), "output_norm.weight": (d,)}
    if not config.tied_embeddings:
        shapes["output.weight"] = (config.vocab_size, d)
    for i in range(config.n_layer):
        b = f"blk.{i}."
        shapes |= {
            b + "attn_norm.weight": (d,), b + "ffn_norm.weight": (d,),
            b + "attn_q.weight": (d, d), b + "attn_k.weight": (kv, d),
            b + "attn_v.weight": (kv, d), b + "attn_output.weight": (d, d),
            b + "ffn_gate.weight": (config.d_ff, d), b + "ffn_up.weight": (config.d_ff, d),
            b + "ffn_down.weight": (d, config.d_ff)}
    return shapes


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation: per head, GGUF interleaves the two rotary
    halves (rows 0, d/2, 1, d/2+1, …); HF keeps them as two contiguous halves."""
    rows = w.shape[0]
    half = rows // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's permutation (HF -> GGUF layout); the inverse of `unpermute_qk`."""
    rows = w.shape[0]
    half = rows // n_head // 2
    return w.reshape(n_head, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def build_tokenizer(tokens: Sequence[str], merges: Sequence[str], token_types: Sequence[int],
                    pre: str) -> Tokenizer:
    """A `tokenizers` byte-level BPE from GGUF vocabulary (ids = positions) and merges."""
    if pre not in _PRE_TOKENIZERS:
        raise GGUFError(
            f"tokenizer.ggml.pre {pre!r} is not supported ({', '.join(_PRE_TOKENIZERS)})")
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise GGUFError("tokenizer.ggml.tokens has duplicate entries")
    pairs: list[tuple[str, str]] = []
    for m in merges:
        left, sep, right = m.partition(" ")
        if not sep:
            raise GGUFError(f"malformed merge {m!r}")
        pairs.append((left, right))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(t, special=True, normalized=False)
                for t, kind in zip(tokens, token_types, strict=True)
                if kind in _SPECIAL_TOKEN_TYPES]
    tok.add_special_tokens(specials)
    return tok


class ChatTemplate:
    """The model's own jinja2 chat template, rendered in a sandbox (as transformers does)."""

    def __init__(self, source: str, special: SpecialTokens) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_template_error
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise GGUFError(f"chat template does not parse: {exc}") from exc
        self.source = source
        self.special = special

    def render(self, messages: Sequence[Mapping[str, str]], *,
               add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages` ({"role", "content"} dicts)."""
        return self._template.render(
            messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt,
            bos_token=self.special.bos_text, eos_token=self.special.eos_text)


def _raise_template_error(message: str) -> None:
    raise TemplateError(message)


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise GGUFError(f"GGUF metadata lacks {key}")
        return default
    return field.contents()


def read_gguf(path: Path) -> LoadedModel:
    """Read and dequantise a Llama GGUF; raises GGUFError on anything unreadable."""
    try:
        reader = gguf.GGUFReader(str(path), "r")
    except (ValueError, OSError, IndexError, KeyError, TypeError, struct.error) as exc:
        raise GGUFError(f"{path}: not a readable GGUF file ({exc})") from exc
    try:
        return _read(reader, path)
    except GGUFError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, struct.error) as exc:
        raise GGUFError(f"{path}: corrupt GGUF ({exc})") from exc


def _read(reader: Any, path: Path) -> LoadedModel:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise GGUFError(f"{path}: architecture {arch!r}, only 'llama' is supported")
    tokens = [str(t) for t in _field(reader, "tokenizer.ggml.tokens")]
    config = _read_config(reader, path, tokens)
    tensors = _read_tensors(reader, path, config)
    tokenizer, special = _read_tokenizer(reader, path, tokens)
    template = str(_field(reader, "tokenizer.chat_template"))
    ChatTemplate(template, special)  # parse now: a broken template fails the load, not a chat
    name = str(_field(reader, "general.name", path.stem))
    return LoadedModel(config, tensors, tokenizer, template, special, name)


def _read_config(reader: Any, path: Path, tokens: Sequence[str]) -> LlamaConfig:
    """The hyper-parameters, checked for what the forward pass supports."""
    n_head = int(_field(reader, "llama.attention.head_count"))
    d_model = int(_field(reader, "llama.embedding_length"))
    config = LlamaConfig(
        n_layer=int(_field(reader, "llama.block_count")),
        d_model=d_model,
        d_ff=int(_field(reader, "llama.feed_forward_length")),
        n_head=n_head,
        n_kv_head=int(_field(reader, "llama.attention.head_count_kv", n_head)),
        vocab_size=int(_field(reader, "llama.vocab_size", len(tokens))),
        context_length=int(_field(reader, "llama.context_length")),
        rope_base=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        tied_embeddings="output.weight" not in {t.name for t in reader.tensors},
    )
    if d_model % n_head or config.head_dim % 2 or n_head % config.n_kv_head:
        raise GGUFError(f"{path}: inconsistent head counts {config}")
    rope_dim = int(_field(reader, "llama.rope.dimension_count", config.head_dim))
    if rope_dim != config.head_dim:
        raise GGUFError(f"{path}: partial rotary ({rope_dim} of {config.head_dim}) unsupported")
    if len(tokens) != config.vocab_size:
        raise GGUFError(f"{path}: {len(tokens)} tokens but vocab_size {config.vocab_size}")
    model = str(_field(reader, "tokenizer.ggml.model"))
    if model != "gpt2":
        raise GGUFError(f"{path}: tokenizer model {model!r}, only byte-level BPE ('gpt2')")
    return config


def _read_tensors(reader: Any, path: Path, config: LlamaConfig) -> dict[str, torch.Tensor]:
    """Every weight, dequantised to float32 in HF layout (Q/K rows unpermuted)."""
    names = {t.name: t for t in reader.tensors}
    tensors: dict[str, torch.Tensor] = {}
    for name, shape in expected_shapes(config).items():
        t = names.get(name)
        if t is None:
            raise GGUFError(f"{path}: tensor {name} missing")
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        if tuple(w.shape) != shape:
            raise GGUFError(f"{path}: {name} has shape {tuple(w.shape)}, expected {shape}")
        if not np.isfinite(w).all():
            raise GGUFError(f"{path}: {name} holds non-finite values")
        if name.endswith("attn_q.weight"):
            w = unpermute_qk(w, config.n_head)
        elif name.endswith("attn_k.weight"):
            w = unpermute_qk(w, config.n_kv_head)
        tensors[name] = torch.from_numpy(np.array(w, dtype=np.float32, order="C"))  # own copy
    return tensors


def _read_tokenizer(reader: Any, path: Path, tokens: Sequence[str]
                    ) -> tuple[Tokenizer, SpecialTokens]:
    """The BPE tokenizer and the special token ids."""
    types = [int(x) for x in _field(reader, "tokenizer.ggml.token_type")]
    merges = [str(m) for m in _field(reader, "tokenizer.ggml.merges")]
    tokenizer = build_tokenizer(tokens, merges, types, str(_field(reader, "tokenizer.ggml.pre",
                                                                   "default")))
    bos = int(_field(reader, "tokenizer.ggml.bos_token_id"))
    eos = int(_field(reader, "tokenizer.ggml.eos_token_id"))
    pad = int(_field(reader, "tokenizer.ggml.padding_token_id", eos))
    if not all(0 <= i < len(tokens) for i in (bos, eos, pad)):
        raise GGUFError(f"{path}: special token id out of range")
    return tokenizer, SpecialTokens(bos=bos, eos=eos, pad=pad, bos_text=tokens[bos],
                                    eos_text=tokens[eos])
