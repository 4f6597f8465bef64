"""Calibration on chain: the seed block window (`calibration.stale_seed`) and the suite each
node is calibrated on (the shipped question set for SmolLM2, the arithmetic families for the
rest), through the real transition with signed transactions."""

from __future__ import annotations

import pytest

from consensus.transition import apply_block_transactions, apply_transaction
from consensus.tx import Transaction
from contracts.registry import (
    CALIBRATION_PASS,
    CALIBRATION_QUESTIONS,
    CALIBRATION_REPUTATION,
    CALIBRATION_WINDOW,
    MAX_CALIBRATION_ANSWER,
    RegisterSwarmNode,
    SubmitCalibration,
    calibration_prompts,
    calibration_questions_for,
    calibration_seed,
    capability,
    is_capable,
)
from contracts.staking import Stake
from core.errors import TransactionError
from swarm.calibration import (
    ARITHMETIC_SUITE,
    QUESTION_SUITE,
    SMOLLM2_MODEL_ID,
    CalibrationQuestion,
    SetQuestion,
    calibration_questions,
)
from swarm.questions import is_correct
from tests.framework.chain import Chain, new_chain, tx
from tests.framework.swarmchain import MODEL, answers_for

NODE_INDEX = 3
NODE = tx(NODE_INDEX, 0, Stake(amount=1)).sender
#: block ids of a chain, oldest first; the recent window of a block at height h is
#: reversed(CHAIN[h - W : h]) (its parent first)
CHAIN = [bytes([0xC0, i % 256, i // 256]) + bytes(29) for i in range(3 * CALIBRATION_WINDOW)]
HEIGHT = 2 * CALIBRATION_WINDOW  # the calibration's block


def window(height: int = HEIGHT, *, extra: int = 0) -> tuple[bytes, ...]:
    """The recent ids a chain store gives a block at ``height`` (``extra`` more than it must)."""
    return tuple(reversed(CHAIN[max(0, height - CALIBRATION_WINDOW - extra):height]))


def registered(models: tuple[bytes, ...] = (MODEL,)) -> Chain:
    chain = new_chain()
    for nonce, payload in enumerate((Stake(amount=10_000), RegisterSwarmNode(models=models))):
        apply_transaction(chain.state, tx(NODE_INDEX, nonce, payload), height=1,
                          params=chain.params)
    return chain


def submit(seed_block: bytes, answers: tuple[bytes, ...]) -> Transaction:
    return tx(NODE_INDEX, 2, SubmitCalibration(seed_block=seed_block, answers=answers))


def apply_at(chain: Chain, t: Transaction, recent: tuple[bytes, ...]) -> None:
    apply_transaction(chain.state, t, height=HEIGHT, params=chain.params, parent_id=recent[0],
                      recent_block_ids=recent)


def rule_of(chain: Chain, t: Transaction, recent: tuple[bytes, ...]) -> str:
    with pytest.raises(TransactionError) as err:
        apply_at(chain, t, recent)
    return err.value.rule


def set_answers(seed_block: bytes, *, right: int) -> tuple[bytes, ...]:
    """Answers to the question suite: the first ``right`` an accepted answer, then none."""
    qs = calibration_questions_for(seed_block, NODE, (SMOLLM2_MODEL_ID,))
    assert all(isinstance(q, SetQuestion) for q in qs)
    return tuple((q.question.answers[0] if i < right else "I do not know").encode()
                 for i, q in enumerate(qs) if isinstance(q, SetQuestion))


# --- the window ------------------------------------------------------------------------------

@pytest.mark.parametrize("age", [0, 1, CALIBRATION_WINDOW // 2, CALIBRATION_WINDOW - 1])
def test_a_seed_inside_the_window_passes(age: int) -> None:
    chain = registered()
    seed_block = window()[age]  # age 0: the parent
    apply_at(chain, submit(seed_block, answers_for(seed_block, NODE, right=16)), window())
    assert is_capable(chain.state, NODE)


def test_a_seed_older_than_the_window_is_stale() -> None:
    chain = registered()
    seed_block = CHAIN[HEIGHT - CALIBRATION_WINDOW - 1]  # one block too old
    t = submit(seed_block, answers_for(seed_block, NODE, right=16))
    assert rule_of(chain, t, window()) == "calibration.stale_seed"
    # a caller giving more ids than the window does not widen it
    assert seed_block in window(extra=5)
    assert rule_of(chain, t, window(extra=5)) == "calibration.stale_seed"
    assert capability(chain.state, NODE) is None and chain.state.account(NODE).nonce == 2


def test_a_seed_block_not_on_this_chain_fails() -> None:
    chain = registered()
    other_chain = bytes([0xEE]) * 32  # e.g. the tip of a fork this block does not extend
    t = submit(other_chain, answers_for(other_chain, NODE, right=16))
    assert rule_of(chain, t, window()) == "calibration.stale_seed"
    # without the window (the parent alone, the old rule) only the parent seeds
    t = submit(window()[1], answers_for(window()[1], NODE, right=16))
    with pytest.raises(TransactionError, match=r"calibration\.stale_seed"):
        apply_transaction(chain.state, t, height=HEIGHT, params=chain.params,
                          parent_id=window()[0])


def test_near_genesis_the_window_is_the_chain_so_far() -> None:
    chain = registered()
    recent = window(3)  # a block at height 3: blocks 2, 1 and 0 (genesis)
    assert len(recent) == 3
    apply_transaction(chain.state, submit(recent[-1], answers_for(recent[-1], NODE, right=16)),
                      height=3, params=chain.params, parent_id=recent[0],
                      recent_block_ids=recent)
    assert is_capable(chain.state, NODE)


def test_recent_ids_must_start_with_the_parent() -> None:
    chain = registered()
    t = submit(window()[0], answers_for(window()[0], NODE, right=16))
    with pytest.raises(ValueError, match="start with parent_id"):
        apply_transaction(chain.state, t, height=HEIGHT, params=chain.params,
                          parent_id=window()[1], recent_block_ids=window())
    with pytest.raises(ValueError, match="start with parent_id"):
        apply_block_transactions(chain.state, [t], height=HEIGHT, miner=NODE,
                                 params=chain.params, parent_id=bytes(32),
                                 recent_block_ids=window())


# --- the suites ------------------------------------------------------------------------------

def test_a_smollm2_node_is_graded_on_the_question_set() -> None:
    seed_block = window()[4]
    prompts = calibration_prompts(seed_block, NODE, (SMOLLM2_MODEL_ID,))
    questions = calibration_questions_for(seed_block, NODE, (SMOLLM2_MODEL_ID,))
    assert len(prompts) == len(set(prompts)) == CALIBRATION_QUESTIONS
    assert prompts == [q.prompt for q in questions]
    assert all(isinstance(q, SetQuestion) and q.question.split == "calibration"
               for q in questions)
    # arithmetic answers to a language model's questions do not pass
    chain = registered((SMOLLM2_MODEL_ID,))
    arithmetic = answers_for(seed_block, NODE, right=16)
    apply_at(chain, submit(seed_block, arithmetic), window())
    record = capability(chain.state, NODE)
    assert record is not None and not record.capable


@pytest.mark.parametrize("right", [QUESTION_SUITE.pass_mark, QUESTION_SUITE.pass_mark - 1, 16])
def test_the_question_suite_pass_mark(right: int) -> None:
    chain = registered((MODEL, SMOLLM2_MODEL_ID))  # any registered model being SmolLM2
    seed_block = window()[7]
    apply_at(chain, submit(seed_block, set_answers(seed_block, right=right)), window())
    record = capability(chain.state, NODE)
    assert record is not None and record.correct == right
    assert bool(record.capable) == (right >= QUESTION_SUITE.pass_mark)
    if record.capable:
        assert chain.state.reputation(NODE) == CALIBRATION_REPUTATION * right // 16


def test_free_form_answers_are_graded_by_the_question_sets_grader() -> None:
    seed_block = window()[2]
    qs = [q for q in calibration_questions_for(seed_block, NODE, (SMOLLM2_MODEL_ID,))
          if isinstance(q, SetQuestion)]
    sentences = tuple(f"I think the answer is {q.question.answers[0]}.".encode() for q in qs)
    assert all(is_correct(q.question, s.decode()) for q, s in zip(qs, sentences, strict=True))
    chain = registered((SMOLLM2_MODEL_ID,))
    apply_at(chain, submit(seed_block, sentences), window())
    assert is_capable(chain.state, NODE)
    assert MAX_CALIBRATION_ANSWER >= 200  # a model's sentence fits


def test_an_arithmetic_node_keeps_the_arithmetic_suite() -> None:
    seed_block = window()[0]
    questions = calibration_questions_for(seed_block, NODE, (MODEL,))
    assert questions == calibration_questions(calibration_seed(seed_block, NODE),
                                              count=CALIBRATION_QUESTIONS)
    assert all(isinstance(q, CalibrationQuestion) for q in questions)
    assert calibration_prompts(seed_block, NODE) == calibration_prompts(seed_block, NODE,
                                                                        (MODEL,))
    assert ARITHMETIC_SUITE.pass_mark == CALIBRATION_PASS == 12
    for right, capable in ((CALIBRATION_PASS, True), (CALIBRATION_PASS - 1, False)):
        chain = registered()
        apply_at(chain, submit(seed_block, answers_for(seed_block, NODE, right=right)),
                 window())
        assert is_capable(chain.state, NODE) == capable
    # the question set's answers do not pass an arithmetic node
    chain = registered()
    apply_at(chain, submit(seed_block, set_answers(seed_block, right=16)), window())
    assert not is_capable(chain.state, NODE)


def test_too_many_or_too_few_answers() -> None:
    chain = registered((SMOLLM2_MODEL_ID,))
    seed_block = window()[0]
    short = set_answers(seed_block, right=16)[:-1]
    assert rule_of(chain, submit(seed_block, short), window()) == "calibration.answer_count"
