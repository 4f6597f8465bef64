"""Finality through real blocks and the node-facing functions of `consensus.finality`.

The rule-by-rule cases are vectors (test_finality_vectors.py); here: mined blocks carrying
registrations and aggregates validate, finalize and undo exactly; the duty, gossip check and
aggregation the node builds on; the FFG predicates; and the bounds the vectors cannot reach.
"""

from __future__ import annotations

import dataclasses

import pytest

from consensus.finality import (
    aggregate_votes,
    check_vote,
    describe,
    finality_status,
    finalized_block,
    is_stalled,
    registration_payload,
    sign_vote,
    slashing_evidence,
    vote_duty,
)
from consensus.genesis import dev_config, dev_seed
from consensus.tx import Transaction, sign_transaction
from consensus.validation import disconnect_block
from contracts import Payload
from contracts.finality import (
    MAX_LINKS,
    STATUS_KEY,
    VOTES_PREFIX,
    LinkTally,
    TargetVotes,
    bitfield_of,
    has_quorum,
    is_double_vote,
    is_surround_vote,
)
from core.errors import ConsensusError, TransactionError
from core.state import BlockUndo
from core.votes import Checkpoint, VoteData
from tests.framework.chain import make_block, new_chain
from tests.framework.finalitykit import (
    RELAYER_SEED,
    FinalityChain,
    Validator,
    block_id,
    finality_params,
    new_finality_chain,
    signed_vote,
)

VALIDATORS = [Validator(i) for i in range(4)]


def _registered_chain(stakes: list[int], upto: int, *, registered: int | None = None
                      ) -> tuple[FinalityChain, list[Validator]]:
    """Validators with ``stakes``, the first ``registered`` (all) registered in block 1,
    empty blocks up to ``upto``."""
    chain, validators = new_finality_chain(stakes)
    first = validators[:registered]
    assert chain.block([chain.transaction(v.seed, registration_payload(v.secret))
                        for v in first]) == ["ok"] * len(first)
    while chain.height < upto:
        chain.block()
    return chain, validators


def test_mined_blocks_carrying_votes_finalize_and_undo_exactly() -> None:
    config = dev_config(
        finality_epoch_blocks=2,
        balances={v.address.hex(): 10**9 for v in VALIDATORS},
        stakes={v.address.hex(): 1000 for v in VALIDATORS})
    chain = new_chain(config)
    params = chain.params

    def send(v: Validator, payload: Payload) -> Transaction:
        nonce = chain.state.account(v.address).nonce
        return sign_transaction(v.seed, chain_id=params.chain_id, nonce=nonce, fee=10,
                                payload=payload)

    chain.connect(make_block(chain, [send(v, registration_payload(v.secret))
                                     for v in VALIDATORS]))
    undos: list[tuple[bytes, BlockUndo]] = []
    while chain.tip.height < 11:
        height = chain.tip.height
        data = vote_duty(chain.state, height=height, params=params)
        txs = []
        if data is not None:
            votes = [sign_vote(v.secret, data, validator=v.address, chain_id=params.chain_id)
                     for v in VALIDATORS[:3]]
            payload = aggregate_votes(chain.state, votes, height=height + 1, params=params)
            if payload is not None:
                txs.append(send(VALIDATORS[3], payload))
        root_before = chain.state.root()
        undos.append((root_before, chain.connect(make_block(chain, txs))))  # full validation
    status = finality_status(chain.state)
    assert status is not None and status.finalized.epoch >= 3
    # the finalized root is the id of the epoch's first block on this chain
    assert finalized_block(status) == chain.headers[status.finalized.epoch * 2].block_id()
    # undo data restores every root, finality records included
    for root_before, undo in reversed(undos):
        disconnect_block(chain.state, undo)
        assert chain.state.root() == root_before
    assert finality_status(chain.state) is None


def test_vote_duty_waits_for_the_checkpoint_and_votes_from_the_last_justified() -> None:
    chain, _ = _registered_chain([100] * 4, upto=3)
    params = chain.params
    assert vote_duty(chain.state, height=4, params=params) is None  # before block 4's child
    chain.block()
    assert vote_duty(chain.state, height=4, params=params) is None  # checkpoint 2 unrecorded
    chain.block()
    duty = vote_duty(chain.state, height=5, params=params)
    assert duty == VoteData(source=chain.checkpoint(1), target=chain.checkpoint(2))


def test_check_vote_returns_the_index_or_names_the_rule() -> None:
    chain, validators = _registered_chain([100] * 4, upto=4, registered=3)
    outsider = validators[3]  # registers after the set of epoch 2 was recorded (height 4)
    assert chain.block([chain.transaction(outsider.seed, registration_payload(
        outsider.secret))]) == ["ok"]
    params = chain.params
    data = VoteData(source=chain.checkpoint(1), target=chain.checkpoint(2))
    members = chain.members(2)
    assert members is not None
    addresses = [e.address for e in members.entries]
    for v in validators[:3]:
        assert check_vote(chain.state, signed_vote(v, data), height=6,
                          params=params) == addresses.index(v.address)
    with pytest.raises(TransactionError) as refused:
        check_vote(chain.state, signed_vote(outsider, data), height=6, params=params)
    assert refused.value.rule == "votes.not_in_set"
    forged = dataclasses.replace(signed_vote(validators[0], data),
                                 signature=signed_vote(validators[1], data).signature)
    with pytest.raises(TransactionError) as bad:
        check_vote(chain.state, forged, height=6, params=params)
    assert bad.value.rule == "votes.signature"
    with pytest.raises(TransactionError) as late:
        check_vote(chain.state, signed_vote(validators[0], data), height=8, params=params)
    assert late.value.rule == "votes.target_window"


def test_aggregate_votes_takes_the_link_adding_most_stake_and_nothing_twice() -> None:
    chain, validators = _registered_chain([100, 100, 100, 100], upto=5)
    params = chain.params
    good = VoteData(source=chain.checkpoint(1), target=chain.checkpoint(2))
    fork = VoteData(source=chain.checkpoint(1), target=chain.checkpoint(2, b"fork"))
    votes = ([signed_vote(v, good) for v in validators[:2]]
             + [signed_vote(v, fork) for v in validators])  # the fork's votes do not count
    payload = aggregate_votes(chain.state, votes, height=6, params=params)
    assert payload is not None and payload.data == good
    assert chain.block([chain.transaction(RELAYER_SEED, payload)]) == ["ok"]
    assert aggregate_votes(chain.state, votes, height=7, params=params) is None
    forged = dataclasses.replace(signed_vote(validators[2], good),
                                 signature=signed_vote(validators[3], good).signature)
    assert aggregate_votes(chain.state, [forged], height=7, params=params) is None
    trusted = aggregate_votes(chain.state, [forged], height=7, params=params,
                              verify_signatures=False)  # the pool's word: the block refuses it
    assert trusted is not None
    more = aggregate_votes(chain.state, [*votes, signed_vote(validators[2], good)], height=7,
                           params=params)
    members = chain.members(2)
    assert members is not None and more is not None
    assert more.bits == bitfield_of([members.index_of(validators[2].address) or 0], 4)
    assert chain.block([chain.transaction(dev_seed(301), trusted),
                        chain.transaction(RELAYER_SEED, more)]) == ["votes.signature", "ok"]
    status = chain.status()
    assert status is not None and status.finalized == chain.checkpoint(1)


def test_a_target_counts_at_most_max_links_sources() -> None:
    chain, validators = _registered_chain([100] * 4, upto=5)
    status = chain.status()
    assert status is not None
    fake_sources = tuple(Checkpoint(epoch=1, root=bytes([i]) * 32) for i in range(MAX_LINKS))
    chain.state.set_record(VOTES_PREFIX + (2).to_bytes(8, "big"), TargetVotes(tuple(
        LinkTally(source=s, bits=b"\x01", stake=100) for s in fake_sources)))
    data = VoteData(source=chain.checkpoint(1), target=chain.checkpoint(2))
    chain.state.set_record(STATUS_KEY, dataclasses.replace(
        status, justified=tuple(sorted({*status.justified, data.source}))))
    payload = aggregate_votes(chain.state, [signed_vote(validators[0], data)], height=6,
                              params=chain.params)
    assert payload is not None
    assert chain.block([chain.transaction(RELAYER_SEED, payload)]) == ["votes.too_many_sources"]


def test_blocks_without_validators_write_no_finality_state() -> None:
    chain, _ = new_finality_chain([100, 100])
    for _ in range(9):
        chain.block()
    assert not any(key.startswith(b"fin/") for key in chain.state.kv.data)  # type: ignore[attr-defined]
    assert finality_status(chain.state) is None
    assert describe(None, height=9, params=chain.params)["active"] is False


def test_stalled_when_finality_falls_behind_the_chain() -> None:
    chain, _ = _registered_chain([100] * 4, upto=3)
    params = finality_params(finality_stall_epochs=3)
    status = chain.status()
    assert status is not None and status.finalized.epoch == 0
    assert not is_stalled(status, height=7, params=params)  # epoch 3: 3 behind genesis
    assert is_stalled(status, height=8, params=params)
    assert not is_stalled(None, height=10**6, params=params)
    summary = describe(status, height=8, params=params)
    assert summary["stalled"] is True and summary["finalized_height"] == 0
    assert summary["justified"] == {"epoch": 1, "height": 2, "root": block_id(2).hex()}


def test_ffg_predicates() -> None:
    def link(s: int, t: int, tag: int = 0) -> VoteData:
        return VoteData(source=Checkpoint(epoch=s, root=bytes(32)),
                        target=Checkpoint(epoch=t, root=bytes([tag]) * 32))

    assert is_double_vote(link(1, 3), link(2, 3)) and is_double_vote(link(1, 3), link(1, 3, 1))
    assert not is_double_vote(link(1, 3), link(1, 3))
    assert is_surround_vote(link(1, 4), link(2, 3)) and is_surround_vote(link(2, 3), link(1, 4))
    assert not is_surround_vote(link(1, 4), link(1, 3))  # same source: not strict
    assert not is_surround_vote(link(1, 2), link(2, 3))
    params = finality_params()
    assert has_quorum(2, 3, params) and not has_quorum(1, 2, params)
    assert not has_quorum(0, 0, params)
    v = VALIDATORS[0]
    assert slashing_evidence(signed_vote(v, link(1, 4)), signed_vote(v, link(2, 3))) is not None
    assert slashing_evidence(signed_vote(v, link(1, 2)), signed_vote(v, link(2, 3))) is None
    assert slashing_evidence(signed_vote(v, link(1, 3)),
                             signed_vote(VALIDATORS[1], link(1, 3, 1))) is None


def test_a_vote_is_bound_to_its_chain_id() -> None:
    chain, validators = _registered_chain([100] * 4, upto=5)
    data = VoteData(source=chain.checkpoint(1), target=chain.checkpoint(2))
    other_chain = signed_vote(validators[0], data, chain_id=chain.params.chain_id + 1)
    with pytest.raises(ConsensusError) as refused:
        check_vote(chain.state, other_chain, height=6, params=chain.params)
    assert refused.value.rule == "votes.signature"
