"""Settlement transaction: validators recompute the outcome, apply money, stake, reputation."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.genesis import DEV_BALANCE
from consensus.tx import MAX_TX_SIZE
from contracts.swarm import (
    MAX_SETTLEMENT_LAG,
    REPUTATION_FLOOR,
    REPUTATION_HALF_LIFE,
    SettleSwarmRound,
    effective_reputation,
    last_active,
    settled_round,
)
from core.encoding import decode, encode
from core.errors import TransactionError
from core.records import StakeRecord
from swarm.messages import Payout
from swarm.settlement import decayed_reputation, settle
from tests.framework.chain import new_chain, undelayed_config
from tests.framework.roundkit import STAKE, make_request
from tests.framework.swarmchain import (
    CLIENT,
    CLIENT_SEED,
    FEE,
    HEIGHT,
    apply_settlement,
    payload_for,
    setup_round,
)


def test_build_settlement_equals_direct_settle() -> None:
    chain = new_chain(undelayed_config())
    r = setup_round(chain)
    nodes = r.answerers + r.judges
    direct = settle(
        request=r.request, answerers=r.answerers, judges=r.judges, commitments=r.commitments,
        answer_openings=r.answer_openings, judgment_openings=r.judgment_openings,
        reputations={n: 1000 for n in nodes}, stakes={n: STAKE for n in nodes}).outcome
    assert payload_for(chain, r).outcome == direct


def test_settlement_applies_payouts_reputation_and_marks_the_round() -> None:
    chain = new_chain(undelayed_config())
    r = setup_round(chain)
    payload = payload_for(chain, r)
    assert decode(SettleSwarmRound, encode(payload)) == payload
    assert len(encode(payload)) < MAX_TX_SIZE - 200  # fits a transaction with room to spare
    root = chain.state.root()
    apply_settlement(chain, payload)
    assert chain.state.root() != root
    pay = {p.node: p.amount for p in payload.outcome.payouts}
    assert chain.state.account(CLIENT).balance == DEV_BALANCE - FEE
    for node, amount in pay.items():
        assert chain.state.account(node).balance == amount
    assert sum(pay.values()) == FEE
    for update in payload.outcome.reputations:
        assert chain.state.reputation(update.node) == update.score
        assert last_active(chain.state, update.node) == HEIGHT
    top = payload.outcome.ranking[0]
    assert chain.state.reputation(top) == 1100
    record = settled_round(chain.state, r.request.round_id())
    assert record is not None and record.outcome_id == payload.outcome.id()
    # the same round never settles twice
    with pytest.raises(TransactionError) as err:
        apply_settlement(chain, payload, height=HEIGHT + 1)
    assert err.value.rule == "swarm.already_settled"


def test_tampered_outcome_is_rejected() -> None:
    chain = new_chain(undelayed_config())
    r = setup_round(chain)
    payload = payload_for(chain, r)
    first, *rest = payload.outcome.payouts
    greedy = dataclasses.replace(payload, outcome=dataclasses.replace(
        payload.outcome, payouts=(Payout(node=first.node, amount=first.amount + 1), *rest)))
    with pytest.raises(TransactionError) as err:
        apply_settlement(chain, greedy)
    assert err.value.rule == "swarm.settlement_mismatch"
    # dropping a judge's opening changes the recomputed outcome: the claim must follow
    fewer = dataclasses.replace(payload, judgment_openings=payload.judgment_openings[1:])
    with pytest.raises(TransactionError) as err:
        apply_settlement(chain, fewer)
    assert err.value.rule == "swarm.settlement_mismatch"


def test_no_show_loses_stake_on_chain() -> None:
    chain = new_chain(undelayed_config())
    r = setup_round(chain, no_show=True)
    payload = payload_for(chain, r)
    (slash,) = payload.outcome.slashes
    apply_settlement(chain, payload)
    assert chain.state.stake(slash.node).bonded == STAKE - slash.amount
    assert chain.state.reputation(slash.node) == 1000 - 400
    paid = sum(p.amount for p in payload.outcome.payouts) + payload.outcome.refund
    assert paid == FEE + slash.amount


def test_outcome_does_not_depend_on_the_including_block() -> None:
    # a decaying reputation changes every few blocks; the payload names its height
    chain = new_chain(undelayed_config())
    built_at = 1000
    r = setup_round(chain, height=built_at, reputation=10**9, active_since=1)
    payload = payload_for(chain, r, height=built_at)
    assert effective_reputation(chain.state, r.judges[0], height=built_at) != \
        effective_reputation(chain.state, r.judges[0], height=built_at + MAX_SETTLEMENT_LAG)
    apply_settlement(chain, payload, height=built_at + MAX_SETTLEMENT_LAG)
    assert settled_round(chain.state, r.request.round_id()) is not None


@pytest.mark.parametrize("lag", [-1, MAX_SETTLEMENT_LAG + 1])
def test_reputation_height_must_be_recent(lag: int) -> None:
    chain = new_chain(undelayed_config())
    r = setup_round(chain, height=500)
    payload = payload_for(chain, r, height=500)
    with pytest.raises(TransactionError) as err:
        apply_settlement(chain, payload, height=500 + lag)
    assert err.value.rule == "swarm.reputation_height"


@pytest.mark.parametrize("rule", ["swarm.request_signature", "swarm.chain_id",
                                  "swarm.selection_mismatch",
                                  "swarm.insufficient_client_balance", "swarm.too_many_nodes"])
def test_rules(rule: str) -> None:
    chain = new_chain(undelayed_config())
    r = setup_round(chain)
    payload = payload_for(chain, r)
    if rule == "swarm.request_signature":
        payload = dataclasses.replace(payload, request=dataclasses.replace(
            payload.request, signature=bytes(64)))
    elif rule == "swarm.chain_id":
        payload = dataclasses.replace(payload, request=make_request(
            CLIENT_SEED, fee=FEE, answers=5, judges=4, chain_id=7))
    elif rule == "swarm.selection_mismatch":
        # a drawn judge's stake goes away: the chain draws someone else
        chain.state.set_stake(r.judges[0], StakeRecord())
    elif rule == "swarm.insufficient_client_balance":
        chain.state.set_account(CLIENT, dataclasses.replace(chain.state.account(CLIENT),
                                                            balance=FEE - 1))
    elif rule == "swarm.too_many_nodes":
        r.request = make_request(CLIENT_SEED, fee=FEE, answers=4, judges=4,
                                 beacon_height=payload.request.beacon_height)
        payload = dataclasses.replace(payload, request=r.request)
    with pytest.raises(TransactionError) as err:
        apply_settlement(chain, payload)
    assert err.value.rule == rule


def test_reputation_decays_between_rounds() -> None:
    chain = new_chain(undelayed_config())
    now = REPUTATION_HALF_LIFE + 10
    r = setup_round(chain, height=now, active_since=10)
    node = r.judges[0]
    assert effective_reputation(chain.state, node, height=now) == decayed_reputation(
        1000, blocks_elapsed=REPUTATION_HALF_LIFE, floor=REPUTATION_FLOOR,
        half_life=REPUTATION_HALF_LIFE) == REPUTATION_FLOOR + (1000 - REPUTATION_FLOOR) // 2
    payload = payload_for(chain, r, height=now)
    apply_settlement(chain, payload, height=now)
    # the round started from the decayed score (550) and added the full-agreement step
    assert chain.state.reputation(node) == 550 + 100
