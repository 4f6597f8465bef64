"""The finality contract under arbitrary payloads: any aggregate, evidence or registration
either applies or fails with a named rule (`ConsensusError`), never another exception, and a
failed one leaves the state root exactly as it was; a valid aggregate justifies only at the
quorum, whichever order its parts arrive in."""

from __future__ import annotations

import functools
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.finality import registration_payload
from consensus.transition import apply_transaction
from contracts.finality import (
    FinalityVotes,
    RegisterValidator,
    ReportVoteViolation,
    has_quorum,
)
from core.errors import ConsensusError
from core.votes import Checkpoint, SignedVote, VoteData
from tests.framework.finalitykit import (
    RELAYER_SEED,
    FinalityChain,
    Validator,
    aggregate,
    new_finality_chain,
    signed_vote,
)

STAKES = [40, 30, 20, 10]
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@functools.cache
def _chain_at_6_bytes() -> tuple[dict[bytes, bytes], list[Validator]]:
    """A chain with four registered validators at height 5 (votes for epoch 2 may land
    at height 6), as raw state items (each example starts from a copy)."""
    chain, validators = new_finality_chain(STAKES)
    assert chain.block([chain.transaction(v.seed, registration_payload(v.secret))
                        for v in validators]) == ["ok"] * 4
    while chain.height < 5:
        chain.block()
    return dict(chain.state.kv.data), validators  # type: ignore[attr-defined]


def _fresh() -> tuple[FinalityChain, list[Validator]]:
    items, validators = _chain_at_6_bytes()
    chain, _ = new_finality_chain(STAKES)
    chain.state.kv.data.clear()  # type: ignore[attr-defined]
    chain.state.kv.data.update(items)  # type: ignore[attr-defined]
    chain.state = type(chain.state)(chain.state.kv)
    chain.height = 5
    return chain, validators


def _apply_or_rule(chain: FinalityChain, payload: object) -> str:
    """Apply ``payload`` from the relayer at height 6: "ok", or the rule; a failure must
    leave the root unchanged."""
    tx = chain.transaction(RELAYER_SEED, payload)  # type: ignore[arg-type]
    root = chain.state.root()
    try:
        apply_transaction(chain.state, tx, height=6, params=chain.params,
                          parent_id=chain.tip_id)
    except ConsensusError as exc:
        assert chain.state.root() == root
        return exc.rule
    return "ok"


checkpoints = st.builds(Checkpoint, epoch=st.integers(0, 2**64 - 1),
                        root=st.binary(min_size=32, max_size=32))
epochs_near = st.integers(0, 4)


@FUZZ
@given(source_epoch=epochs_near, target_epoch=epochs_near, real_roots=st.booleans(),
       bits=st.binary(max_size=3), signature=st.binary(min_size=96, max_size=96))
def test_any_aggregate_applies_or_names_its_rule(source_epoch: int, target_epoch: int,
                                                 real_roots: bool, bits: bytes,
                                                 signature: bytes) -> None:
    chain, _ = _fresh()
    source = chain.checkpoint(source_epoch) if real_roots else Checkpoint(
        epoch=source_epoch, root=bytes(32))
    data = VoteData(source=source, target=chain.checkpoint(target_epoch))
    outcome = _apply_or_rule(chain, FinalityVotes(data=data, bits=bits, signature=signature))
    assert outcome.startswith("votes.")  # a random signature never verifies


@FUZZ
@given(first=checkpoints, second=checkpoints, third=checkpoints, fourth=checkpoints,
       who=st.integers(0, 3), signature=st.binary(min_size=96, max_size=96),
       sign_first=st.booleans())
def test_any_evidence_applies_or_names_its_rule(first: Checkpoint, second: Checkpoint,
                                                third: Checkpoint, fourth: Checkpoint,
                                                who: int, signature: bytes,
                                                sign_first: bool) -> None:
    chain, validators = _fresh()
    a = VoteData(source=first, target=second)
    b = VoteData(source=third, target=fourth)
    v = validators[who]
    vote_a = signed_vote(v, a) if sign_first else SignedVote(v.address, a, signature)
    vote_b = SignedVote(v.address, b, signature)
    outcome = _apply_or_rule(chain, ReportVoteViolation(first=vote_a, second=vote_b))
    assert outcome.startswith("slash.")  # the second signature is random: never valid


@FUZZ
@given(pubkey=st.binary(min_size=48, max_size=48), proof=st.binary(min_size=96, max_size=96))
def test_any_registration_applies_or_names_its_rule(pubkey: bytes, proof: bytes) -> None:
    chain, _ = _fresh()
    outcome = _apply_or_rule(chain, RegisterValidator(pubkey=pubkey, proof=proof))
    assert outcome in ("validator.insufficient_stake",)  # the relayer holds no bond


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_justification_depends_on_the_stake_counted_not_on_the_order(
        order: tuple[int, ...]) -> None:
    """Each validator's vote lands alone, in every order: the target is justified exactly
    when the counted stake first reaches 2/3 (40+30 of 100 does, 20+10+30 does not)."""
    chain, validators = _fresh()
    data = VoteData(source=chain.checkpoint(1), target=chain.checkpoint(2))
    counted = 0
    for i in order:
        status_before = chain.status()
        assert status_before is not None
        payload = aggregate(chain, [validators[i]], data)
        assert _apply_or_rule(chain, payload) == "ok"
        counted += STAKES[i]
        status = chain.status()
        assert status is not None
        justified = chain.checkpoint(2) in status.justified
        assert justified == has_quorum(counted, sum(STAKES), chain.params)
        assert (status.finalized == chain.checkpoint(1)) == justified
    assert _apply_or_rule(chain, aggregate(chain, validators, data)) == "votes.nothing_new"
