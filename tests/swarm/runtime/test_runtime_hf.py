"""The local Hugging Face checkpoint backend on tiny GPT-2 checkpoints written here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from swarm.runtime.base import BackendError, InferenceBackend, Outcome, UnsupportedArchitecture
from swarm.runtime.hf import (
    ByteBPETokenizer,
    HFCheckpointBackend,
    checkpoint_model_id,
)
from tests.framework.checkpoints import CTX, HEADS, LAYERS, D, gpt2_tensors, vocab, write_checkpoint


def reference_logits(t: dict[str, torch.Tensor], ids: list[int]) -> torch.Tensor:
    """An independent, loop-by-loop GPT-2 forward pass (no batching, explicit softmax)."""
    def ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mu = x.mean()
        return (x - mu) / torch.sqrt(((x - mu) ** 2).mean() + 1e-5) * w + b

    def gelu(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    xs = [t["wte.weight"][i] + t["wpe.weight"][p] for p, i in enumerate(ids)]
    hd = D // HEADS
    for layer in range(LAYERS):
        p = f"h.{layer}."
        qkv = [ln(x, t[p + "ln_1.weight"], t[p + "ln_1.bias"]) @ t[p + "attn.c_attn.weight"]
               + t[p + "attn.c_attn.bias"] for x in xs]
        new = []
        for i, x in enumerate(xs):
            heads: list[torch.Tensor] = []
            for h in range(HEADS):
                q = qkv[i][h * hd:(h + 1) * hd]
                scores = torch.stack([q @ qkv[j][D + h * hd:D + (h + 1) * hd]
                                      for j in range(i + 1)]) / math.sqrt(hd)
                w = torch.exp(scores - scores.max())
                w = w / w.sum()
                heads.append(torch.stack([w[j] * qkv[j][2 * D + h * hd:2 * D + (h + 1) * hd]
                                          for j in range(i + 1)]).sum(dim=0))
            y = torch.cat(heads) @ t[p + "attn.c_proj.weight"] + t[p + "attn.c_proj.bias"]
            new.append(x + y)
        xs = []
        for x in new:
            m = gelu(ln(x, t[p + "ln_2.weight"], t[p + "ln_2.bias"]) @ t[p + "mlp.c_fc.weight"]
                     + t[p + "mlp.c_fc.bias"])
            xs.append(x + m @ t[p + "mlp.c_proj.weight"] + t[p + "mlp.c_proj.bias"])
    return torch.stack([ln(x, t["ln_f.weight"], t["ln_f.bias"]) @ t["wte.weight"].T
                        for x in xs])


def test_tokenizer_merges_and_round_trip(tmp_path: Path) -> None:
    for as_json in (False, True):
        d = write_checkpoint(tmp_path / str(as_json), gpt2_tensors(0), tokenizer_json=as_json)
        tok = ByteBPETokenizer.from_dir(d)
        ids = tok.encode("Question: What is 2+2?\nAnswer: 4 é")
        assert vocab()["ĠWhat"] in ids  # merges applied in rank order
        assert vocab()["ha"] not in ids  # ...and fully
        assert tok.decode(ids) == "Question: What is 2+2?\nAnswer: 4 é"


def test_forward_matches_independent_reference(tmp_path: Path) -> None:
    tensors = gpt2_tensors(1)
    backend = HFCheckpointBackend(write_checkpoint(tmp_path, tensors))
    ids = backend.tokenizer.encode("What is 12*3?")
    got = backend.model.logits(torch.tensor([ids]))[0]
    want = reference_logits(tensors, ids)
    assert got.shape == (len(ids), len(vocab()))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


async def test_answer_and_judge(tmp_path: Path) -> None:
    backend = HFCheckpointBackend(write_checkpoint(tmp_path, gpt2_tensors(2, blank=True)))
    assert isinstance(backend, InferenceBackend)
    ans = await backend.answer("What is 3+4?", max_tokens=3)
    assert ans.text == "777"
    assert ans.model_id == backend.model_id and ans.token_logprob is not None
    assert ans.token_logprob > -0.1  # the model is nearly certain of "7" (3 tokens)
    assert (await backend.judge("What is 3+4?", "7", "8")).outcome is Outcome.A
    assert (await backend.judge("What is 3+4?", "8", "7")).outcome is Outcome.B
    assert (await backend.judge("What is 3+4?", "7", " 7 ")).outcome is Outcome.TIE


def test_model_id_is_the_weights_hash(tmp_path: Path) -> None:
    a = write_checkpoint(tmp_path / "a", gpt2_tensors(3))
    b = write_checkpoint(tmp_path / "b", gpt2_tensors(4))
    assert HFCheckpointBackend(a).model_id == checkpoint_model_id(a)
    assert len(checkpoint_model_id(a)) == 32
    assert checkpoint_model_id(a) != checkpoint_model_id(b)


def test_unsupported_and_broken_checkpoints(tmp_path: Path) -> None:
    falcon = write_checkpoint(tmp_path / "falcon", gpt2_tensors(5), model_type="falcon")
    with pytest.raises(UnsupportedArchitecture, match="'falcon'"):
        HFCheckpointBackend(falcon)
    broken = gpt2_tensors(5)
    del broken["h.1.mlp.c_fc.weight"]
    with pytest.raises(BackendError, match=r"h\.1\.mlp\.c_fc\.weight"):
        HFCheckpointBackend(write_checkpoint(tmp_path / "broken", broken))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match=r"config\.json"):
        HFCheckpointBackend(tmp_path / "empty")


LLAMA = {"model_type": "llama", "hidden_size": D, "intermediate_size": 12,
         "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
         "max_position_embeddings": CTX, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
         "tie_word_embeddings": False}


def llama_tensors(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    v, hd, kv = len(vocab()), D // 2, 1

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.3

    t = {"model.embed_tokens.weight": r(v, D), "model.norm.weight": 1 + r(D),
         "lm_head.weight": r(v, D)}
    for i in range(2):
        p = f"model.layers.{i}."
        t |= {p + "input_layernorm.weight": 1 + r(D), p + "self_attn.q_proj.weight": r(D, D),
              p + "self_attn.k_proj.weight": r(kv * hd, D),
              p + "self_attn.v_proj.weight": r(kv * hd, D),
              p + "self_attn.o_proj.weight": r(D, D),
              p + "post_attention_layernorm.weight": 1 + r(D),
              p + "mlp.gate_proj.weight": r(12, D), p + "mlp.up_proj.weight": r(12, D),
              p + "mlp.down_proj.weight": r(D, 12)}
    return t


def llama_reference(t: dict[str, torch.Tensor], ids: list[int]) -> torch.Tensor:
    """Llama written out position by position: rotation of (x_j, x_{j+hd/2}) pairs by
    angle pos * theta^(-2j/hd), one shared key/value head for both query heads."""
    hd = D // 2

    def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x * x).mean() + 1e-6) * w

    def rotate(x: torch.Tensor, pos: int) -> torch.Tensor:
        out = x.clone()
        for j in range(hd // 2):
            a = pos * 10000.0 ** (-2 * j / hd)
            c, s = math.cos(a), math.sin(a)
            out[j] = x[j] * c - x[j + hd // 2] * s
            out[j + hd // 2] = x[j] * s + x[j + hd // 2] * c
        return out

    xs = [t["model.embed_tokens.weight"][i] for i in ids]
    for layer in range(2):
        p = f"model.layers.{layer}."
        hs = [rms(x, t[p + "input_layernorm.weight"]) for x in xs]
        ks = [rotate(t[p + "self_attn.k_proj.weight"] @ h, i) for i, h in enumerate(hs)]
        vs = [t[p + "self_attn.v_proj.weight"] @ h for h in hs]
        new = []
        for i, (x, h) in enumerate(zip(xs, hs, strict=True)):
            q = t[p + "self_attn.q_proj.weight"] @ h
            heads = []
            for head in range(2):
                qh = rotate(q[head * hd:(head + 1) * hd], i)
                w = torch.softmax(torch.stack([qh @ ks[j] for j in range(i + 1)])
                                  / math.sqrt(hd), 0)
                heads.append(torch.stack([w[j] * vs[j] for j in range(i + 1)]).sum(0))
            x = x + t[p + "self_attn.o_proj.weight"] @ torch.cat(heads)
            m = rms(x, t[p + "post_attention_layernorm.weight"])
            gate = t[p + "mlp.gate_proj.weight"] @ m
            act = gate * torch.sigmoid(gate) * (t[p + "mlp.up_proj.weight"] @ m)
            new.append(x + t[p + "mlp.down_proj.weight"] @ act)
        xs = new
    return torch.stack([t["lm_head.weight"] @ rms(x, t["model.norm.weight"]) for x in xs])


def write_llama(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    write_checkpoint(path, gpt2_tensors(0))
    (path / "config.json").write_text(json.dumps(LLAMA))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    return path


async def test_llama_matches_independent_reference(tmp_path: Path) -> None:
    tensors = llama_tensors(7)
    backend = HFCheckpointBackend(write_llama(tmp_path, tensors))
    ids = backend.tokenizer.encode("What is 12*3?")
    got = backend.model.logits(torch.tensor([ids]))[0]
    torch.testing.assert_close(got, llama_reference(tensors, ids), atol=1e-4, rtol=1e-4)
    ans = await backend.answer("What is 12*3?", max_tokens=4)
    assert ans.model_id == checkpoint_model_id(tmp_path) and ans.token_logprob is not None
    j1 = await backend.judge("q", "7", "8")
    j2 = await backend.judge("q", "8", "7")
    assert {j1.outcome, j2.outcome} == {Outcome.A, Outcome.B}
