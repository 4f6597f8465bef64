"""The inclusion window: held settlements, omission and bad-item challenges, data-root
settlement of large rounds (docs/swarm.md §7a)."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.genesis import DEV_BALANCE, dev_config, dev_seed
from consensus.transition import BEGIN_BLOCK_HOOKS, apply_block_transactions, apply_transaction
from consensus.tx import MAX_TX_SIZE, public_key, sign_transaction
from contracts.bank import Transfer
from contracts.base import TxContext
from contracts.escrow import DepositEscrow, apply_deposit_escrow, escrow_of
from contracts.swarm import (
    CHALLENGER_SHARE_BPS,
    MAX_SETTLEMENT_LAG,
    ChallengeSwarmRound,
    PostedLeaf,
    PostRoundLeaves,
    SettleSwarmRoot,
    SettleSwarmRound,
    apply_challenge_swarm_round,
    apply_post_round_leaves,
    apply_settle_swarm_root,
    apply_settle_swarm_round,
    build_settlement,
    challenge_payload,
    finalize_held_rounds,
    held_round,
    record_epoch_snapshot,
    selected_nodes,
    settled_round,
    settler_bond,
)
from core.encoding import encode
from core.errors import TransactionError
from core.params import DEFAULT_SWARM_BEACON_DELAY, DEFAULT_SWARM_INCLUSION_WINDOW, ChainParams
from swarm.data_root import (
    data_root,
    inclusion_proof,
    leaf_hash,
    leaves_root,
    proof_root,
    round_leaves,
    round_slots,
)
from swarm.inclusion import (
    CLAIM_BAD_ITEM,
    CLAIM_MISSING_EQUIVOCATION,
    CLAIM_MISSING_OPENING,
    CLAIM_UNAVAILABLE,
    CLAIM_WRONG_OUTCOME,
    LATE_REVEAL_PENALTY_BPS,
    ChallengeAward,
    challenge_award,
    provable_claims,
)
from swarm.messages import (
    KIND_ANSWER,
    KIND_JUDGMENT,
    Payout,
    ReputationUpdate,
    RoundLeaf,
    RoundOutcome,
    Slash,
)
from swarm.settlement import beacon_seed, settle
from tests.framework.chain import Chain, new_chain, undelayed_config
from tests.framework.roundkit import STAKE, Round, build_round, honest, make_request, seed
from tests.framework.swarmchain import (
    CLIENT,
    CLIENT_SEED,
    FEE,
    HEIGHT,
    register_pool,
    round_beacon,
    settlement_context,
    setup_round,
)

WINDOW = 5
SETTLER = public_key(dev_seed(2))
CHALLENGER = public_key(dev_seed(3))
BIG_POOL = [seed(f"big-pool{i}") for i in range(64)]
BIG_SEED_OF = {public_key(s): s for s in BIG_POOL}


def windowed_chain() -> Chain:
    return new_chain(undelayed_config(swarm_inclusion_window=WINDOW))


def ctx(chain: Chain, sender: bytes, height: int) -> TxContext:
    return settlement_context(sender, height, chain)


def settle_omitting(chain: Chain, r: Round, *, answer: bytes | None = None,
                    judge: bytes | None = None) -> SettleSwarmRound:
    """A settler that leaves one node's opening out (the test-only settler path)."""
    payload = build_settlement(
        chain.state, height=HEIGHT, beacon_block=round_beacon(chain, r), request=r.request,
        answerers=r.answerers, judges=r.judges,
        commitments=r.commitments,
        answer_openings=[o for o in r.answer_openings if o.node != answer],
        judgment_openings=[j for j in r.judgment_openings if j.node != judge])
    apply_settle_swarm_round(chain.state, payload, ctx(chain, SETTLER, HEIGHT))
    return payload


def leaves_of(payload: SettleSwarmRound) -> tuple[RoundLeaf, ...]:
    return round_leaves(round_id=payload.request.round_id(), answerers=payload.answerers,
                        judges=payload.judges, commitments=payload.commitments,
                        answer_openings=payload.answer_openings,
                        judgment_openings=payload.judgment_openings)


def challenge(leaves: tuple[RoundLeaf, ...], slot: int, claim: int, round_id: bytes,
              **items: object) -> ChallengeSwarmRound:
    hashes = [leaf_hash(leaf) for leaf in leaves]
    return ChallengeSwarmRound(round_id=round_id, claim=claim, slot=slot, leaf=(leaves[slot],),
                               proof=inclusion_proof(hashes, slot), **items)  # type: ignore[arg-type]


def slot_of(leaves: tuple[RoundLeaf, ...], node: bytes, kind: int) -> int:
    return next(i for i, leaf in enumerate(leaves) if (leaf.node, leaf.kind) == (node, kind))


def test_the_default_network_holds_a_settlement_for_the_window() -> None:
    """A settler's omission is challengeable on every network that keeps the default W, and a
    round it voids can settle again: k + 1 + W stays under the settlement lag."""
    default = ChainParams(chain_id=1, target_block_time=1, initial_target=1, unbonding_delay=1)
    assert default.swarm_inclusion_window == DEFAULT_SWARM_INCLUSION_WINDOW > 0
    assert default.swarm_beacon_delay == DEFAULT_SWARM_BEACON_DELAY
    assert DEFAULT_SWARM_BEACON_DELAY + 1 + DEFAULT_SWARM_INCLUSION_WINDOW < MAX_SETTLEMENT_LAG
    chain = new_chain(dev_config(swarm_beacon_delay=0))  # dev's default W
    assert chain.params.swarm_inclusion_window == DEFAULT_SWARM_INCLUSION_WINDOW
    r = setup_round(chain)
    payload = settle_omitting(chain, r)
    held = held_round(chain.state, r.request.round_id())
    assert held is not None and held.deadline == HEIGHT + DEFAULT_SWARM_INCLUSION_WINDOW
    assert chain.state.account(payload.outcome.payouts[0].node).balance == 0


def test_a_chain_without_a_window_pays_at_once_and_holds_nothing() -> None:
    chain = new_chain(undelayed_config())
    r = setup_round(chain)
    payload = settle_omitting(chain, r)
    assert held_round(chain.state, r.request.round_id()) is None
    assert chain.state.account(payload.outcome.payouts[0].node).balance == \
        payload.outcome.payouts[0].amount


def test_an_empty_block_past_the_window_pays_a_held_round_out() -> None:
    """The payout is a begin-block hook: a quiet chain (no transactions) pays out too."""
    chain = windowed_chain()
    r = setup_round(chain)
    payload = settle_omitting(chain, r)
    rid = r.request.round_id()
    miner = public_key(dev_seed(0))
    apply_block_transactions(chain.state, [], height=HEIGHT + WINDOW, miner=miner,
                             params=chain.params)
    assert held_round(chain.state, rid) is not None  # the window's last block: still held
    apply_block_transactions(chain.state, [], height=HEIGHT + WINDOW + 1, miner=miner,
                             params=chain.params)
    assert held_round(chain.state, rid) is None
    for p in payload.outcome.payouts:
        assert chain.state.account(p.node).balance >= p.amount


def test_held_settlement_pays_out_when_the_window_closes() -> None:
    chain = windowed_chain()
    r = setup_round(chain)
    payload = settle_omitting(chain, r)
    rid = r.request.round_id()
    bond = settler_bond(r.request, payload.outcome)
    assert bond == FEE
    # money in, nothing out: the fee and the settler's bond are held
    assert chain.state.account(CLIENT).balance == DEV_BALANCE - FEE
    assert chain.state.account(SETTLER).balance == DEV_BALANCE - bond
    first = payload.outcome.payouts[0]
    assert chain.state.account(first.node).balance == 0
    assert settled_round(chain.state, rid) is not None
    assert finalize_held_rounds in BEGIN_BLOCK_HOOKS
    finalize_held_rounds(chain.state, ctx(chain, CHALLENGER, HEIGHT + WINDOW))  # still open
    assert held_round(chain.state, rid) is not None
    finalize_held_rounds(chain.state, ctx(chain, CHALLENGER, HEIGHT + WINDOW + 1))
    assert held_round(chain.state, rid) is None
    for p in payload.outcome.payouts:
        assert chain.state.account(p.node).balance == p.amount
    for u in payload.outcome.reputations:
        assert chain.state.reputation(u.node) == u.score
    assert chain.state.account(SETTLER).balance == DEV_BALANCE
    # the window is closed: no challenge any more
    leaves = leaves_of(payload)
    with pytest.raises(TransactionError) as err:
        apply_challenge_swarm_round(chain.state, challenge(leaves, 0, CLAIM_BAD_ITEM, rid),
                                    ctx(chain, CHALLENGER, HEIGHT + WINDOW + 1))
    assert err.value.rule == "swarm.not_held"


@pytest.mark.parametrize("kind", [KIND_ANSWER, KIND_JUDGMENT])
def test_omitted_opening_is_included_and_the_settler_slashed(kind: int) -> None:
    chain = windowed_chain()
    r = setup_round(chain)
    # the epoch's table, as the chain records it before the epoch's first transaction (the
    # late-reveal penalty below must not change who the round drew)
    record_epoch_snapshot(chain.state, height=HEIGHT, params=chain.params)
    rid = r.request.round_id()
    victim = r.answerers[1] if kind == KIND_ANSWER else r.judges[1]
    payload = settle_omitting(chain, r, answer=victim if kind == KIND_ANSWER else None,
                              judge=victim if kind == KIND_JUDGMENT else None)
    # the settlement made the victim a no-show: slashed, held
    assert victim in {s.node for s in payload.outcome.slashes}
    assert chain.state.stake(victim).bonded < STAKE
    bond = settler_bond(r.request, payload.outcome)
    assert bond > FEE
    leaves = leaves_of(payload)
    slot = slot_of(leaves, victim, kind)
    omitted = ({"answer_openings": tuple(o for o in r.answer_openings if o.node == victim)}
               if kind == KIND_ANSWER else
               {"judgment_openings": tuple(j for j in r.judgment_openings if j.node == victim)})
    # a challenge needs the right slot and the real opening
    with pytest.raises(TransactionError) as err:
        apply_challenge_swarm_round(chain.state, dataclasses.replace(
            challenge(leaves, slot, CLAIM_MISSING_OPENING, rid, **omitted), slot=slot ^ 1),
            ctx(chain, CHALLENGER, HEIGHT + 1))
    assert err.value.rule in ("inclusion.slot_node", "inclusion.proof")
    with pytest.raises(TransactionError) as err:
        apply_challenge_swarm_round(chain.state, challenge(leaves, slot, CLAIM_MISSING_OPENING,
                                                           rid), ctx(chain, CHALLENGER, HEIGHT + 1))
    assert err.value.rule == "inclusion.opening_count"
    apply_challenge_swarm_round(chain.state, challenge(
        leaves, slot, CLAIM_MISSING_OPENING, rid, **omitted), ctx(chain, CHALLENGER, HEIGHT + 1))
    # voided: the victim gets its slash back but pays the late-reveal penalty (its opening
    # reached the chain only by another node's challenge); the client gets its fee back;
    # the challenger earns no more than that penalty, from the settler's bond
    penalty = STAKE * LATE_REVEAL_PENALTY_BPS // 10_000
    share = min(bond * CHALLENGER_SHARE_BPS // 10_000, penalty)
    assert 0 < share <= penalty
    assert chain.state.stake(victim).bonded == STAKE - penalty
    assert chain.state.account(CLIENT).balance == DEV_BALANCE
    assert chain.state.account(SETTLER).balance == DEV_BALANCE - share
    assert chain.state.account(CHALLENGER).balance == DEV_BALANCE + share
    assert held_round(chain.state, rid) is None and settled_round(chain.state, rid) is None
    # the round settles again, with the opening: the victim is present and paid
    full = build_settlement(chain.state, height=HEIGHT, beacon_block=round_beacon(chain, r),
                            request=r.request,
                            answerers=r.answerers, judges=r.judges, commitments=r.commitments,
                            answer_openings=r.answer_openings,
                            judgment_openings=r.judgment_openings)
    apply_settle_swarm_round(chain.state, full, ctx(chain, CHALLENGER, HEIGHT + 2))
    assert not full.outcome.slashes
    finalize_held_rounds(chain.state, ctx(chain, SETTLER, HEIGHT + 2 + WINDOW + 1))
    assert chain.state.stake(victim).bonded == STAKE - penalty
    assert chain.state.reputation(victim) >= 1000 - 100


@pytest.mark.parametrize("kind", [KIND_ANSWER, KIND_JUDGMENT])
def test_a_node_proving_its_own_omitted_opening_earns_nothing(kind: int) -> None:
    """Griefing: a node that withholds its reveal and adds it in the window (or a settler
    that left it out: the chain cannot tell) gets its slash back and nothing more; the
    settler keeps its bond."""
    chain = windowed_chain()
    r = setup_round(chain)
    rid = r.request.round_id()
    victim = r.answerers[1] if kind == KIND_ANSWER else r.judges[1]
    payload = settle_omitting(chain, r, answer=victim if kind == KIND_ANSWER else None,
                              judge=victim if kind == KIND_JUDGMENT else None)
    bond = settler_bond(r.request, payload.outcome)
    assert bond > FEE and chain.state.stake(victim).bonded < STAKE
    balance = chain.state.account(victim).balance
    leaves = leaves_of(payload)
    omitted = ({"answer_openings": tuple(o for o in r.answer_openings if o.node == victim)}
               if kind == KIND_ANSWER else
               {"judgment_openings": tuple(j for j in r.judgment_openings if j.node == victim)})
    apply_challenge_swarm_round(chain.state, challenge(
        leaves, slot_of(leaves, victim, kind), CLAIM_MISSING_OPENING, rid, **omitted),
        ctx(chain, victim, HEIGHT + 1))
    assert held_round(chain.state, rid) is None and settled_round(chain.state, rid) is None
    assert chain.state.stake(victim).bonded == STAKE  # no slash, no penalty
    assert chain.state.account(victim).balance == balance  # and no share of the bond
    assert chain.state.account(SETTLER).balance == DEV_BALANCE  # the bond comes back
    assert chain.state.account(CLIENT).balance == DEV_BALANCE


def test_challenge_award_bounds_what_a_collusion_gains() -> None:
    """The rule by itself: a withholder's own proof earns nothing; another node's proof
    earns at most the late-reveal penalty the withholder pays (a colluding pair never gains);
    faults only a settler commits forfeit half its bond to the challenger, the rest burned."""
    stake, bond = STAKE, FEE + STAKE * 500 // 10_000
    for claim in (CLAIM_MISSING_OPENING, CLAIM_MISSING_EQUIVOCATION):
        own = challenge_award(claim=claim, bond=bond, self_proof=True, node_stake=stake)
        assert own == ChallengeAward(challenger=0, settler=bond, burned=0, late_penalty=0)
        other = challenge_award(claim=claim, bond=bond, self_proof=False, node_stake=stake)
        assert other.challenger - other.late_penalty <= 0 < other.challenger
        assert other.challenger + other.settler + other.burned == bond
        small = challenge_award(claim=claim, bond=10, self_proof=False, node_stake=stake)
        assert small.challenger == 10 * CHALLENGER_SHARE_BPS // 10_000  # at most half the bond
    for claim in (CLAIM_BAD_ITEM, CLAIM_UNAVAILABLE, CLAIM_WRONG_OUTCOME):
        for self_proof in (False, True):
            award = challenge_award(claim=claim, bond=bond, self_proof=self_proof,
                                    node_stake=stake)
            assert award == ChallengeAward(challenger=bond // 2, settler=0,
                                           burned=bond - bond // 2, late_penalty=0)


def test_a_void_returns_an_escrowed_fee_to_the_escrow_the_next_settlement_takes() -> None:
    chain = windowed_chain()
    r = setup_round(chain)
    rid = r.request.round_id()
    apply_deposit_escrow(chain.state, DepositEscrow(amount=FEE), ctx(chain, CLIENT, HEIGHT))
    victim = r.answerers[1]
    payload = settle_omitting(chain, r, answer=victim)
    assert escrow_of(chain.state, CLIENT).locked == 0  # the fee came from the escrow
    assert held_round(chain.state, rid) is not None
    assert held_round(chain.state, rid).from_escrow == FEE  # type: ignore[union-attr]
    leaves = leaves_of(payload)
    apply_challenge_swarm_round(chain.state, challenge(
        leaves, slot_of(leaves, victim, KIND_ANSWER), CLAIM_MISSING_OPENING, rid,
        answer_openings=tuple(o for o in r.answer_openings if o.node == victim)),
        ctx(chain, victim, HEIGHT + 1))
    # the fee is back in the locked escrow, not in the client's spendable balance
    assert escrow_of(chain.state, CLIENT).locked == FEE
    assert chain.state.account(CLIENT).balance == DEV_BALANCE - FEE
    # so the client cannot spend it before the round settles again from the escrow
    with pytest.raises(TransactionError):
        apply_transaction(chain.state, sign_transaction(
            CLIENT_SEED, chain_id=chain.params.chain_id,
            nonce=chain.state.account(CLIENT).nonce, fee=0,
            payload=Transfer(to=SETTLER, amount=DEV_BALANCE - FEE + 1)),
            height=HEIGHT + 2, params=chain.params)
    full = build_settlement(chain.state, height=HEIGHT, beacon_block=round_beacon(chain, r),
                            request=r.request,
                            answerers=r.answerers, judges=r.judges, commitments=r.commitments,
                            answer_openings=r.answer_openings,
                            judgment_openings=r.judgment_openings)
    apply_settle_swarm_round(chain.state, full, ctx(chain, SETTLER, HEIGHT + 2))
    assert escrow_of(chain.state, CLIENT).locked == 0
    assert chain.state.account(CLIENT).balance == DEV_BALANCE - FEE


def test_a_node_with_a_held_slash_is_not_evicted_until_the_window_closes() -> None:
    """A no-show slash that drops a node below ``min_node_stake`` evicts it only once no
    challenge can return the stake: a void keeps it registered."""
    window = 15  # longer than an epoch
    for voided in (True, False):
        chain = new_chain(undelayed_config(swarm_inclusion_window=window,
                                           min_node_stake=STAKE - STAKE * 500 // 10_000 + 1))
        r = setup_round(chain)
        rid = r.request.round_id()
        victim = r.answerers[1]
        payload = settle_omitting(chain, r, answer=victim)
        assert chain.state.stake(victim).bonded < chain.params.min_node_stake
        epoch = chain.params.swarm_epoch_blocks
        next_epoch = (HEIGHT // epoch + 1) * epoch
        assert next_epoch <= HEIGHT + window  # the epoch starts inside the window
        record_epoch_snapshot(chain.state, height=next_epoch, params=chain.params)
        assert chain.state.swarm_node(victim) is not None  # held: not evicted
        if voided:
            leaves = leaves_of(payload)
            apply_challenge_swarm_round(chain.state, challenge(
                leaves, slot_of(leaves, victim, KIND_ANSWER), CLAIM_MISSING_OPENING, rid,
                answer_openings=tuple(o for o in r.answer_openings if o.node == victim)),
                ctx(chain, victim, next_epoch + 1))
        else:
            finalize_held_rounds(chain.state, ctx(chain, SETTLER, HEIGHT + window + 1))
        assert held_round(chain.state, rid) is None
        later = next_epoch + 2 * epoch
        record_epoch_snapshot(chain.state, height=later, params=chain.params)
        # voided: the stake is back and the node stays; else the slash stands and it goes
        assert (chain.state.swarm_node(victim) is not None) == voided


def test_a_hidden_equivocation_is_proven() -> None:
    chain = windowed_chain()
    r = setup_round(chain)
    rid = r.request.round_id()
    liar = r.answerers[2]
    liar_seed = next(s for s in (seed(f"pool{i}") for i in range(24)) if public_key(s) == liar)
    other = build_round(request=r.request, answers=[(liar_seed, b"another answer q=0")],
                        judges=[]).commitments[0]
    payload = settle_omitting(chain, r)  # the settler saw only the first commitment
    leaves = leaves_of(payload)
    slot = slot_of(leaves, liar, KIND_ANSWER)
    with pytest.raises(TransactionError) as err:  # the same commitment again proves nothing
        apply_challenge_swarm_round(chain.state, challenge(
            leaves, slot, CLAIM_MISSING_EQUIVOCATION, rid,
            commitments=leaves[slot].commitments), ctx(chain, CHALLENGER, HEIGHT + 1))
    assert err.value.rule == "inclusion.same_digest"
    apply_challenge_swarm_round(chain.state, challenge(
        leaves, slot, CLAIM_MISSING_EQUIVOCATION, rid, commitments=(other,)),
        ctx(chain, CHALLENGER, HEIGHT + 1))
    assert held_round(chain.state, rid) is None


def big_round(chain: Chain) -> Round:
    """32 answerers and 32 judges drawn by the chain from 64 nodes (47 distinct nodes: some
    answer and judge)."""
    register_pool(chain, pool=BIG_POOL)
    for nonce in range(200):
        request = make_request(CLIENT_SEED, fee=FEE, answers=32, judges=32, nonce=nonce)
        drawn, judged = selected_nodes(chain.state, request, height=HEIGHT,
                                       min_stake=chain.params.min_node_stake)
        if len(drawn) == 32 and len(judged) == 32:
            break
    answers = [(BIG_SEED_OF[node], f"answer q={i % 7}".encode()) for i, node in enumerate(drawn)]
    return build_round(request=request, answers=answers,
                       judges=[(BIG_SEED_OF[node], honest) for node in judged])


def root_settlement(chain: Chain, r: Round, leaves: tuple[RoundLeaf, ...]
                    ) -> tuple[SettleSwarmRoot, dict[bytes, int], dict[bytes, int]]:
    nodes = set(r.answerers) | set(r.judges)
    reputations = {n: chain.state.reputation(n) for n in nodes}
    stakes = {n: STAKE for n in nodes}
    outcome = settle(request=r.request, answerers=r.answerers, judges=r.judges,
                     commitments=r.commitments, answer_openings=r.answer_openings,
                     judgment_openings=r.judgment_openings, reputations=reputations,
                     stakes=stakes,
                     seed=beacon_seed(r.request.round_id(), round_beacon(chain, r))).outcome
    return (SettleSwarmRoot(request=r.request, reputation_height=HEIGHT,
                            beacon_block=round_beacon(chain, r), data_root=leaves_root(leaves),
                            outcome=outcome),
            reputations, stakes)


def test_32_answerers_and_32_judges_settle_by_data_root() -> None:
    chain = windowed_chain()
    r = big_round(chain)
    rid = r.request.round_id()
    full = build_settlement(chain.state, height=HEIGHT, beacon_block=round_beacon(chain, r),
                            request=r.request,
                            answerers=r.answerers, judges=r.judges, commitments=r.commitments,
                            answer_openings=r.answer_openings,
                            judgment_openings=r.judgment_openings)
    assert len(encode(full)) > MAX_TX_SIZE  # why the data root: the full form cannot fit
    leaves = leaves_of(full)
    assert len(leaves) == 64
    payload, _, _ = root_settlement(chain, r, leaves)
    assert payload.outcome == full.outcome
    signed = sign_transaction(dev_seed(2), chain_id=chain.params.chain_id, nonce=0, fee=10,
                              payload=payload)
    assert len(signed.encode()) <= MAX_TX_SIZE
    apply_settle_swarm_root(chain.state, payload, ctx(chain, SETTLER, HEIGHT))
    assert chain.state.account(CLIENT).balance == DEV_BALANCE - FEE
    finalize_held_rounds(chain.state, ctx(chain, SETTLER, HEIGHT + WINDOW + 1))
    assert held_round(chain.state, rid) is None
    for p in payload.outcome.payouts:
        assert chain.state.account(p.node).balance == p.amount
    assert chain.state.account(SETTLER).balance == DEV_BALANCE


def test_a_bad_item_under_the_root_is_proven_and_the_settler_slashed() -> None:
    chain = windowed_chain()
    r = big_round(chain)
    rid = r.request.round_id()
    honest_leaves = round_leaves(round_id=rid, answerers=r.answerers, judges=r.judges,
                                 commitments=r.commitments, answer_openings=r.answer_openings,
                                 judgment_openings=r.judgment_openings)
    # the settler swaps one judge's opening for another judge's: a bad item
    j0 = slot_of(honest_leaves, sorted(r.judges)[0], KIND_JUDGMENT)
    bad = dataclasses.replace(honest_leaves[j0],
                              judgment_openings=honest_leaves[j0 + 1].judgment_openings)
    leaves = (*honest_leaves[:j0], bad, *honest_leaves[j0 + 1:])
    payload, _, _ = root_settlement(chain, r, leaves)
    apply_settle_swarm_root(chain.state, payload, ctx(chain, SETTLER, HEIGHT))
    bond = settler_bond(r.request, payload.outcome)
    with pytest.raises(TransactionError) as err:  # a valid leaf proves nothing
        apply_challenge_swarm_round(chain.state, challenge(leaves, j0 + 1, CLAIM_BAD_ITEM, rid),
                                    ctx(chain, CHALLENGER, HEIGHT + 1))
    assert err.value.rule == "inclusion.leaf_valid"
    apply_challenge_swarm_round(chain.state, challenge(leaves, j0, CLAIM_BAD_ITEM, rid),
                                ctx(chain, CHALLENGER, HEIGHT + 1))
    assert held_round(chain.state, rid) is None
    assert chain.state.account(SETTLER).balance == DEV_BALANCE - bond
    assert chain.state.account(CHALLENGER).balance == \
        DEV_BALANCE + bond * CHALLENGER_SHARE_BPS // 10_000
    assert chain.state.account(CLIENT).balance == DEV_BALANCE


def post_all(chain: Chain, rid: bytes, leaves: tuple[RoundLeaf, ...], height: int,
             per_tx: int = 8) -> None:
    hashes = [leaf_hash(leaf) for leaf in leaves]
    for start in range(0, len(leaves), per_tx):
        post = PostRoundLeaves(round_id=rid, leaves=tuple(
            PostedLeaf(slot=i, leaf=leaves[i], proof=inclusion_proof(hashes, i))
            for i in range(start, min(len(leaves), start + per_tx))))
        signed = sign_transaction(dev_seed(3), chain_id=chain.params.chain_id, nonce=0, fee=10,
                                  payload=post)
        assert len(signed.encode()) <= MAX_TX_SIZE
        apply_post_round_leaves(chain.state, post, ctx(chain, CHALLENGER, height))


def test_a_wrong_outcome_is_voided_once_the_data_is_posted() -> None:
    chain = windowed_chain()
    r = big_round(chain)
    rid = r.request.round_id()
    leaves = round_leaves(round_id=rid, answerers=r.answerers, judges=r.judges,
                          commitments=r.commitments, answer_openings=r.answer_openings,
                          judgment_openings=r.judgment_openings)
    payload, _, _ = root_settlement(chain, r, leaves)
    # within every bound a validator can check alone: one payout moved to another node
    a, b, *rest = payload.outcome.payouts
    greedy = dataclasses.replace(payload, outcome=dataclasses.replace(payload.outcome, payouts=(
        Payout(node=a.node, amount=a.amount + b.amount), Payout(node=b.node, amount=0), *rest)))
    apply_settle_swarm_root(chain.state, greedy, ctx(chain, SETTLER, HEIGHT))
    apply_challenge_swarm_round(chain.state, ChallengeSwarmRound(round_id=rid,
                                                                 claim=CLAIM_UNAVAILABLE),
                                ctx(chain, CHALLENGER, HEIGHT + 1))
    post_all(chain, rid, leaves, HEIGHT + 2)
    assert held_round(chain.state, rid) is None
    assert chain.state.account(CLIENT).balance == DEV_BALANCE
    assert settled_round(chain.state, rid) is None


def test_the_right_outcome_survives_posting_and_unposted_data_voids() -> None:
    chain = windowed_chain()
    r = big_round(chain)
    rid = r.request.round_id()
    leaves = round_leaves(round_id=rid, answerers=r.answerers, judges=r.judges,
                          commitments=r.commitments, answer_openings=r.answer_openings,
                          judgment_openings=r.judgment_openings)
    payload, _, _ = root_settlement(chain, r, leaves)
    apply_settle_swarm_root(chain.state, payload, ctx(chain, SETTLER, HEIGHT))
    apply_challenge_swarm_round(chain.state, ChallengeSwarmRound(round_id=rid,
                                                                 claim=CLAIM_UNAVAILABLE),
                                ctx(chain, CHALLENGER, HEIGHT + 3))
    held = held_round(chain.state, rid)
    assert held is not None and held.deadline == HEIGHT + 3 + WINDOW
    post_all(chain, rid, leaves, HEIGHT + 4)
    held = held_round(chain.state, rid)
    assert held is not None and held.posted == 64
    with pytest.raises(TransactionError) as err:  # checked once: no recomputation on demand
        post_all(chain, rid, leaves, HEIGHT + 5)
    assert err.value.rule == "swarm.data_complete"
    finalize_held_rounds(chain.state, ctx(chain, SETTLER, HEIGHT + 4 + WINDOW))
    assert held_round(chain.state, rid) is None
    assert chain.state.account(SETTLER).balance == DEV_BALANCE
    # the same round settled again on another chain: nobody posts, the settlement is voided
    chain = windowed_chain()
    r = big_round(chain)
    payload, _, _ = root_settlement(chain, r, leaves)
    apply_settle_swarm_root(chain.state, payload, ctx(chain, SETTLER, HEIGHT))
    apply_challenge_swarm_round(chain.state, ChallengeSwarmRound(round_id=rid,
                                                                 claim=CLAIM_UNAVAILABLE),
                                ctx(chain, CHALLENGER, HEIGHT + 1))
    finalize_held_rounds(chain.state, ctx(chain, SETTLER, HEIGHT + 1 + WINDOW + 1))
    assert held_round(chain.state, rid) is None and settled_round(chain.state, rid) is None
    assert chain.state.account(CLIENT).balance == DEV_BALANCE
    assert chain.state.account(CHALLENGER).balance > DEV_BALANCE


@pytest.mark.parametrize(("change", "rule"), [
    ("money", "swarm.outcome_money"), ("node", "swarm.outcome_nodes"),
    ("reputation", "swarm.outcome_reputation"), ("window", "swarm.no_inclusion_window")])
def test_root_settlement_bounds(change: str, rule: str) -> None:
    chain = new_chain(undelayed_config()) if change == "window" else windowed_chain()
    r = setup_round(chain)
    leaves = round_leaves(round_id=r.request.round_id(), answerers=r.answerers,
                          judges=r.judges, commitments=r.commitments,
                          answer_openings=r.answer_openings,
                          judgment_openings=r.judgment_openings)
    payload, _, _ = root_settlement(chain, r, leaves)
    out = payload.outcome
    u, *others = out.reputations
    bad = {"money": dataclasses.replace(out, refund=out.refund + 1),
           "node": dataclasses.replace(out, payouts=(*out.payouts, Payout(node=b"\xff" * 32,
                                                                         amount=0))),
           "reputation": dataclasses.replace(out, reputations=(
               dataclasses.replace(u, score=u.score + 10**6), *others)),
           "window": out}[change]
    with pytest.raises(TransactionError) as err:
        apply_settle_swarm_root(chain.state, dataclasses.replace(payload, outcome=bad),
                                ctx(chain, SETTLER, HEIGHT))
    assert err.value.rule == rule


def test_slots_and_proofs() -> None:
    assert round_slots([b"b" * 32, b"a" * 32], [b"a" * 32]) == (
        (b"a" * 32, KIND_ANSWER), (b"b" * 32, KIND_ANSWER), (b"a" * 32, KIND_JUDGMENT))


def test_the_block_hook_pays_a_due_round_before_the_blocks_transactions() -> None:
    chain = windowed_chain()
    r = setup_round(chain)
    payload = settle_omitting(chain, r)
    top = payload.outcome.payouts[0]
    miner = public_key(dev_seed(3))
    transfer = sign_transaction(dev_seed(3), chain_id=chain.params.chain_id, nonce=0, fee=10,
                                payload=Transfer(to=CLIENT, amount=1))
    apply_block_transactions(chain.state, [transfer], height=HEIGHT + WINDOW, miner=miner,
                             params=chain.params)
    assert chain.state.account(top.node).balance == 0  # the window is still open
    again = sign_transaction(dev_seed(3), chain_id=chain.params.chain_id, nonce=1, fee=10,
                             payload=Transfer(to=CLIENT, amount=1))
    apply_block_transactions(chain.state, [again], height=HEIGHT + WINDOW + 1, miner=miner,
                             params=chain.params)
    assert chain.state.account(top.node).balance == top.amount
    assert held_round(chain.state, r.request.round_id()) is None


def test_provable_claims_find_each_omission() -> None:
    chain = windowed_chain()
    r = setup_round(chain)
    rid = r.request.round_id()
    victim_a, victim_j = r.answerers[0], r.judges[0]
    payload = build_settlement(
        chain.state, height=HEIGHT, beacon_block=round_beacon(chain, r), request=r.request,
        answerers=r.answerers, judges=r.judges,
        commitments=[c for c in r.commitments
                     if (c.node, c.kind) != (victim_j, KIND_JUDGMENT)],
        answer_openings=[o for o in r.answer_openings if o.node != victim_a],
        judgment_openings=[j for j in r.judgment_openings if j.node != victim_j])
    leaves = leaves_of(payload)
    claims = provable_claims(leaves, round_id=rid, commitments=r.commitments,
                             answer_openings=r.answer_openings,
                             judgment_openings=r.judgment_openings)
    assert [(c.claim, leaves[c.slot].node) for c in claims] == [
        (CLAIM_MISSING_OPENING, victim_a), (CLAIM_MISSING_OPENING, victim_j)]
    assert claims[1].commitments  # the judge's commitment was left out too
    # against the full data there is nothing to prove
    assert provable_claims(leaves_of(build_settlement(
        chain.state, height=HEIGHT, beacon_block=round_beacon(chain, r), request=r.request,
        answerers=r.answerers, judges=r.judges,
        commitments=r.commitments, answer_openings=r.answer_openings,
        judgment_openings=r.judgment_openings)), round_id=rid, commitments=r.commitments,
        answer_openings=r.answer_openings, judgment_openings=r.judgment_openings) == []
    # every claim found is accepted on chain
    apply_settle_swarm_round(chain.state, payload, ctx(chain, SETTLER, HEIGHT))
    apply_challenge_swarm_round(chain.state, challenge_payload(rid, leaves, claims[1]),
                                ctx(chain, CHALLENGER, HEIGHT + 1))
    assert held_round(chain.state, rid) is None


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13, 17])
def test_every_slot_proves_and_no_other(count: int) -> None:
    hashes = [bytes([i]) * 32 for i in range(count)]
    root = data_root(hashes)
    for i in range(count):
        proof = inclusion_proof(hashes, i)
        assert proof_root(hashes[i], index=i, count=count, proof=proof) == root
        assert proof_root(hashes[(i + 1) % count] if count > 1 else b"\1" * 32, index=i,
                          count=count, proof=proof) != root
        assert proof_root(hashes[i], index=i, count=count + 1, proof=proof) != root
    assert data_root(hashes) != data_root([*hashes, hashes[-1]])


def test_the_widest_32_plus_32_outcome_fits_a_root_settlement() -> None:
    """64 distinct nodes, every one paid and rated, 15 slashed, every integer at full
    width: the largest outcome a 32 + 32 round settles by data root (docs/swarm.md §9; 16
    slashed fitted until the settlement named its beacon block)."""
    request = make_request(CLIENT_SEED, fee=2**63, answers=32, judges=32,
                           beacon_height=2**40)
    nodes = sorted(i.to_bytes(2, "big") * 16 for i in range(1, 65))
    wide = 2**63
    outcome = RoundOutcome(
        round_id=request.round_id(), ranking=tuple(nodes[:32]), scores=(wide,) * 32,
        payouts=tuple(Payout(node=n, amount=wide) for n in nodes), refund=wide,
        reputations=tuple(ReputationUpdate(node=n, score=wide) for n in nodes),
        slashes=tuple(Slash(node=n, amount=wide, reason=0) for n in nodes[:15]))
    payload = SettleSwarmRoot(request=request, reputation_height=2**40, beacon_block=bytes(32),
                              data_root=bytes(32), outcome=outcome)
    signed = sign_transaction(dev_seed(2), chain_id=2**40, nonce=2**40, fee=2**40,
                              payload=payload)
    assert len(signed.encode()) <= MAX_TX_SIZE
