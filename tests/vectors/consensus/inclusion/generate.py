#!/usr/bin/env python3
"""Generate the inclusion-rule vectors in this directory (JSON, hex-encoded objects).

Run ``.venv/bin/python tests/vectors/consensus/inclusion/generate.py`` after a deliberate
change of `swarm.inclusion` or `swarm.data_root`; ``tests/swarm/test_inclusion_vectors.py``
replays every file and checks that this script still produces exactly the committed files.

Each vector names a rule function of `swarm.inclusion` (``proof``, ``bad_item``,
``missing_opening``, ``missing_equivocation``), its inputs (canonical encodings in hex) and
``expect``: ``"valid"`` (the claim is proven) or the name of the rule it fails; a
``challenge_award`` vector has integer inputs and expects the four amounts of the award.
Other implementations can replay them: decode, evaluate, compare.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from swarm.data_root import inclusion_proof, leaf_hash, leaves_root, round_leaves  # noqa: E402
from swarm.inclusion import (  # noqa: E402
    CLAIM_BAD_ITEM,
    CLAIM_MISSING_EQUIVOCATION,
    CLAIM_MISSING_OPENING,
    CLAIM_UNAVAILABLE,
    CLAIM_WRONG_OUTCOME,
    challenge_award,
)
from swarm.messages import KIND_ANSWER, KIND_JUDGMENT, RoundLeaf  # noqa: E402
from tests.framework.roundkit import build_round, honest, make_request, seed  # noqa: E402

Vector = dict[str, Any]


def _round() -> tuple[Any, tuple[RoundLeaf, ...], Any]:
    """Three answerers and two judges, every opening held; plus a second answer commitment
    of answerer 0 (an equivocation) and a malformed judgment of judge 0."""
    request = make_request(seed("vec-client"), fee=1000, answers=3, judges=2)
    answers = [(seed(f"vec-a{i}"), f"answer q={i}".encode()) for i in range(3)]
    judges = [(seed(f"vec-j{i}"), honest) for i in range(2)]
    r = build_round(request=request, answers=answers, judges=judges)
    leaves = round_leaves(round_id=request.round_id(), answerers=r.answerers, judges=r.judges,
                          commitments=r.commitments, answer_openings=r.answer_openings,
                          judgment_openings=r.judgment_openings)
    return r, leaves, request


def _hex(items: Any) -> list[str]:
    return [item.encode().hex() for item in items]


def inclusion_vectors() -> dict[str, Vector]:
    _, leaves, request = _round()
    rid = request.round_id()
    slots = [(leaf.node, leaf.kind) for leaf in leaves]
    hashes = [leaf_hash(leaf) for leaf in leaves]
    root = leaves_root(leaves)
    out: dict[str, Vector] = {}

    def vector(name: str, function: str, expect: str, leaf: RoundLeaf, *, slot: int = 0,
               proof: Any = None, desc: str = "", commitments: Any = (),
               answer_openings: Any = (), judgment_openings: Any = ()) -> None:
        out[name] = {
            "name": name, "kind": "inclusion", "function": function, "description": desc,
            "round_id": rid.hex(), "root": root.hex(),
            "slots": [[node.hex(), kind] for node, kind in slots], "slot": slot,
            "proof": [h.hex() for h in (proof if proof is not None
                                        else inclusion_proof(hashes, slot))],
            "leaf": leaf.encode().hex(), "commitments": _hex(commitments),
            "answer_openings": _hex(answer_openings),
            "judgment_openings": _hex(judgment_openings), "expect": expect}

    a0, j0 = 0, 3
    assert leaves[a0].kind == KIND_ANSWER and leaves[j0].kind == KIND_JUDGMENT
    for slot in range(len(leaves)):
        vector(f"proof_slot{slot}", "proof", "valid", leaves[slot], slot=slot,
               desc=f"slot {slot} of 5 (odd count: the last leaf is promoted)")
    vector("proof_wrong_slot", "proof", "inclusion.slot_node", leaves[1], slot=0)
    vector("proof_outside", "proof", "inclusion.slot", leaves[0], slot=5, proof=())
    vector("proof_short", "proof", "inclusion.proof", leaves[0],
           proof=inclusion_proof(hashes, 0)[:-1])
    vector("proof_tampered_leaf", "proof", "inclusion.proof",
           dataclasses.replace(leaves[0], answer_openings=()))
    # the settler left answerer 0's opening out
    unopened = dataclasses.replace(leaves[a0], answer_openings=())
    opening = leaves[a0].answer_openings
    vector("missing_answer_opening", "missing_opening", "valid", unopened,
           answer_openings=opening, desc="the leaf's single commitment, opened")
    vector("missing_opening_leaf_opened", "missing_opening", "inclusion.leaf_opened",
           leaves[a0], answer_openings=opening)
    vector("missing_opening_none_given", "missing_opening", "inclusion.opening_count", unopened)
    vector("missing_opening_other_node", "missing_opening", "inclusion.opening_mismatch",
           unopened, answer_openings=leaves[1].answer_openings)
    # the settler left judge 0's commitment and opening out: an empty leaf
    empty = RoundLeaf(node=leaves[j0].node, kind=KIND_JUDGMENT)
    vector("missing_commitment_and_opening", "missing_opening", "valid", empty,
           commitments=leaves[j0].commitments, judgment_openings=leaves[j0].judgment_openings,
           desc="an empty leaf: the challenge adds the commitment and its opening")
    vector("missing_opening_empty_leaf_no_commitment", "missing_opening",
           "inclusion.commitment_count", empty, judgment_openings=leaves[j0].judgment_openings)
    vector("missing_opening_foreign_commitment", "missing_opening",
           "inclusion.commitment_foreign", empty, commitments=leaves[j0 + 1].commitments,
           judgment_openings=leaves[j0 + 1].judgment_openings)
    forged = dataclasses.replace(leaves[j0].commitments[0], signature=bytes(64))
    vector("missing_opening_forged_commitment", "missing_opening",
           "inclusion.commitment_signature", empty, commitments=(forged,),
           judgment_openings=leaves[j0].judgment_openings)
    # a hidden equivocation: answerer 0 also committed to another answer
    other = build_round(request=request, answers=[(seed("vec-a0"), b"answer q=9")],
                        judges=[]).commitments[0]
    vector("missing_equivocation", "missing_equivocation", "valid", leaves[a0],
           commitments=(other,))
    vector("missing_equivocation_same", "missing_equivocation", "inclusion.same_digest",
           leaves[a0], commitments=leaves[a0].commitments)
    pair = tuple(sorted((leaves[a0].commitments[0], other)))
    vector("missing_opening_equivocator", "missing_opening", "inclusion.equivocator",
           dataclasses.replace(unopened, commitments=pair), answer_openings=opening)
    # bad items under the root
    swapped = dataclasses.replace(leaves[j0], judgment_openings=leaves[j0 + 1].judgment_openings)
    vector("bad_item_opening_mismatch", "bad_item", "valid", swapped,
           desc="leaf rule data.opening_mismatch")
    vector("bad_item_forged_commitment", "bad_item", "valid",
           dataclasses.replace(unopened, commitments=(
               dataclasses.replace(leaves[a0].commitments[0], signature=bytes(64)),)),
           desc="leaf rule data.commitment_signature")
    vector("bad_item_opening_without_commitment", "bad_item", "valid",
           dataclasses.replace(leaves[a0], commitments=()),
           desc="leaf rule data.opening_without_commitment")
    vector("bad_item_valid_leaf", "bad_item", "inclusion.leaf_valid", leaves[j0])
    out.update(award_vectors())
    return out


def award_vectors() -> dict[str, Vector]:
    """`challenge_award` cases: inputs are integers, ``expect`` the four amounts."""
    out: dict[str, Vector] = {}
    stake = 10_000_000
    no_show_bond = 1_000_000 + stake * 500 // 10_000  # fee + the no-show slash

    def award(name: str, claim: int, bond: int, self_proof: bool, node_stake: int,
              desc: str) -> None:
        result = challenge_award(claim=claim, bond=bond, self_proof=self_proof,
                                 node_stake=node_stake)
        out[name] = {"name": name, "kind": "inclusion", "function": "challenge_award",
                     "description": desc, "claim": claim, "bond": bond,
                     "self_proof": self_proof, "node_stake": node_stake,
                     "expect": dataclasses.asdict(result)}

    award("award_own_opening", CLAIM_MISSING_OPENING, no_show_bond, True, stake,
          "a node adding its own opening: nothing to it, the bond back to the settler")
    award("award_own_equivocation", CLAIM_MISSING_EQUIVOCATION, no_show_bond, True, stake,
          "a node proving its own hidden equivocation: nothing to it, the bond back")
    award("award_other_opening", CLAIM_MISSING_OPENING, no_show_bond, False, stake,
          "another node's opening: the late-reveal penalty (1 % of stake) bounds the share")
    award("award_other_opening_small_bond", CLAIM_MISSING_OPENING, 1_000, False, stake,
          "the share is at most half the bond")
    award("award_other_opening_unstaked", CLAIM_MISSING_OPENING, no_show_bond, False, 0,
          "a node with no table stake: no penalty, no share")
    award("award_other_equivocation", CLAIM_MISSING_EQUIVOCATION, no_show_bond, False, stake,
          "another node's hidden equivocation: bounded like an opening")
    award("award_bad_item", CLAIM_BAD_ITEM, no_show_bond, False, stake,
          "a bad item is the settler's alone: half to the challenger, half burned")
    award("award_bad_item_own_leaf", CLAIM_BAD_ITEM, no_show_bond, True, stake,
          "proving a bad item in one's own slot is still the settler's fault")
    award("award_unavailable", CLAIM_UNAVAILABLE, 1_000_001, False, 0,
          "unposted data: half (rounded down) to the availability challenger")
    award("award_wrong_outcome", CLAIM_WRONG_OUTCOME, no_show_bond, False, 0,
          "posted data giving another outcome")
    return out


def render_inclusion_vector(vector: Vector) -> str:
    return json.dumps(vector, indent=1, sort_keys=True) + "\n"


def main() -> None:
    vectors = inclusion_vectors()
    for old in HERE.glob("*.json"):
        if old.stem not in vectors:
            old.unlink()
    for name, vector in vectors.items():
        (HERE / f"{name}.json").write_text(render_inclusion_vector(vector))
    print(f"wrote {len(vectors)} vectors to {HERE}")


if __name__ == "__main__":
    main()
