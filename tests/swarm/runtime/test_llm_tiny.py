"""The GGUF loader, conversion cache and engine on a tiny GGUF this test writes itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from swarm.runtime.base import BackendError
from swarm.runtime.llm.cache import MANIFEST, TOKENIZER, WEIGHTS, load_model
from swarm.runtime.llm.engine import LlamaEngine, PromptTooLong, QuantConfig
from swarm.runtime.llm.gguf_file import (
    ChatTemplate,
    GGUFError,
    permute_qk,
    read_gguf,
    unpermute_qk,
)
from swarm.runtime.llm.quant import default_product
from tests.swarm.runtime.tiny_gguf import (
    CTX,
    D_FF,
    N_HEAD,
    N_KV,
    N_LAYER,
    D,
    TinyModel,
    vocabulary,
    write_tiny_gguf,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def tiny_float_engine(tiny: TinyModel) -> LlamaEngine:
    load = load_model(tiny.path)
    return LlamaEngine(load.model, load.model_id, int8=False)


def test_config_and_shapes(tiny: TinyModel) -> None:
    m = read_gguf(tiny.path)
    c = m.config
    assert (c.n_layer, c.d_model, c.d_ff, c.n_head, c.n_kv_head, c.context_length) == (
        N_LAYER, D, D_FF, N_HEAD, N_KV, CTX)
    assert c.vocab_size == len(vocabulary()) and c.tied_embeddings and c.rope_base == 10000.0
    assert m.tensors["blk.1.attn_k.weight"].shape == (N_KV * D // N_HEAD, D)
    assert m.tensors["blk.0.ffn_down.weight"].shape == (D, D_FF)
    assert m.special.eos == 2 and m.special.eos_text == "<|im_end|>" and m.name == "tiny"


def test_dequantisation_matches_reference(tiny: TinyModel) -> None:
    """Hand-built Q8_0 and Q4_1 blocks and F32 decode exactly; Q4_1 quantised by gguf
    stays within its step (max - min) / 15 / 2 of the original."""
    m = read_gguf(tiny.path)
    for name, ref in tiny.reference.items():
        got = m.tensors[name].numpy()
        if name in tiny.approximate:
            blocks = ref.reshape(ref.shape[0], -1, 32)
            step = (blocks.max(axis=2) - blocks.min(axis=2)) / 15
            err = np.abs(got - ref).reshape(blocks.shape)
            assert (err <= step[..., None] / 2 + 1e-3).all(), name
        else:
            np.testing.assert_array_equal(got, ref, err_msg=name)


def test_qk_permutation_round_trip() -> None:
    w = np.arange(8 * 3 * 2, dtype=np.float32).reshape(8 * 2, 3)
    assert np.array_equal(unpermute_qk(permute_qk(w, 2), 2), w)
    # llama.cpp interleaves each head's halves: row 1 of GGUF is row half of HF
    assert np.array_equal(permute_qk(w, 2)[1], w[4])


def test_tokenizer_round_trip(tiny: TinyModel) -> None:
    tok = read_gguf(tiny.path).tokenizer
    text = "Hello, the world! 1234 naïve café <|im_end|>"
    ids = tok.encode(text, add_special_tokens=False).ids
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert ids[-1] == 2  # the control token is one id
    vocab = vocabulary()
    assert vocab.index("Ġthe") in tok.encode(" the", add_special_tokens=False).ids
    digits = tok.encode("1234", add_special_tokens=False).tokens
    assert digits == ["1", "2", "3", "4"]  # smollm pre-tokenizer: one digit each


def test_chat_template(tiny: TinyModel) -> None:
    m = read_gguf(tiny.path)
    tpl = ChatTemplate(m.chat_template, m.special)
    text = tpl.render([{"role": "user", "content": "Hi"}])
    assert text == ("<|im_start|>system\nYou are tiny.<|im_end|>\n"
                    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    own = tpl.render([{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}],
                     add_generation_prompt=False)
    assert own == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "magic", "empty"])
def test_corrupt_file_rejected(tiny: TinyModel, tmp_path: Path, damage: str) -> None:
    data = tiny.path.read_bytes()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes({"truncate": data[: len(data) * 2 // 3],
                     "garbage": data[:64] + bytes(range(256)) * 8,
                     "magic": b"GGUX" + data[4:],
                     "empty": b""}[damage])
    with pytest.raises(GGUFError) as info:
        read_gguf(bad)
    assert isinstance(info.value, BackendError) and str(bad) in str(info.value)


def test_unsupported_model_rejected(tmp_path: Path) -> None:
    other = write_tiny_gguf(tmp_path / "gpt2.gguf", arch="gpt2")
    with pytest.raises(GGUFError, match="architecture 'gpt2'"):
        read_gguf(other.path)
    missing = write_tiny_gguf(tmp_path / "missing.gguf", skip=frozenset({"blk.1.ffn_up.weight"}))
    with pytest.raises(GGUFError, match=r"blk\.1\.ffn_up\.weight missing"):
        read_gguf(missing.path)


def test_cache_reuse_and_rebuild(tiny: TinyModel, tmp_path: Path) -> None:
    first = load_model(tiny.path, tmp_path)
    assert not first.from_cache
    entry = tmp_path / first.model_id.hex()
    assert {p.name for p in entry.iterdir()} == {WEIGHTS, TOKENIZER, MANIFEST}
    second = load_model(tiny.path, tmp_path)
    assert second.from_cache and second.model_id == first.model_id
    for k, v in first.model.tensors.items():
        assert torch.equal(second.model.tensors[k], v)
    assert second.model.chat_template == first.model.chat_template
    assert second.model.tokenizer.encode("the 12").ids == first.model.tokenizer.encode(
        "the 12").ids

    weights = entry / WEIGHTS
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF  # a flipped bit deep in the tensor data
    weights.write_bytes(bytes(raw))
    assert not load_model(tiny.path, tmp_path).from_cache  # detected, rebuilt
    assert load_model(tiny.path, tmp_path).from_cache

    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    assert not load_model(tiny.path, tmp_path).from_cache
    (entry / MANIFEST).unlink()
    assert not load_model(tiny.path, tmp_path).from_cache
    (entry / TOKENIZER).write_text("{}")
    assert not load_model(tiny.path, tmp_path).from_cache
    assert load_model(tiny.path, tmp_path).from_cache


def test_expected_hash_enforced(tiny: TinyModel) -> None:
    with pytest.raises(GGUFError):
        load_model(tiny.path, expected_sha256="00" * 32)


def test_kv_cache_matches_full_recompute(tiny_float_engine: LlamaEngine) -> None:
    """Greedy decoding with the KV cache picks what a full forward over the whole
    sequence picks, step after step."""
    prompt = tiny_float_engine.encode("the cat sat")
    gen = tiny_float_engine.generate([prompt], max_tokens=8, stop_ids=())[0]
    seq = list(prompt)
    for tok in gen.token_ids:
        lp = tiny_float_engine.sequence_logprobs([*seq, 0])
        assert int(lp[-1].argmax()) == tok
        seq.append(tok)


def test_batch_matches_single(tiny_float_engine: LlamaEngine) -> None:
    prompts = [tiny_float_engine.encode(t) for t in ("the", "a longer prompt, the end", "hi 42")]
    batched = tiny_float_engine.generate(prompts, max_tokens=6, stop_ids=())
    for p, g in zip(prompts, batched, strict=True):
        single = tiny_float_engine.generate([p], max_tokens=6, stop_ids=())[0]
        assert single.token_ids == g.token_ids
        assert single.logprob == pytest.approx(g.logprob, abs=1e-4)


def test_max_tokens_stop_and_seeds(tiny_float_engine: LlamaEngine) -> None:
    p = tiny_float_engine.encode("the")
    g = tiny_float_engine.generate([p], max_tokens=5, stop_ids=())[0]
    assert len(g.token_ids) == 5 and g.finish_reason == "length"
    first = g.token_ids[0]
    s = tiny_float_engine.generate([p], max_tokens=5, stop_ids={first})[0]
    assert s.token_ids == () and s.finish_reason == "stop"
    a = tiny_float_engine.generate([p, p], max_tokens=8, temperature=1.5, seed=[3, 3], stop_ids=())
    b = tiny_float_engine.generate([p], max_tokens=8, temperature=1.5, seed=3, stop_ids=())
    assert a[0].token_ids == a[1].token_ids == b[0].token_ids
    draws = {tiny_float_engine.generate([p], max_tokens=8, temperature=1.5, seed=s,
                                   stop_ids=())[0].token_ids for s in range(6)}
    assert len(draws) > 1
    with pytest.raises(PromptTooLong):
        tiny_float_engine.generate([p], max_tokens=CTX)
    with pytest.raises(ValueError):
        tiny_float_engine.generate([[]], max_tokens=3)


def test_streaming_callback_sees_every_kept_token(tiny_float_engine: LlamaEngine) -> None:
    prompts = [tiny_float_engine.encode("the"), tiny_float_engine.encode("a b c")]
    streamed: dict[int, list[int]] = {0: [], 1: []}
    gens = tiny_float_engine.generate(prompts, max_tokens=6, temperature=1.0, seed=[1, 2],
                                      on_token=lambda row, tok: streamed[row].append(tok))
    assert [tuple(streamed[i]) for i in (0, 1)] == [g.token_ids for g in gens]
    assert gens == tiny_float_engine.generate(prompts, max_tokens=6, temperature=1.0,
                                              seed=[1, 2])


def test_per_row_temperature(tiny_float_engine: LlamaEngine) -> None:
    p = tiny_float_engine.encode("the")
    mixed = tiny_float_engine.generate([p, p], max_tokens=6, temperature=[0.0, 1.5],
                                       seed=[0, 4], stop_ids=())
    greedy = tiny_float_engine.generate([p], max_tokens=6, stop_ids=())[0]
    sampled = tiny_float_engine.generate([p], max_tokens=6, temperature=1.5, seed=4,
                                         stop_ids=())[0]
    assert [g.token_ids for g in mixed] == [greedy.token_ids, sampled.token_ids]
    with pytest.raises(ValueError):
        tiny_float_engine.generate([p, p], max_tokens=2, temperature=[0.5])


def test_int8_products_through_callable(tiny: TinyModel) -> None:
    """Every linear goes through the product callable with int8 operands in pouw's
    [-64, 63]; the engine's output equals the default product's."""
    seen: list[tuple[int, int, int]] = []

    def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        assert a.dtype == np.int8 and b.dtype == np.int8
        assert a.min() >= -64 and a.max() <= 63 and b.min() >= -64 and b.max() <= 63
        seen.append((a.shape[0], a.shape[1], b.shape[1]))
        return a.astype(np.int64) @ b.astype(np.int64)

    load = load_model(tiny.path)
    mine = LlamaEngine(load.model, load.model_id, int8=True, product=product)
    plain = LlamaEngine(load.model, load.model_id, int8=True, product=default_product)
    p = mine.encode("the cat")
    assert mine.generate([p], max_tokens=4, stop_ids=()) == plain.generate(
        [p], max_tokens=4, stop_ids=())
    # prefill: 4 products per layer, rows = 2 digits x tokens; the LM head stays float
    assert seen[:4] == [(2 * len(p), D, D + 2 * N_KV * D // N_HEAD), (2 * len(p), D, D),
                        (2 * len(p), D, 2 * D_FF), (2 * len(p), D_FF, D)]
    assert mine.stats is not None and mine.stats.products == len(seen)
    full = LlamaEngine(load.model, load.model_id, int8=True, product=product,
                       quant=QuantConfig(quantize_lm_head=True, act_digits=1))
    seen.clear()
    full.generate([p], max_tokens=1)
    assert seen[-1] == (1, D, len(vocabulary()))  # last position only through the head
    seen.clear()
    plain.set_product(product)  # a node that starts mining later swaps the callable
    plain.generate([p], max_tokens=1)
    assert len(seen) == 4 * N_LAYER


def test_int8_close_to_float(tiny: TinyModel, tiny_float_engine: LlamaEngine) -> None:
    load = load_model(tiny.path)
    q = LlamaEngine(load.model, load.model_id, int8=True)
    ids = q.encode("the cat sat on the mat")
    a, b = tiny_float_engine.sequence_logprobs(ids), q.sequence_logprobs(ids)
    assert (a.exp() - b.exp()).abs().max() < 0.05


@pytest.mark.parametrize("int8", [False, True])
def test_continuation_logprobs_share_the_prefix(tiny: TinyModel, int8: bool) -> None:
    """Scoring continuations after a shared prefix (the prefix runs once, its KV cache is
    shared) gives what a full forward over each whole sequence gives, for prefixes and
    continuations of different lengths, a one-token continuation and an empty one; and
    the prefix's tokens go through the products once, not once per continuation."""
    load = load_model(tiny.path)
    seen: list[int] = []

    def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        seen.append(a.shape[0])
        return a.astype(np.int64) @ b.astype(np.int64)

    engine = LlamaEngine(load.model, load.model_id, int8=int8,
                         product=product if int8 else None)
    question, other = engine.encode("the cat sat on the"), engine.encode("hi")
    answers = [engine.encode(t) for t in ("mat", "long red mat, 42", "a")]
    pairs = [(question, a) for a in answers] + [(other, answers[1]), (question, [])]
    scored = engine.continuation_logprobs(pairs)
    assert [len(s) for s in scored] == [len(c) for _p, c in pairs]
    for (p, c), got in zip(pairs, scored, strict=True):
        full = engine.sequence_logprobs([*p, *c])
        want = [float(full[len(p) - 1 + j, t]) for j, t in enumerate(c)]
        assert got == pytest.approx(want, rel=1e-5, abs=1e-4)
    if int8:  # first products of the two passes: the 2 distinct prefixes, then the answers
        seen.clear()
        engine.continuation_logprobs(pairs)
        longest_prefix, longest_fed = len(question), max(len(c) - 1 for _p, c in pairs)
        assert seen[0] == 2 * 2 * longest_prefix  # 2 prefixes x 2 digits x padded length
        assert seen[4 * N_LAYER] == 2 * len(pairs) * longest_fed


def test_default_product_is_exact_at_the_int8_extremes() -> None:
    """The LLM's int8 product (oneDNN's int8 GEMM where usable, else chunked float32) equals
    the int64 reference where float32 would round: inner length past 1024, entries ±128."""
    rng = np.random.default_rng(4)
    a = rng.choice(np.array([-128, 127, -127], np.int8), (17, 2304))
    b = rng.choice(np.array([-128, 127, 1], np.int8), (2304, 40))
    a[:8] = -128
    a[:8, ::7] = 127
    b[:, :20] = -127
    b[::5, :20] = 1  # sums past 2^24 that float32 cannot hold exactly
    want = a.astype(np.int64) @ b.astype(np.int64)
    one_call = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.int64)
    assert not np.array_equal(one_call, want)  # so the inner chunks are what makes it exact
    assert np.array_equal(np.asarray(default_product(a, b)).astype(np.int64), want)
