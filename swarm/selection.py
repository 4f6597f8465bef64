"""Deterministic selection of a round's answerers and judges from chain state.

Every node must agree on who was asked without talking to each other, so selection is a pure
function of the eligible nodes (as chain state records them) and the round id. Rules:

* capability-gated: a node whose ``capable`` flag is False (it has not passed calibration)
  has weight 0 and is never selected, whatever its stake or reputation;
* weight = (reputation + `REPUTATION_BASE`) · ⌊√stake⌋: reputation earns work, stake makes
  Sybils expensive, and the square root damps a whale (splitting stake over k identities
  gains at most √k, and each identity must pass calibration);
* draws are without replacement: draw t picks ``r = H(domain ‖ round ‖ t) mod W`` (256-bit
  keyed hash, so the modulo bias is below W / 2^256) and walks the remaining nodes in node
  id order, cumulative weight > r wins; its weight then leaves W.

No Python ``hash()`` (salted per process) and no ``random``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from core.encoding import tagged_hash

SELECT_TAG = b"pouw/swselect"
REPUTATION_BASE = 1  # a capable newcomer with reputation 0 can still be selected
ROLE_ANSWER = b"answer"
ROLE_JUDGE = b"judge"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Candidate:
    """A registered swarm node as chain state sees it at the round's height."""

    node: bytes
    stake: int
    reputation: int
    capable: bool


def selection_weight(candidate: Candidate) -> int:
    """Integer selection weight (0 = never selected)."""
    if not candidate.capable or candidate.stake <= 0 or candidate.reputation < 0:
        return 0
    return (candidate.reputation + REPUTATION_BASE) * math.isqrt(candidate.stake)


def select_nodes(
    candidates: Iterable[Candidate],
    *,
    round_id: bytes,
    role: bytes,
    count: int,
    exclude: frozenset[bytes] = frozenset(),
) -> tuple[bytes, ...]:
    """Up to ``count`` distinct nodes, in draw order, weighted without replacement.

    ``role`` separates the answerer and judge draws; ``exclude`` removes nodes already
    chosen for something else (e.g. judges distinct from answerers, if the caller wants it).
    Fewer than ``count`` come back only if fewer candidates have positive weight.
    """
    if len(round_id) != 32:
        raise ValueError("round id must be 32 bytes")
    pool: dict[bytes, int] = {}
    for c in candidates:
        if c.node in pool:
            raise ValueError(f"duplicate candidate {c.node.hex()}")
        w = selection_weight(c)
        if w > 0 and c.node not in exclude:
            pool[c.node] = w
    order = sorted(pool)
    total = sum(pool.values())
    chosen: list[bytes] = []
    draw = 0
    while len(chosen) < count and total > 0:
        seed = tagged_hash(SELECT_TAG, role + b"\x00" + round_id + draw.to_bytes(4, "big"))
        r = int.from_bytes(seed, "big") % total
        acc = 0
        for node in order:
            acc += pool[node]
            if acc > r:
                chosen.append(node)
                total -= pool[node]
                order.remove(node)
                break
        draw += 1
    return tuple(chosen)
