"""A tiny Llama GGUF written with gguf.GGUFWriter, with known reference weights.

2 layers, hidden 32, 4 heads / 2 KV heads, FFN 64, a byte-level vocabulary (256 byte
symbols, 3 control tokens, 3 merges) and the ChatML template. Tensor types cover what the
real file holds: F32 (norms, Q, K), Q8_0 (embedding, hand-built blocks), Q4_1 (hand-built
blocks for V; quantised by gguf for the rest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
from tokenizers import pre_tokenizers

from swarm.runtime.llm.gguf_file import permute_qk

N_LAYER, D, N_HEAD, N_KV, D_FF, CTX = 2, 32, 4, 2, 64, 128
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he"]
TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def vocabulary() -> list[str]:
    return SPECIALS + sorted(pre_tokenizers.ByteLevel.alphabet()) + ["Ġt", "he", "Ġthe"]


def q8_0_blocks(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Hand-built Q8_0 (per 32 values: fp16 scale d, 32 int8 q; value d·q) and its values."""
    blocks, values = [], []
    for r in range(rows):
        for b in range(cols // 32):
            d = np.float16(0.01 * (1 + (r + b) % 5))
            q = ((np.arange(32) * 7 + r * 3 + b) % 255 - 127).astype(np.int8)
            blocks.append(d.tobytes() + q.tobytes())
            values.append(np.float32(d) * q.astype(np.float32))
    raw = np.frombuffer(b"".join(blocks), dtype=np.uint8).reshape(rows, -1)
    return raw, np.concatenate(values).reshape(rows, cols)


def q4_1_blocks(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Hand-built Q4_1 (per 32: fp16 scale d, fp16 min m, 16 bytes of nibbles: values 0-15
    low nibbles, 16-31 high nibbles; value d·q + m) and its values."""
    blocks, values = [], []
    for r in range(rows):
        for b in range(cols // 32):
            d, m = np.float16(0.05 + 0.01 * r), np.float16(-0.4 + 0.1 * b)
            q = (np.arange(32) + r + 3 * b) % 16
            packed = (q[:16] | (q[16:] << 4)).astype(np.uint8)
            blocks.append(d.tobytes() + m.tobytes() + packed.tobytes())
            values.append(np.float32(d) * q.astype(np.float32) + np.float32(m))
    raw = np.frombuffer(b"".join(blocks), dtype=np.uint8).reshape(rows, -1)
    return raw, np.concatenate(values).reshape(rows, cols)


@dataclass
class TinyModel:
    """The file's path and the float weights (HF layout) the loader must return."""

    path: Path
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    #: tensors stored quantised by gguf: compare within quantisation error only
    approximate: set[str] = field(default_factory=set)


def write_tiny_gguf(path: Path, *, seed: int = 0, arch: str = "llama",
                    skip: frozenset[str] = frozenset()) -> TinyModel:
    """The tiny model; `arch` and `skip` (tensor names left out) make broken variants."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    kv = N_KV * (D // N_HEAD)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_block_count(N_LAYER)
    w.add_context_length(CTX)
    w.add_embedding_length(D)
    w.add_feed_forward_length(D_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(vocab))
    w.add_rope_dimension_count(D // N_HEAD)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(vocab)
    w.add_token_types([3] * len(SPECIALS) + [1] * (len(vocab) - len(SPECIALS)))
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    w.add_chat_template(TEMPLATE)

    tiny = TinyModel(path)

    def put(name: str, data: np.ndarray,
            raw_dtype: gguf.GGMLQuantizationType | None = None) -> None:
        if name not in skip:
            w.add_tensor(name, data, raw_dtype=raw_dtype)
    raw, values = q8_0_blocks(len(vocab), D)
    put("token_embd.weight", raw, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    tiny.reference["token_embd.weight"] = values
    norm = (1.0 + 0.1 * rng.standard_normal(D)).astype(np.float32)
    put("output_norm.weight", norm)
    tiny.reference["output_norm.weight"] = norm
    for i in range(N_LAYER):
        b = f"blk.{i}."
        for name in ("attn_norm", "ffn_norm"):
            t = (1.0 + 0.1 * rng.standard_normal(D)).astype(np.float32)
            put(b + name + ".weight", t)
            tiny.reference[b + name + ".weight"] = t
        for name, rows, heads in (("attn_q", D, N_HEAD), ("attn_k", kv, N_KV)):
            t = (0.3 * rng.standard_normal((rows, D))).astype(np.float32)
            put(b + name + ".weight", permute_qk(t, heads))  # llama.cpp's layout
            tiny.reference[b + name + ".weight"] = t
        raw, values = q4_1_blocks(kv, D)
        put(b + "attn_v.weight", raw, raw_dtype=gguf.GGMLQuantizationType.Q4_1)
        tiny.reference[b + "attn_v.weight"] = values
        for name, shape in (("attn_output", (D, D)), ("ffn_gate", (D_FF, D)),
                            ("ffn_up", (D_FF, D)), ("ffn_down", (D, D_FF))):
            t = (0.2 * rng.standard_normal(shape)).astype(np.float32)
            q = gguf.quants.quantize(t, gguf.GGMLQuantizationType.Q4_1)
            put(b + name + ".weight", q, raw_dtype=gguf.GGMLQuantizationType.Q4_1)
            tiny.reference[b + name + ".weight"] = t
            tiny.approximate.add(b + name + ".weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tiny
