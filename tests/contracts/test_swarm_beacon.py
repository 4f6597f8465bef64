"""The round's beacon (docs/swarm.md §5.2a "Ties"): a settlement's ties are seeded by the id
of the block `swarm_beacon_delay` above the height its request names, checked on chain by
`contracts.swarm.beacon_fault`, one named rule per way to get it wrong."""

from __future__ import annotations

import dataclasses

import pytest

from contracts.base import TxContext
from contracts.swarm import (
    MAX_REQUEST_LAG,
    SettleSwarmRound,
    apply_settle_swarm_round,
    beacon_fault,
    beacon_height,
    request_beacon_fault,
    settled_round,
)
from core.errors import TransactionError
from core.params import DEFAULT_SWARM_BEACON_DELAY
from swarm.settlement import beacon_seed, settle
from tests.framework.chain import Chain, new_chain, undelayed_config
from tests.framework.roundkit import make_request
from tests.framework.swarmchain import (
    CLIENT_SEED,
    FEE,
    HEIGHT,
    block_id_at,
    payload_for,
    settlement_context,
    setup_round,
)

DELAY = 3
SETTLER = bytes(range(32))


def beacon_chain() -> Chain:
    """A chain with k = DELAY and no inclusion window (not this file's subject)."""
    return new_chain(undelayed_config(swarm_beacon_delay=DELAY))


def settle_at(chain: Chain, payload: SettleSwarmRound, height: int,
              ctx: TxContext | None = None) -> None:
    apply_settle_swarm_round(chain.state, payload,
                             ctx or settlement_context(SETTLER, height, chain))


def test_a_settlement_is_seeded_by_its_beacon_block() -> None:
    chain = beacon_chain()
    r = setup_round(chain)  # drawn at HEIGHT, the request names HEIGHT - 1
    beacon = beacon_height(r.request, chain.params)
    assert beacon == HEIGHT - 1 + DELAY
    payload = payload_for(chain, r)
    assert payload.beacon_block == block_id_at(chain, beacon)
    reputations = {n: 1000 for n in {*r.answerers, *r.judges}}
    expected = settle(request=r.request, answerers=payload.answerers, judges=payload.judges,
                      commitments=r.commitments, answer_openings=r.answer_openings,
                      judgment_openings=r.judgment_openings, reputations=reputations,
                      stakes=dict.fromkeys(reputations, 10_000_000),
                      seed=beacon_seed(r.request.round_id(), payload.beacon_block)).outcome
    assert payload.outcome == expected
    settle_at(chain, payload, beacon + 1)  # the first block that has the beacon below it
    assert settled_round(chain.state, r.request.round_id()) is not None


def test_a_settlement_waits_for_its_beacon_block() -> None:
    chain = beacon_chain()
    r = setup_round(chain)
    payload = payload_for(chain, r)
    beacon = beacon_height(r.request, chain.params)
    with pytest.raises(TransactionError) as err:
        settle_at(chain, payload, beacon)  # the beacon block would be this very block
    assert err.value.rule == "swarm.beacon_pending"


def test_a_settlement_naming_another_branch_s_block_is_invalid() -> None:
    # after a reorg the block at the beacon height is another: the old settlement is invalid
    # on the new chain, and one naming the new block is valid there
    chain = beacon_chain()
    r = setup_round(chain)
    payload = payload_for(chain, r)
    beacon, height = beacon_height(r.request, chain.params), HEIGHT + DELAY + 2
    ctx = settlement_context(SETTLER, height, chain)
    recent = list(ctx.recent_block_ids)
    other = b"\xee" * 32
    recent[height - 1 - beacon] = other
    reorged = dataclasses.replace(ctx, recent_block_ids=tuple(recent))
    with pytest.raises(TransactionError) as err:
        settle_at(chain, payload, height, reorged)
    assert err.value.rule == "swarm.beacon_block"
    assert beacon_fault(r.request, reputation_height=HEIGHT, beacon_block=other,
                        ctx=reorged) is None


def test_a_settlement_with_the_wrong_seed_is_rejected_by_name() -> None:
    # the outcome computed with another beacon's seed is a settlement mismatch; naming that
    # other block is a beacon_block fault: the seed cannot be chosen either way
    chain = beacon_chain()
    r = setup_round(chain)
    payload = payload_for(chain, r)
    height = HEIGHT + DELAY + 1
    wrong = dataclasses.replace(payload, beacon_block=block_id_at(chain, HEIGHT))
    with pytest.raises(TransactionError) as err:
        settle_at(chain, wrong, height)
    assert err.value.rule == "swarm.beacon_block"


def test_a_round_drawn_after_its_beacon_is_stale() -> None:
    chain = beacon_chain()
    r = setup_round(chain)
    payload = payload_for(chain, r)
    late = HEIGHT - 1 + DELAY  # the draw height at which the beacon block exists
    ctx = settlement_context(SETTLER, late + 2, chain)
    assert beacon_fault(r.request, reputation_height=late, beacon_block=payload.beacon_block,
                        ctx=ctx) == "swarm.beacon_stale"
    assert beacon_fault(r.request, reputation_height=late - 1,
                        beacon_block=payload.beacon_block, ctx=ctx) is None
    assert beacon_fault(r.request, reputation_height=HEIGHT - 2,
                        beacon_block=payload.beacon_block, ctx=ctx) == "swarm.beacon_height"


def test_nodes_refuse_requests_the_rule_would_void() -> None:
    params = beacon_chain().params  # k = DELAY <= MAX_REQUEST_LAG: the stale rule binds first
    assert DELAY <= MAX_REQUEST_LAG
    request = make_request(CLIENT_SEED, fee=FEE, answers=3, judges=3, beacon_height=20)
    assert request_beacon_fault(request, height=20, params=params) is None
    assert request_beacon_fault(request, height=20 + DELAY - 1, params=params) is None
    assert "stale" in (request_beacon_fault(request, height=20 + DELAY, params=params) or "")
    assert "above our tip" in (request_beacon_fault(request, height=19, params=params) or "")
    # no delay: the beacon block is the named one, kept among the recent ids
    undelayed = undelayed_config().params
    assert request_beacon_fault(request, height=20 + MAX_REQUEST_LAG, params=undelayed) is None
    assert "below our tip" in (request_beacon_fault(request, height=21 + MAX_REQUEST_LAG,
                                                    params=undelayed) or "")


def test_the_default_delay_outlasts_the_request_lag() -> None:
    # a client that signs at h cannot ask when the beacon is about to be mined: a node runs
    # the round at most MAX_REQUEST_LAG blocks above h, k - MAX_REQUEST_LAG blocks before it
    params = new_chain().params  # the built-in dev network: ChainParams' default k
    assert params.swarm_beacon_delay == DEFAULT_SWARM_BEACON_DELAY > MAX_REQUEST_LAG
    request = make_request(CLIENT_SEED, fee=FEE, answers=3, judges=3, beacon_height=20)
    assert request_beacon_fault(request, height=20 + MAX_REQUEST_LAG, params=params) is None
    late = 21 + MAX_REQUEST_LAG
    assert request_beacon_fault(request, height=late, params=params) == (
        f"beacon_height 20 is more than {MAX_REQUEST_LAG} blocks below our tip ({late}); "
        "sign the request with the current tip height")
    # refused long before the stale rule would (its beacon block is not mined yet)
    assert late < beacon_height(request, params)


def test_block_ids_by_height_come_from_the_recent_ids() -> None:
    ids = tuple(bytes([h]) * 32 for h in range(9, -1, -1))  # heights 9..0
    ctx = TxContext(sender=SETTLER, height=10, params=new_chain().params, parent_id=ids[0],
                    recent_block_ids=ids)
    assert [ctx.block_id_at(h) for h in (9, 0, 10, -1)] == [ids[0], ids[9], None, None]
