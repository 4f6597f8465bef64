"""Proof of capability and recomputed selection on chain: calibration transactions, the node
index, and settlements whose answerers and judges must be the chain's own draw."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.genesis import dev_seed
from consensus.transition import apply_transaction
from consensus.tx import public_key
from contracts.base import TxContext
from contracts.registry import (
    CALIBRATION_PASS,
    CALIBRATION_QUESTIONS,
    CALIBRATION_REPUTATION,
    CALIBRATION_RETRY_BLOCKS,
    RegisterSwarmNode,
    SubmitCalibration,
    apply_submit_calibration,
    calibration_prompts,
    capability,
    is_capable,
    swarm_node_ids,
)
from contracts.staking import Stake
from contracts.swarm import (
    apply_register_swarm_node,
    build_settlement,
    selected_nodes,
    settled_round,
)
from core.errors import TransactionError
from core.records import StakeRecord, SwarmNode
from tests.framework.chain import Chain, make_block, new_chain, tx, undelayed_config
from tests.framework.roundkit import STAKE, build_round, honest, make_request, seed
from tests.framework.swarmchain import (
    CLIENT_SEED,
    FEE,
    HEIGHT,
    MODEL,
    POOL,
    answers_for,
    apply_settlement,
    payload_for,
    register_pool,
    round_beacon,
    setup_round,
)

PARENT = bytes([0xAB]) * 32


def register(chain: Chain, s: bytes, *, models: tuple[bytes, ...] = (MODEL,)) -> bytes:
    node = public_key(s)
    chain.state.set_stake(node, StakeRecord(bonded=STAKE))
    apply_register_swarm_node(chain.state, RegisterSwarmNode(models=models),
                              TxContext(sender=node, height=1, params=chain.params))
    return node


def calibrate(chain: Chain, node: bytes, *, right: int, height: int = 5,
              parent: bytes = PARENT, seed_block: bytes | None = None) -> None:
    payload = SubmitCalibration(seed_block=parent if seed_block is None else seed_block,
                                answers=answers_for(parent, node, right=right))
    apply_submit_calibration(chain.state, payload, TxContext(
        sender=node, height=height, params=chain.params, parent_id=parent))


def test_index_is_sorted_and_counts_each_node_once() -> None:
    chain = new_chain()
    nodes = [register(chain, seed(f"n{i}")) for i in range(6)]
    register(chain, seed("n3"))  # registering again does not duplicate
    assert swarm_node_ids(chain.state) == tuple(sorted(nodes))


def test_a_node_registered_before_the_index_joins_it_by_registering_again() -> None:
    chain = new_chain()
    first = register(chain, seed("first"))
    legacy = public_key(seed("legacy"))
    chain.state.set_swarm_node(legacy, SwarmNode(models=(MODEL,)))  # no index entry
    assert swarm_node_ids(chain.state) == (first,)
    register(chain, seed("legacy"))
    assert swarm_node_ids(chain.state) == tuple(sorted((first, legacy)))


def test_calibration_pass_mark_is_an_integer_count() -> None:
    chain = new_chain()
    passing, failing = register(chain, seed("pass")), register(chain, seed("fail"))
    calibrate(chain, passing, right=CALIBRATION_PASS)
    calibrate(chain, failing, right=CALIBRATION_PASS - 1)
    assert is_capable(chain.state, passing)
    assert not is_capable(chain.state, failing)
    record = capability(chain.state, failing)
    assert record is not None and record.correct == CALIBRATION_PASS - 1


def test_passing_calibration_earns_reputation_for_the_share_right() -> None:
    chain = new_chain()
    full, pass_mark, failing, known = (register(chain, seed(f"rep{i}")) for i in range(4))
    chain.state.set_reputation(known, 5_000)  # a node that already earned more keeps it
    calibrate(chain, full, right=CALIBRATION_QUESTIONS)
    calibrate(chain, pass_mark, right=CALIBRATION_PASS)
    calibrate(chain, failing, right=CALIBRATION_PASS - 1)
    calibrate(chain, known, right=CALIBRATION_QUESTIONS)
    assert chain.state.reputation(full) == CALIBRATION_REPUTATION
    assert chain.state.reputation(pass_mark) == \
        CALIBRATION_REPUTATION * CALIBRATION_PASS // CALIBRATION_QUESTIONS
    assert chain.state.reputation(failing) == 0
    assert chain.state.reputation(known) == 5_000


def test_questions_depend_on_the_parent_block_and_the_node() -> None:
    a, b = public_key(seed("a")), public_key(seed("b"))
    assert calibration_prompts(PARENT, a) != calibration_prompts(bytes(32), a)
    assert calibration_prompts(PARENT, a) != calibration_prompts(PARENT, b)
    assert len(calibration_prompts(PARENT, a)) == CALIBRATION_QUESTIONS


def test_copied_answers_fail() -> None:
    # another node's perfect answers are for other questions
    chain = new_chain()
    honest_node, copier = register(chain, seed("h")), register(chain, seed("c"))
    calibrate(chain, honest_node, right=CALIBRATION_QUESTIONS)
    copied = SubmitCalibration(seed_block=PARENT,
                               answers=answers_for(PARENT, honest_node, right=16))
    apply_submit_calibration(chain.state, copied, TxContext(
        sender=copier, height=5, params=chain.params, parent_id=PARENT))
    assert is_capable(chain.state, honest_node)
    assert not is_capable(chain.state, copier)


@pytest.mark.parametrize("rule", ["calibration.unregistered", "calibration.no_parent",
                                  "calibration.stale_seed", "calibration.answer_count",
                                  "calibration.already_capable", "calibration.too_soon"])
def test_calibration_rules(rule: str) -> None:
    chain = new_chain()
    node = register(chain, seed("x"))
    payload = SubmitCalibration(seed_block=PARENT, answers=answers_for(PARENT, node, right=16))
    ctx = TxContext(sender=node, height=5, params=chain.params, parent_id=PARENT)
    if rule == "calibration.unregistered":
        ctx = dataclasses.replace(ctx, sender=public_key(seed("stranger")))
    elif rule == "calibration.no_parent":
        ctx = dataclasses.replace(ctx, parent_id=b"")
    elif rule == "calibration.stale_seed":
        ctx = dataclasses.replace(ctx, parent_id=bytes(32))
    elif rule == "calibration.answer_count":
        payload = dataclasses.replace(payload, answers=payload.answers[1:])
    elif rule == "calibration.already_capable":
        calibrate(chain, node, right=16, height=4)
    elif rule == "calibration.too_soon":
        calibrate(chain, node, right=0, height=4)
    with pytest.raises(TransactionError) as err:
        apply_submit_calibration(chain.state, payload, ctx)
    assert err.value.rule == rule


def test_failed_node_may_retry_after_the_cooldown() -> None:
    chain = new_chain()
    node = register(chain, seed("slow"))
    calibrate(chain, node, right=0, height=5)
    calibrate(chain, node, right=16, height=5 + CALIBRATION_RETRY_BLOCKS)
    assert is_capable(chain.state, node)


def test_new_models_clear_the_capability() -> None:
    chain = new_chain()
    node = register(chain, seed("m"))
    calibrate(chain, node, right=16)
    register(chain, seed("m"))  # same models: still capable
    assert is_capable(chain.state, node)
    register(chain, seed("m"), models=(bytes([1]) * 32,))
    assert not is_capable(chain.state, node)


def test_calibration_as_a_signed_transaction_needs_the_parent() -> None:
    chain = new_chain()
    node = public_key(dev_seed(3))
    apply_transaction(chain.state, tx(3, 0, Stake(amount=STAKE)), height=1, params=chain.params)
    apply_transaction(chain.state, tx(3, 1, RegisterSwarmNode(models=(MODEL,))), height=1,
                      params=chain.params)
    submit = tx(3, 2, SubmitCalibration(seed_block=PARENT,
                                        answers=answers_for(PARENT, node, right=16)))
    # outside a block (no parent id) the transaction is rejected, and leaves no trace
    with pytest.raises(TransactionError) as err:
        apply_transaction(chain.state, submit, height=2, params=chain.params)
    assert err.value.rule == "calibration.no_parent"
    assert capability(chain.state, node) is None
    apply_transaction(chain.state, submit, height=2, params=chain.params, parent_id=PARENT)
    assert is_capable(chain.state, node)


def test_a_node_that_fails_calibration_is_never_selected() -> None:
    chain = new_chain()
    register_pool(chain, pool=POOL[:6])
    # the failing node has by far the most stake and reputation: only the flag keeps it out
    failing = register(chain, seed("big"))
    chain.state.set_stake(failing, StakeRecord(bonded=STAKE * 10_000))
    chain.state.set_reputation(failing, 10**9)
    calibrate(chain, failing, right=CALIBRATION_PASS - 1)

    def times_selected() -> int:
        count = 0
        for nonce in range(200):
            request = make_request(CLIENT_SEED, fee=FEE, answers=3, judges=3, nonce=nonce)
            answerers, judges = selected_nodes(chain.state, request, height=HEIGHT,
                                               min_stake=chain.params.min_node_stake)
            count += answerers.count(failing) + judges.count(failing)
        return count

    assert times_selected() == 0
    # after passing on a retry the same node is drawn nearly every time
    calibrate(chain, failing, right=16, height=5 + CALIBRATION_RETRY_BLOCKS)
    assert times_selected() >= 300


def test_self_selected_settlement_is_rejected_and_the_honest_one_accepted() -> None:
    chain = new_chain(undelayed_config())
    honest_round = setup_round(chain)
    request = honest_round.request
    # the attacker runs 9 registered, staked, calibrated identities (part of the pool)
    drawn = set(honest_round.answerers) | set(honest_round.judges)
    own = [s for s in POOL if public_key(s) not in drawn][:9]
    forged = build_round(
        request=request, answers=[(s, f"answer q={i}".encode()) for i, s in enumerate(own[:5])],
        judges=[(s, honest) for s in own[5:9]])
    self_selected = build_settlement(
        chain.state, height=HEIGHT, beacon_block=round_beacon(chain, forged), request=request,
        answerers=forged.answerers,
        judges=forged.judges, commitments=forged.commitments,
        answer_openings=forged.answer_openings, judgment_openings=forged.judgment_openings)
    with pytest.raises(TransactionError) as err:
        apply_settlement(chain, self_selected)
    assert err.value.rule == "swarm.selection_mismatch"
    # swapping in a single own judge is caught too
    honest_payload = payload_for(chain, honest_round)
    one_swapped = dataclasses.replace(honest_payload, judges=tuple(sorted(
        (*honest_payload.judges[1:], public_key(own[0])))))
    with pytest.raises(TransactionError) as err:
        apply_settlement(chain, one_swapped)
    assert err.value.rule == "swarm.selection_mismatch"
    apply_settlement(chain, honest_payload)
    assert settled_round(chain.state, request.round_id()) is not None


def test_calibration_in_a_block_answers_the_parent_blocks_questions() -> None:
    chain = new_chain()
    node = public_key(dev_seed(3))
    chain.connect(make_block(chain, [tx(3, 0, Stake(amount=STAKE)),
                                     tx(3, 1, RegisterSwarmNode(models=(MODEL,)))]))
    tip = chain.tip.block_id()
    stale = tx(3, 2, SubmitCalibration(seed_block=PARENT,
                                       answers=answers_for(PARENT, node, right=16)))
    with pytest.raises(TransactionError) as err:
        make_block(chain, [stale])
    assert err.value.rule == "calibration.stale_seed"
    good = tx(3, 2, SubmitCalibration(seed_block=tip, answers=answers_for(tip, node, right=16)))
    chain.connect(make_block(chain, [good]))
    assert is_capable(chain.state, node)
    assert swarm_node_ids(chain.state) == (node,)
