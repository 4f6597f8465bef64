"""The built-in arithmetic model: shipped variants, the exact int path, mining as inference."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from pouw import MAX_TARGET, MiningResult, MiningSession, WinningTicket, verify_certificate
from swarm.runtime.arith_model import (
    ANSWER_DIGITS,
    decode_answer,
    encode_answer,
    encode_prompt,
    exact_matmul,
    quantise,
)
from swarm.runtime.base import InferenceBackend, Outcome, UnsupportedPrompt
from swarm.runtime.builtin import (
    VARIANT_NAMES,
    ArithModel,
    BuiltinBackend,
    load_variants,
    mined_weight_roots,
    mining_hook,
    variant_path,
)
from swarm.runtime.evaluate import (
    accuracy,
    collect_answers,
    collect_judgments,
    fixed_questions,
    swarm_backends,
)
from swarm.runtime.train import canonicalise_safetensors
from swarm.schedule import judging_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COMMITMENT = hashlib.sha256(b"runtime-test-header").digest()
QUESTIONS = 200


@pytest.fixture(scope="module")
def variants() -> list[BuiltinBackend]:
    return load_variants()


@pytest.fixture(scope="module")
def accuracies(variants: list[BuiltinBackend]) -> dict[str, float]:
    qs = fixed_questions(QUESTIONS)
    return {name: accuracy(qs, ans) for name, ans in collect_answers(qs, variants).items()}


def test_variants_are_shipped_small_and_distinct(variants: list[BuiltinBackend]) -> None:
    sizes = [variant_path(n).stat().st_size for n in VARIANT_NAMES]
    assert sum(sizes) <= 10 * 2**20
    ids = {v.model_id for v in variants}
    assert len(ids) == len(VARIANT_NAMES)
    for v in variants:
        assert isinstance(v, InferenceBackend)
        assert v.model_id == hashlib.sha256(variant_path(v.name).read_bytes()).digest()


async def test_answer_and_unsupported_prompt(variants: list[BuiltinBackend]) -> None:
    best = variants[-1]
    ans = await best.answer("Hey, what is 12+30?", max_tokens=16)
    assert ans.text == "42"
    assert ans.model_id == best.model_id
    assert ans.token_logprob is not None and ans.token_logprob <= 0
    for prompt in ("What is the capital of France?", "What is 123*45?",
                   "What is 17*23+5?", "What is 12+130?", "What is 5*9-3?"):
        with pytest.raises(UnsupportedPrompt):
            await best.answer(prompt, max_tokens=16)
    with pytest.raises(UnsupportedPrompt, match="trained ranges"):
        await best.judge("What is 17*23+5?", "396", "391")
    assert (await best.answer("What is 99*9+99?", max_tokens=16)).text.lstrip("-").isdigit()


def test_accuracies_ordered_as_intended(accuracies: dict[str, float]) -> None:
    accs = [accuracies[n] for n in VARIANT_NAMES]
    assert all(b - a >= 0.05 for a, b in itertools.pairwise(accs)), accuracies
    assert accs[-1] >= 0.6, accuracies


def test_answer_codec_round_trip() -> None:
    for value in (0, 7, -7, 40, 990, -99, 100):
        assert decode_answer(encode_answer(value)) == str(value)
    with pytest.raises(ValueError):
        encode_answer(10**ANSWER_DIGITS)
    assert decode_answer(encode_answer(5)[:2]) == "5"  # a truncated answer still parses
    assert encode_prompt("3*4+5") == encode_prompt("03*04+05")
    with pytest.raises(ValueError):
        encode_prompt("100+1")


def test_exact_matmul_is_exact_at_extremes() -> None:
    rng = np.random.default_rng(0)
    for k in (64, 4096, 4104):
        a = rng.choice(np.array([-64, 63], dtype=np.int8), size=(8, k))
        b = rng.choice(np.array([-64, 63], dtype=np.int8), size=(k, 4))
        a[0] = -64
        b[:, 0] = -64
        np.testing.assert_array_equal(exact_matmul(a, b), a.astype(np.int64) @ b.astype(np.int64))


def test_int_linear_within_quantisation_error(variants: list[BuiltinBackend]) -> None:
    """Each int linear equals the float linear (same weights) within the activation
    quantisation bound: |Δy_j| <= Σ_i |Δx_i|·|w_ij| with |Δx_i| <= s_x / 2."""
    model = variants[-1].model
    g = torch.Generator().manual_seed(0)
    for name in ("h0.qkv", "h0.fc2", "head"):
        k = model.tensors[name + ".wq"].shape[0]
        x = torch.randn(24, k, generator=g) * 3
        got = model._int_linear(name, x)
        want = model._float_linear(name, x)
        _xq, xs = quantise(x, dim=-1)
        w = model.tensors[name + ".wq"].float() * model.tensors[name + ".ws"]
        bound = (xs / 2) * w.abs().sum(dim=0) + 1e-4
        err = (got - want).abs()
        assert bool((err <= bound).all()), float((err - bound).max())
        assert float(err.max()) > 0  # the int path really quantises


def test_int_forward_close_to_float_reference(variants: list[BuiltinBackend]) -> None:
    model = variants[-1].model
    tokens = torch.tensor([encode_prompt(q.expression) for q in fixed_questions(32)])
    got, want = model.logits(tokens), model.logits(tokens, reference=True)
    agree = (got[:, -1].argmax(-1) == want[:, -1].argmax(-1)).float().mean()
    assert float(agree) >= 0.9
    assert not torch.equal(got, want)


def test_mining_hook_pads_and_unpads() -> None:
    rng = np.random.default_rng(1)
    session = MiningSession(commitment=COMMITMENT, target=0, r=32, backend="numpy")
    hook = mining_hook(session)
    for m, k, n in ((13, 40, 7), (1, 16, 1), (8, 64, 4)):
        a = rng.integers(-64, 64, (m, k), dtype=np.int8)
        b = rng.integers(-64, 64, (k, n), dtype=np.int8)
        np.testing.assert_array_equal(hook(a, b), a.astype(np.int64) @ b.astype(np.int64))


class _RootsOfB:
    """A ProductMiner that mines through ``session`` and keeps each product's B root."""

    def __init__(self, session: MiningSession) -> None:
        self.session = session
        self.r = session.r
        self.roots: set[bytes] = set()

    def mine(self, a: np.ndarray, b: np.ndarray) -> MiningResult:
        result = self.session.mine(a, b)
        self.roots.add(result.root_b)
        return result


def test_mined_weight_roots_are_the_b_roots_inference_mines() -> None:
    """The B root of every product a model mines (any r) is in `mined_weight_roots` of its
    weights; another model's weights and random operands are not."""
    model_name, other_name = VARIANT_NAMES[0], VARIANT_NAMES[1]
    roots = mined_weight_roots(ArithModel(variant_path(model_name)).weights.values())
    tokens = torch.tensor([encode_prompt(q.expression) for q in fixed_questions(2)])
    for r in (None, 64):
        miner = _RootsOfB(MiningSession(commitment=COMMITMENT, target=0, r=r))
        ArithModel(variant_path(model_name), matmul_hook=mining_hook(miner)).logits(tokens)
        assert miner.roots and miner.roots <= roots
        other = _RootsOfB(MiningSession(commitment=COMMITMENT, target=0, r=r))
        ArithModel(variant_path(other_name), matmul_hook=mining_hook(other)).logits(tokens)
        assert not other.roots & roots
    rng = np.random.default_rng(3)
    junk = rng.integers(-64, 64, (96, 384), dtype=np.int8)
    assert not mined_weight_roots([junk]) & roots


def test_mined_inference_is_bit_identical_and_wins_tickets() -> None:
    """Inference through a real MiningSession at an easy target: same logits, same answers,
    and the products it mined yield certificates that verify."""
    wins: list[WinningTicket] = []
    session = MiningSession(commitment=COMMITMENT, target=MAX_TARGET >> 12, max_wins=2,
                            on_ticket=wins.append)
    plain = ArithModel(variant_path(VARIANT_NAMES[0]))
    mined = ArithModel(variant_path(VARIANT_NAMES[0]), matmul_hook=mining_hook(session))
    qs = fixed_questions(6)
    tokens = torch.tensor([encode_prompt(q.expression) for q in qs])
    assert torch.equal(plain.logits(tokens), mined.logits(tokens))
    exprs = [q.expression for q in qs]
    assert plain.generate(exprs) == mined.generate(exprs)
    assert wins
    for w in wins[:3]:
        verify_certificate(w.certificate, commitment=COMMITMENT, target=MAX_TARGET >> 12)


def test_likelihood_judge(variants: list[BuiltinBackend]) -> None:
    best = variants[-1]
    qs = fixed_questions(60)
    right = [str(q.answer) for q in qs]
    wrong = [str(q.answer + 10) for q in qs]
    ab = best.judge_many([(q.prompt, r, w) for q, r, w in zip(qs, right, wrong, strict=True)])
    ba = best.judge_many([(q.prompt, w, r) for q, r, w in zip(qs, right, wrong, strict=True)])
    mirror = {Outcome.A: Outcome.B, Outcome.B: Outcome.A, Outcome.TIE: Outcome.TIE}
    assert [mirror[j.outcome] for j in ab] == [j.outcome for j in ba]  # no position bias
    assert sum(j.outcome is Outcome.A for j in ab) >= 0.8 * len(qs)
    q = qs[0].prompt
    assert best.judge_many([(q, "no idea", right[0])])[0].outcome is Outcome.B
    assert best.judge_many([(q, f"It is {right[0]}.", right[0])])[0].outcome is Outcome.TIE


async def test_async_judge_matches_batch(variants: list[BuiltinBackend]) -> None:
    q = fixed_questions(1)[0]
    j = await variants[1].judge(q.prompt, str(q.answer), str(q.answer - 1))
    assert j == variants[1].judge_many([(q.prompt, str(q.answer), str(q.answer - 1))])[0]


def test_collect_judgments_follows_the_schedule(variants: list[BuiltinBackend]) -> None:
    qs = fixed_questions(5)
    answers = collect_answers(qs, variants)
    candidates = [[answers[n][i].text for n in VARIANT_NAMES] for i in range(len(qs))]
    pairs = [judging_pairs(bytes([i]) * 32, len(VARIANT_NAMES)) for i in range(len(qs))]
    out = collect_judgments(qs, candidates, pairs, variants[-1:])
    got = out[variants[-1].name]
    assert [len(x) for x in got] == [len(p) for p in pairs]
    i, j = pairs[2][3]
    single = variants[-1].judge_many([(qs[2].prompt, candidates[2][i], candidates[2][j])])
    assert got[2][3] == single[0]


def test_answer_forms_give_independent_answers() -> None:
    """Nodes serving the same weights with different answer forms answer the same question
    through different phrasings: answers are mapped back, mostly right, not identical."""
    qs = fixed_questions(QUESTIONS)
    prompts = [q.prompt for q in qs]
    base = BuiltinBackend.load(VARIANT_NAMES[1])
    other = BuiltinBackend.load(VARIANT_NAMES[1], answer_form=1)
    a0, a1 = base.answer_many(prompts), other.answer_many(prompts)
    assert accuracy(qs, a1) >= accuracy(qs, a0) - 0.1
    assert sum(x.text != y.text for x, y in zip(a0, a1, strict=True)) >= 0.1 * len(qs)
    assert other.answer_many(["What is 12+30?"])[0].text == "42"


def test_judging_over_forms_beats_answering(variants: list[BuiltinBackend]) -> None:
    """A judge that scores answers under several equivalent phrasings picks the right one
    of the swarm's candidates more often than it answers right itself: checking is easier
    than solving, which is what lets a swarm beat its best member."""
    qs = fixed_questions(120)
    answers = collect_answers(qs, variants)
    candidates = [[answers[n][i].text for n in VARIANT_NAMES] for i in range(len(qs))]
    pairs = [[(a, b) for a in range(4) for b in range(4) if a != b]] * len(qs)
    weak = variants[0].name
    picks: dict[int, float] = {}
    for forms in (1, 8):
        judge = BuiltinBackend.load(weak, judge_forms=forms)
        got = collect_judgments(qs, candidates, pairs, [judge])[weak]
        right = 0
        for qi, q in enumerate(qs):
            wins = [0.0] * 4
            for (a, b), j in zip(pairs[qi], got[qi], strict=True):
                wins[a] += {Outcome.A: 1.0, Outcome.TIE: 0.5, Outcome.B: 0.0}[j.outcome]
                wins[b] += {Outcome.B: 1.0, Outcome.TIE: 0.5, Outcome.A: 0.0}[j.outcome]
            right += str(q.answer) == candidates[qi][max(range(4), key=wins.__getitem__)]
        picks[forms] = right / len(qs)
    assert picks[8] >= picks[1] + 0.15, picks
    own = accuracy(qs, answers[weak])
    assert picks[8] >= own + 0.15, (picks, own)


def test_swarm_backends_have_unique_labels() -> None:
    swarm = swarm_backends(forms_per_variant=2)
    labels = [b.label for b in swarm]
    assert len(set(labels)) == 2 * len(VARIANT_NAMES)
    assert labels[:2] == [VARIANT_NAMES[0], VARIANT_NAMES[0] + "#1"]
    assert list(collect_answers(fixed_questions(3), swarm)) == labels


def test_shipped_files_are_canonical(tmp_path: Path) -> None:
    """Model ids hash file bytes, so headers are written in one canonical order: the same
    tensors always give the same id."""
    for name in VARIANT_NAMES:
        path = variant_path(name)
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        canonicalise_safetensors(copy)
        assert copy.read_bytes() == path.read_bytes()
        assert ArithModel(copy).model_id == ArithModel(path).model_id


async def test_likelihood_screen(variants: list[BuiltinBackend]) -> None:
    """arith-l's screen calls most right answers good, wrong ones (off by 10) bad, a
    non-answer bad, never a wrong answer good; the async call matches the batch."""
    best = variants[-1]
    qs = fixed_questions(60)
    right = best.screen_many([(q.prompt, str(q.answer)) for q in qs])
    wrong = best.screen_many([(q.prompt, str(q.answer + 10)) for q in qs])
    assert sum(mark is True for mark in right) >= 0.8 * len(qs)
    assert True not in wrong and sum(mark is False for mark in wrong) >= 0.5 * len(qs)
    assert best.screen_many([(qs[0].prompt, "no idea")]) == [False]
    assert await best.screen(qs[0].prompt, str(qs[0].answer)) == right[0]
    # the batched calls the node makes once per round give the same marks and verdicts
    q = qs[1]
    answers = [str(q.answer), str(q.answer + 10), "no idea"]
    assert await best.screen_answers(q.prompt, answers) == best.screen_many(
        [(q.prompt, a) for a in answers])
    pairs = [(answers[0], answers[1]), (answers[1], answers[0]), (answers[2], answers[0])]
    assert await best.judge_pairs(q.prompt, pairs) == best.judge_many(
        [(q.prompt, a, b) for a, b in pairs])
