"""A round's data root: one Merkle leaf per selected node and role, and proofs against it.

A settlement commits to the signed messages of its round by this root (docs/swarm.md §7a).
The slots are fixed by the selection, which every validator recomputes: the answerers in
node-id order (kind answer), then the judges in node-id order (kind judgment). Slot i holds
`RoundLeaf(node, kind, commitments, opening)`: the node's counting commitments of that kind
(none, one, or the two smallest of an equivocation) and, when it has exactly one, the
settler's opening of it (none if the settler holds none). Because the slots are fixed, a
single leaf and its proof show what the settlement said about one node: that is what makes
an omission or a bad item provable in a few hundred bytes, however large the round.

Tree: leaves hashed as ``H_"pouw/swleafh"(leaf encoding)``, nodes as
``H_"pouw/swdnode"(left ‖ right)``; an odd node at the end of a level is promoted, not
duplicated, and the root binds the leaf count: ``H_"pouw/swdroot"(u64 count ‖ top)`` (the
same shape as `consensus.block.merkle_root`, which layer 1 cannot import, plus proofs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from core.encoding import tagged_hash
from swarm.commit_reveal import opening_matches
from swarm.messages import (
    KIND_ANSWER,
    KIND_JUDGMENT,
    AnswerOpening,
    Commitment,
    JudgmentOpening,
    RoundLeaf,
)
from swarm.settlement import answer_view

LEAF_HASH_TAG = b"pouw/swleafh"
NODE_TAG = b"pouw/swdnode"
ROOT_TAG = b"pouw/swdroot"
EMPTY_TAG = b"pouw/swdempty"
MAX_PROOF = 16  # levels: up to 65 536 slots


def round_slots(answerers: Iterable[bytes], judges: Iterable[bytes]
                ) -> tuple[tuple[bytes, int], ...]:
    """(node, kind) per slot: answerers in node-id order, then judges in node-id order."""
    return (tuple((node, KIND_ANSWER) for node in sorted(set(answerers)))
            + tuple((node, KIND_JUDGMENT) for node in sorted(set(judges))))


def leaf_hash(leaf: RoundLeaf) -> bytes:
    return tagged_hash(LEAF_HASH_TAG, leaf.encode())


def _node(left: bytes, right: bytes) -> bytes:
    return tagged_hash(NODE_TAG, left + right)


def _top(count: int, top: bytes) -> bytes:
    return tagged_hash(ROOT_TAG, count.to_bytes(8, "big") + top)


def data_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle root of ``leaf_hashes`` (slot order), binding their count."""
    if not leaf_hashes:
        return tagged_hash(EMPTY_TAG, b"")
    level = list(leaf_hashes)
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return _top(len(leaf_hashes), level[0])


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> tuple[bytes, ...]:
    """The sibling hashes from leaf ``index`` up to the top (promoted levels add none)."""
    if not 0 <= index < len(leaf_hashes):
        raise ValueError(f"slot {index} outside {len(leaf_hashes)} leaves")
    proof: list[bytes] = []
    level = list(leaf_hashes)
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        level = [_node(level[k], level[k + 1]) for k in range(0, len(level) - 1, 2)] + (
            [level[-1]] if len(level) % 2 else [])
        i //= 2
    return tuple(proof)


def proof_root(leaf: bytes, *, index: int, count: int, proof: Sequence[bytes]) -> bytes | None:
    """The root ``proof`` leads to from leaf hash ``leaf`` at ``index`` of ``count``, or None
    if the proof has the wrong length for that position (it must be used up exactly)."""
    if not 0 <= index < count:
        return None
    h, i, width, used = leaf, index, count, 0
    while width > 1:
        if i ^ 1 < width:
            if used == len(proof):
                return None
            sibling = proof[used]
            used += 1
            h = _node(h, sibling) if i % 2 == 0 else _node(sibling, h)
        i //= 2
        width = (width + 1) // 2
    return _top(count, h) if used == len(proof) else None


def round_leaves(
    *, round_id: bytes, answerers: Iterable[bytes], judges: Iterable[bytes],
    commitments: Iterable[Commitment], answer_openings: Iterable[AnswerOpening],
    judgment_openings: Iterable[JudgmentOpening],
) -> tuple[RoundLeaf, ...]:
    """The leaves of a round's data, slot by slot: exactly the data `settle` counts (the
    counting commitments of `answer_view`, the first opening that opens a single one), so
    `settle` over `leaf_items` of them gives the same outcome as over the raw data."""
    answerers, judges = tuple(answerers), tuple(judges)
    answer_list, judgment_list = tuple(answer_openings), tuple(judgment_openings)
    view = answer_view(round_id=round_id, answerers=answerers, judges=judges,
                       commitments=commitments, answer_openings=())
    pairs = {(e.first.node, e.first.kind): (e.first, e.second) for e in view.evidence}
    leaves: list[RoundLeaf] = []
    for node, kind in round_slots(answerers, judges):
        single = view.single.get((node, kind))
        if (node, kind) in pairs:
            leaves.append(RoundLeaf(node=node, kind=kind, commitments=pairs[node, kind]))
        elif single is None:
            leaves.append(RoundLeaf(node=node, kind=kind))
        elif kind == KIND_ANSWER:
            opened = [o for o in answer_list if o.node == node and opening_matches(single, o)]
            leaves.append(RoundLeaf(node=node, kind=kind, commitments=(single,),
                                    answer_openings=tuple(opened[:1])))
        else:
            judged = [j for j in judgment_list if j.node == node and opening_matches(single, j)]
            leaves.append(RoundLeaf(node=node, kind=kind, commitments=(single,),
                                    judgment_openings=tuple(judged[:1])))
    return tuple(leaves)


def leaf_items(leaves: Iterable[RoundLeaf]
               ) -> tuple[tuple[Commitment, ...], tuple[AnswerOpening, ...],
                          tuple[JudgmentOpening, ...]]:
    """(commitments, answer openings, judgment openings) of ``leaves``, each sorted: the
    input `settle` takes."""
    leaf_list = tuple(leaves)
    return (tuple(sorted({c for leaf in leaf_list for c in leaf.commitments})),
            tuple(sorted({o for leaf in leaf_list for o in leaf.answer_openings})),
            tuple(sorted({j for leaf in leaf_list for j in leaf.judgment_openings})))


def leaves_root(leaves: Sequence[RoundLeaf]) -> bytes:
    return data_root([leaf_hash(leaf) for leaf in leaves])
