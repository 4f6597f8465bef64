"""Commit-reveal: openings bind author, round and kind; copycats fail; equivocation is caught."""

from __future__ import annotations

import dataclasses

from consensus.genesis import dev_seed
from consensus.tx import public_key
from swarm.commit_reveal import (
    answer_opening,
    answer_set_digest,
    commit,
    find_equivocations,
    judgment_opening,
    judgment_payload,
    make_evidence,
    opening_matches,
    reveal_matches,
    verify_evidence,
)
from swarm.messages import KIND_ANSWER, KIND_JUDGMENT, Commitment, EquivocationEvidence, Reveal

ROUND = bytes([5]) * 32
OTHER_ROUND = bytes([6]) * 32
ALICE, BOB = dev_seed(1), dev_seed(2)
SALT_A, SALT_B = bytes([1]) * 32, bytes([2]) * 32


def test_honest_reveal_opens_its_commitment() -> None:
    c, r = commit(ALICE, round_id=ROUND, kind=KIND_ANSWER, payload=b"42", salt=SALT_A)
    assert c.verify_signature()
    assert c.node == public_key(ALICE)
    assert reveal_matches(c, r)
    assert opening_matches(c, answer_opening(r))
    assert Commitment.decode(c.encode()) == c and Reveal.decode(r.encode()) == r
    # any change to payload, salt, round or kind breaks the opening
    assert not reveal_matches(c, dataclasses.replace(r, payload=b"43"))
    assert not reveal_matches(c, dataclasses.replace(r, salt=SALT_B))
    assert not reveal_matches(c, dataclasses.replace(r, round_id=OTHER_ROUND))
    assert not reveal_matches(c, dataclasses.replace(r, kind=KIND_JUDGMENT))


def test_copycat_cannot_reuse_anothers_reveal() -> None:
    alice_c, alice_r = commit(ALICE, round_id=ROUND, kind=KIND_ANSWER, payload=b"the answer",
                              salt=SALT_A)
    bob_c, _ = commit(BOB, round_id=ROUND, kind=KIND_ANSWER, payload=b"a guess", salt=SALT_B)
    stolen = dataclasses.replace(alice_r, node=public_key(BOB))
    # Alice's opening under Bob's name opens neither Bob's commitment nor Alice's
    assert not reveal_matches(bob_c, stolen)
    assert not reveal_matches(alice_c, stolen)
    assert not opening_matches(bob_c, answer_opening(stolen))
    # copying Alice's digest into a commitment signed by Bob does not help either
    key_signed = commit(BOB, round_id=ROUND, kind=KIND_ANSWER, payload=b"x", salt=SALT_B)[0]
    copied = dataclasses.replace(key_signed, digest=alice_c.digest)
    assert not copied.verify_signature()  # the signature covers the digest
    assert not reveal_matches(copied, stolen)
    # and a copied commitment with Alice's node id still carries Alice's, not Bob's, key
    assert not reveal_matches(dataclasses.replace(alice_c, node=public_key(BOB)), stolen)
    assert not dataclasses.replace(alice_c, node=public_key(BOB)).verify_signature()


def test_judgment_openings_carry_outcomes() -> None:
    answer_set = answer_set_digest([(public_key(ALICE), bytes(32))])
    c, r = commit(BOB, round_id=ROUND, kind=KIND_JUDGMENT,
                  payload=judgment_payload(answer_set, bytes([0, 1, 2, 2])), salt=SALT_B)
    opening = judgment_opening(r)
    assert (opening.answer_set, opening.outcomes) == (answer_set, bytes([0, 1, 2, 2]))
    assert opening_matches(c, opening)
    assert not opening_matches(c, dataclasses.replace(opening, outcomes=bytes([1, 1, 2, 2])))
    assert not opening_matches(c, dataclasses.replace(opening, answer_set=bytes(32)))


def test_equivocation_detected_and_verifiable() -> None:
    first, _ = commit(ALICE, round_id=ROUND, kind=KIND_JUDGMENT, payload=b"\x00", salt=SALT_A)
    second, _ = commit(ALICE, round_id=ROUND, kind=KIND_JUDGMENT, payload=b"\x01", salt=SALT_A)
    honest, _ = commit(BOB, round_id=ROUND, kind=KIND_JUDGMENT, payload=b"\x00", salt=SALT_B)
    other_round, _ = commit(ALICE, round_id=OTHER_ROUND, kind=KIND_JUDGMENT, payload=b"\x02",
                            salt=SALT_A)
    evidence = find_equivocations([second, honest, first, first, other_round])
    assert len(evidence) == 1
    e = evidence[0]
    assert {e.first, e.second} == {first, second} and e.first < e.second
    assert verify_evidence(e)
    assert EquivocationEvidence.decode(e.encode()) == e
    assert make_evidence(second, first) == e
    # same commitment twice, different rounds, or a forged second signature: no evidence
    assert make_evidence(first, first) is None
    assert make_evidence(first, other_round) is None
    forged = dataclasses.replace(second, signature=bytes(64))
    assert make_evidence(first, forged) is None
    assert find_equivocations([first, forged]) == []
    assert not verify_evidence(EquivocationEvidence(first=first, second=forged))
