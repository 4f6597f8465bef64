"""Inclusion and data challenges against a held settlement: flat rules, one check per line.

A settlement is held for an inclusion window before it pays out (docs/swarm.md §7a). In the
window anyone may prove, from one leaf of the round's data root (`swarm.data_root`) and its
Merkle proof, that the settlement

* left out an opening of a node's single commitment (the node would be a no-show, or, with
  the commitment left out too, an absent node): ``CLAIM_MISSING_OPENING``;
* left out a second, different commitment of a node (an equivocation it hid):
  ``CLAIM_MISSING_EQUIVOCATION``;
* carries an item that breaks a data rule (`leaf_fault`; only a data-root settlement can,
  a full settlement's leaves are built by the validators): ``CLAIM_BAD_ITEM``.

Each function returns None when the claim is proven, else the name of the first rule it
fails (the contract raises it), so the same rules run on chain, in the node's watcher and in
the vectors (tests/vectors/consensus/inclusion).

Who gains from a proven challenge is `challenge_award`: the chain cannot tell a settler that
left a node's data out from a node that withheld it and adds it in the window, so a node
proving its own data earns nothing, and another node's proof earns at most the late-reveal
penalty the node whose data it adds pays (docs/swarm.md §7a, "Who is paid").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from swarm.bradley_terry import Outcome
from swarm.commit_reveal import opening_matches
from swarm.data_root import leaf_hash, proof_root, round_leaves
from swarm.messages import (
    KIND_ANSWER,
    KIND_JUDGMENT,
    AnswerOpening,
    Commitment,
    JudgmentOpening,
    RoundLeaf,
)
from swarm.settlement import BPS

CLAIM_BAD_ITEM = 0
CLAIM_MISSING_OPENING = 1
CLAIM_MISSING_EQUIVOCATION = 2
CLAIM_UNAVAILABLE = 3  # data-availability: the settler's data must be posted on chain
CLAIM_WRONG_OUTCOME = 4  # not a challenge kind: the outcome recomputed from posted data differs
CLAIM_NAMES = {CLAIM_BAD_ITEM: "bad_item", CLAIM_MISSING_OPENING: "missing_opening",
               CLAIM_MISSING_EQUIVOCATION: "missing_equivocation",
               CLAIM_UNAVAILABLE: "unavailable"}
# claims that add a node's own signed data the settlement lacked: the node may have withheld it
WITHHELD_DATA_CLAIMS = frozenset({CLAIM_MISSING_OPENING, CLAIM_MISSING_EQUIVOCATION})
CHALLENGER_SHARE_BPS = 5_000  # of the settler's bond, for a fault only the settler can commit
# of the table stake of a node whose data reaches the chain only by another node's challenge
# (1 %: a fifth of the 5 % no-show slash a late opening escapes)
LATE_REVEAL_PENALTY_BPS = 100


def proof_fault(leaf: RoundLeaf, *, root: bytes, slot: int, slots: Sequence[tuple[bytes, int]],
                proof: Sequence[bytes]) -> str | None:
    """None iff ``leaf`` is slot ``slot`` of the data root ``root`` of a round whose slots
    (`swarm.data_root.round_slots`) are ``slots``."""
    # the slot is one of the round's
    if not 0 <= slot < len(slots):
        return "inclusion.slot"
    # the leaf is the slot's node in the slot's role
    if (leaf.node, leaf.kind) != slots[slot]:
        return "inclusion.slot_node"
    # the proof leads from the leaf to the settlement's data root
    if proof_root(leaf_hash(leaf), index=slot, count=len(slots), proof=proof) != root:
        return "inclusion.proof"
    return None


def leaf_fault(leaf: RoundLeaf, *, round_id: bytes) -> str | None:
    """The first data rule ``leaf`` breaks (None: a valid leaf). A settler's data root must
    hold only valid leaves; `CLAIM_BAD_ITEM` proves one that is not."""
    openings: tuple[AnswerOpening | JudgmentOpening, ...] = (
        leaf.answer_openings + leaf.judgment_openings)
    # every commitment is the slot node's, for this round and role
    if any((c.round_id, c.node, c.kind) != (round_id, leaf.node, leaf.kind)
           for c in leaf.commitments):
        return "data.commitment_foreign"
    # every commitment is validly signed
    if not all(c.verify_signature() for c in leaf.commitments):
        return "data.commitment_signature"
    # two commitments are an equivocation: their digests differ
    if len(leaf.commitments) == 2 and leaf.commitments[0].digest == leaf.commitments[1].digest:
        return "data.commitment_duplicate"
    # an answer slot holds no judgment opening
    if leaf.kind == KIND_ANSWER and leaf.judgment_openings:
        return "data.opening_kind"
    # a judgment slot holds no answer opening
    if leaf.kind == KIND_JUDGMENT and leaf.answer_openings:
        return "data.opening_kind"
    # a slot is an answer or a judgment slot
    if leaf.kind not in (KIND_ANSWER, KIND_JUDGMENT):
        return "data.slot_kind"
    # an opening opens the node's single commitment
    if openings and len(leaf.commitments) != 1:
        return "data.opening_without_commitment"
    # and opens it
    if openings and not opening_matches(leaf.commitments[0], openings[0]):
        return "data.opening_mismatch"
    return None


def bad_item_fault(leaf: RoundLeaf, *, round_id: bytes) -> str | None:
    """None iff ``leaf`` (proven under the root) breaks a data rule."""
    # the leaf must break a data rule
    if leaf_fault(leaf, round_id=round_id) is None:
        return "inclusion.leaf_valid"
    return None


def _commitment_fault(commitment: Commitment, leaf: RoundLeaf, round_id: bytes) -> str | None:
    # a supplied commitment is the leaf node's, for this round and role
    if (commitment.round_id, commitment.node, commitment.kind) != (
            round_id, leaf.node, leaf.kind):
        return "inclusion.commitment_foreign"
    # and validly signed
    if not commitment.verify_signature():
        return "inclusion.commitment_signature"
    return None


def missing_opening_fault(
    leaf: RoundLeaf, *, round_id: bytes, commitments: Sequence[Commitment],
    answer_openings: Sequence[AnswerOpening], judgment_openings: Sequence[JudgmentOpening],
) -> str | None:
    """None iff the challenge opens the single commitment of the leaf's node that the
    settlement left unopened: the leaf's own, or, for an empty leaf, one the challenge adds."""
    openings: tuple[AnswerOpening | JudgmentOpening, ...] = (
        tuple(answer_openings) + tuple(judgment_openings))
    # a leaf with an opening left nothing out
    if leaf.answer_openings or leaf.judgment_openings:
        return "inclusion.leaf_opened"
    # an equivocator is excluded whatever it opens
    if len(leaf.commitments) > 1:
        return "inclusion.equivocator"
    # a leaf with a commitment is opened as it is; an empty one needs the commitment
    if len(leaf.commitments) + len(commitments) != 1:
        return "inclusion.commitment_count"
    commitment = leaf.commitments[0] if leaf.commitments else commitments[0]
    fault = _commitment_fault(commitment, leaf, round_id)
    if fault is not None:
        return fault
    # the challenge carries one opening
    if len(openings) != 1:
        return "inclusion.opening_count"
    # which opens the commitment
    if not opening_matches(commitment, openings[0]):
        return "inclusion.opening_mismatch"
    # a judgment with an outcome byte above 2 is a no-show anyway: leaving it out changed
    # nothing
    if any(v > Outcome.TIE for j in judgment_openings for v in j.outcomes):
        return "inclusion.malformed_judgment"
    return None


def missing_equivocation_fault(leaf: RoundLeaf, *, round_id: bytes,
                               commitments: Sequence[Commitment]) -> str | None:
    """None iff the challenge adds a second, different commitment of a node whose leaf holds
    one: the settlement hid an equivocation."""
    # the leaf holds exactly one commitment
    if len(leaf.commitments) != 1:
        return "inclusion.commitment_count"
    # the challenge adds exactly one
    if len(commitments) != 1:
        return "inclusion.commitment_count"
    fault = _commitment_fault(commitments[0], leaf, round_id)
    if fault is not None:
        return fault
    # with another digest: the two are an equivocation
    if commitments[0].digest == leaf.commitments[0].digest:
        return "inclusion.same_digest"
    return None


@dataclasses.dataclass(frozen=True)
class Claim:
    """A challenge a node can prove against a settlement's leaves (`provable_claims`)."""

    claim: int
    slot: int
    commitments: tuple[Commitment, ...] = ()
    answer_openings: tuple[AnswerOpening, ...] = ()
    judgment_openings: tuple[JudgmentOpening, ...] = ()


def provable_claims(
    settler_leaves: Sequence[RoundLeaf], *, round_id: bytes, commitments: Iterable[Commitment],
    answer_openings: Iterable[AnswerOpening], judgment_openings: Iterable[JudgmentOpening],
) -> list[Claim]:
    """Every claim the holder of ``commitments`` and openings (its own view of the round) can
    prove against a settlement whose leaves are ``settler_leaves``, slot order: bad items,
    then per slot an opening or a second commitment the settlement left out. Not a consensus
    rule (the node's watcher and the benches use it); each claim passes the rules above."""
    answerers = [leaf.node for leaf in settler_leaves if leaf.kind == KIND_ANSWER]
    judges = [leaf.node for leaf in settler_leaves if leaf.kind == KIND_JUDGMENT]
    mine = round_leaves(round_id=round_id, answerers=answerers, judges=judges,
                        commitments=commitments, answer_openings=answer_openings,
                        judgment_openings=judgment_openings)
    claims: list[Claim] = []
    for slot, (theirs, own) in enumerate(zip(settler_leaves, mine, strict=True)):
        if leaf_fault(theirs, round_id=round_id) is not None:
            claims.append(Claim(CLAIM_BAD_ITEM, slot))
            continue
        others = [c for c in own.commitments if c not in theirs.commitments]
        if len(theirs.commitments) == 1 and others:
            claims.append(Claim(CLAIM_MISSING_EQUIVOCATION, slot, commitments=(others[0],)))
            continue
        added = own.commitments if not theirs.commitments else ()
        candidate = Claim(CLAIM_MISSING_OPENING, slot, commitments=added,
                          answer_openings=own.answer_openings,
                          judgment_openings=own.judgment_openings)
        if len(own.commitments) == 1 and (own.answer_openings or own.judgment_openings) and \
                missing_opening_fault(theirs, round_id=round_id, commitments=added,
                                      answer_openings=own.answer_openings,
                                      judgment_openings=own.judgment_openings) is None:
            claims.append(candidate)
    return claims


@dataclasses.dataclass(frozen=True)
class ChallengeAward:
    """Where a voided settlement's bond goes, and what the node whose data was added pays."""

    challenger: int  # of the bond, to the challenger
    settler: int  # of the bond, back to the settler
    burned: int  # of the bond
    late_penalty: int  # from the added node's stake (burned)


def challenge_award(*, claim: int, bond: int, self_proof: bool, node_stake: int
                    ) -> ChallengeAward:
    """Who gains from a challenge that voided a settlement with bond ``bond``.

    ``claim``: what voided it (`CLAIM_*`; `CLAIM_WRONG_OUTCOME` for posted data that gives
    another outcome); ``self_proof``: the challenger is the node whose data the challenge
    adds; ``node_stake``: that node's table stake."""
    # a node adding its own data may have withheld it: it earns nothing, the settler (who
    # may never have seen it) keeps its bond, and the node pays nothing (it may as well have
    # been left out by the settler)
    if claim in WITHHELD_DATA_CLAIMS and self_proof:
        return ChallengeAward(challenger=0, settler=bond, burned=0, late_penalty=0)
    # another node adds it: the data's node pays a late-reveal penalty and the challenger
    # earns at most that penalty, so the two together never gain; the settler keeps the rest
    if claim in WITHHELD_DATA_CLAIMS:
        penalty = node_stake * LATE_REVEAL_PENALTY_BPS // BPS
        share = min(bond * CHALLENGER_SHARE_BPS // BPS, penalty)
        return ChallengeAward(challenger=share, settler=bond - share, burned=0,
                              late_penalty=penalty)
    # a bad item, unposted data or a wrong outcome is the settler's alone: the challenger
    # earns its share of the bond and the rest is burned
    share = bond * CHALLENGER_SHARE_BPS // BPS
    return ChallengeAward(challenger=share, settler=0, burned=bond - share, late_penalty=0)
