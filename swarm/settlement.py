"""Round settlement: a pure function from signed round data to payouts, reputation, slashes.

Every validator runs `settle` on the data a settlement transaction carries and rejects the
transaction unless the result is byte-identical to the one it claims, so this module is
integers only: no floats, no clock, no randomness, no I/O. The rules (also in docs/swarm.md):

Malformed input (a non-int or negative weight, reputation or stake, a bad index, a judgment
of the wrong length) raises `SettlementInputError`, one ``ValueError`` class with a reason.

Participation. A commitment counts if it is for this round, validly signed, and its author
was selected for that role. A node with two different counting commitments of one kind is an
*equivocator*: slashed, excluded, reputation penalty. A node with one commitment but no valid
opening is a *no-show*: slashed, reputation penalty. A judgment opening counts only if its
answer-set digest is that of the revealed answers and it has one outcome byte per scheduled
pair; one for another answer set (the judge saw other reveals) is ignored without penalty,
one with an outcome byte above 2 is a no-show. Selected nodes that never committed are not
slashed (they may be offline); they just earn nothing and their reputation decays.

Ranking (`aggregate`, one pass, no reweighting within the round). Revealed answers, in
node-id order, are indexed 0..n-1; judges' outcomes follow `swarm.schedule.judging_pairs`,
then one GOOD/BAD/no-opinion screen mark per answer. Judge weight = reputation +
``judge_weight_base``. A judge's comparisons and screen involving its own answer are dropped;
a judge that also answered is conflicted on every other answer too, so on an item where the
judges without a conflict hold ⅔ of the weight its weight counts for the others' verdict
whatever it voted if that verdict is decisive, and its vote only where it confirms it
otherwise (`_tally`). Each ordered pair gets one weighted
verdict (`majority_verdict`: the side with a strict majority of the weight wins, else a
tie); each answer's screen is a comparison with a virtual threshold answer (good = it wins,
bad = it loses, no opinion = tie) through `pair_verdict` (decisive at ≥ ⅔ of the weight,
leaning at a strict majority, else a tie); one Bradley-Terry fit of both from θ = 0 gives
the strengths, relative to the threshold (`strength_fit`; an unconverged fit ranks
nothing). Each answer gets a screen tier (`screen_tiers`): rejected when ≥ ⅔ of the weight
with an opinion on it calls it bad; accepted when not rejected and its good share is ≥ ½ of
the round's largest good share; else undecided. Order: tier, then strength, then the
round's seed (`tie_order`) for exact ties.

Money (fee F, slashed stake S, bps = 1/10000):
* answer pool = ⌊F·answer_share_bps/10⁴⌋ + S, judge pool = F − ⌊F·answer_share_bps/10⁴⌋;
* the g accepted answers (if none is accepted: the top ⌈n/2⌉ ranks that are not rejected)
  are *good* (`good_count`); rank r < g weighs (g − r)^1.5 (``isqrt((g − r)³·2³²)``);
  copies of one answer, and answers tied in the consensus, share the mean weight of their
  ranks; each gets ⌊pool·weight/Σweight⌋; the rounding dust goes to the heaviest (ties by
  a keyed hash of the round's seed); if every answer is rejected the answer pool is
  refunded;
* a judge with c counted comparisons and screen marks scores ``agree2`` = Σ 2 per verdict
  equal to the consensus order, 1 per half-agreement (tie vs order), 0 per opposite verdict,
  per good/bad screen mark 2 if it is the screen's direction (good or bad by the larger
  weight), 1 if they tie, 0 if opposite; its merit is
  max(0, agree2 − c) (better than chance); judges get ⌊pool·merit/Σmerit⌋, dust to the best;
* if no answer was revealed the whole fee is refunded (slashed stake is burned); if no judge
  has merit the judge pool is refunded.

Reputation (`reputation_step` = s): rank r of n moves an answerer by ⌊s·(n−1−2r)/(n−1)⌋
(tied answers by their mean);
a judge by ⌊s·(agree2 − c)/c⌋; no-shows and equivocators lose ``reputation_penalty``; the
result is clamped to [0, 2⁶⁴−1]. `decayed_reputation` gives the decay toward a floor
without participation, which the contract applies before a round uses a reputation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from core.encoding import MAX_U64, tagged_hash
from swarm.bradley_terry import (
    FRACTION_BITS,
    BradleyTerryFit,
    Comparison,
    Outcome,
    SettlementInputError,
    bradley_terry_scores,
    require_int,
)
from swarm.commit_reveal import answer_set_digest, make_evidence, opening_matches
from swarm.messages import (
    KIND_ANSWER,
    KIND_JUDGMENT,
    SLASH_EQUIVOCATION,
    SLASH_NO_SHOW,
    SLASH_REASONS,
    AnswerOpening,
    Commitment,
    EquivocationEvidence,
    JudgmentOpening,
    Payout,
    ReputationUpdate,
    RoundOutcome,
    Slash,
    SwarmRequest,
)
from swarm.schedule import judging_pairs

BPS = 10_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class SettlementParams:
    """Every number the settlement rules depend on (integers; fixed per network)."""

    answer_share_bps: int = 7_000  # the rest of the fee goes to judges
    no_show_slash_bps: int = 500  # of bonded stake
    equivocation_slash_bps: int = 2_000
    reputation_step: int = 100
    reputation_penalty: int = 400
    judge_weight_base: int = 1  # so judges of reputation 0 still count a little

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{f.name} must be a non-negative int")
        if max(self.answer_share_bps, self.no_show_slash_bps,
               self.equivocation_slash_bps) > BPS:
            raise ValueError("basis points are at most 10000")


DEFAULT_PARAMS = SettlementParams()


@dataclasses.dataclass(frozen=True)
class JudgeReport:
    """How one judge's verdicts compared with the consensus ranking."""

    node: bytes
    counted: int  # comparisons that entered the fit (own answer excluded)
    agree2: int  # in half-agreements, 0..2·counted


@dataclasses.dataclass(frozen=True)
class RoundSettlement:
    """`RoundOutcome` (what goes on chain) plus the details the node's round API shows."""

    outcome: RoundOutcome
    answer_nodes: tuple[bytes, ...]  # revealed answerers in index order (node id order)
    fit: BradleyTerryFit
    accepted: tuple[bool, ...]  # aligned with answer_nodes: passed the judges' screen
    # new score − the score the round started from: what the chain adds to the node's
    # current score (two rounds of one epoch both start from the epoch's table)
    reputation_changes: Mapping[bytes, int]
    judges: tuple[JudgeReport, ...]
    no_shows: tuple[bytes, ...]
    equivocations: tuple[EquivocationEvidence, ...]

    def summary(self) -> dict[str, object]:
        """JSON-ready view for the round API: hex ids, integers (θ and scores in millionths)."""
        out = self.outcome
        position = {node: i for i, node in enumerate(self.answer_nodes)}
        pay = {p.node: p.amount for p in out.payouts}
        rep = {u.node: u.score for u in out.reputations}
        change = self.reputation_changes
        return {
            "round_id": out.round_id.hex(),
            "answers": [{
                "rank": rank, "node": node.hex(),
                "strength_micro": self.fit.theta[position[node]] * 10**6 >> FRACTION_BITS,
                "score_micro": score * 10**6 >> FRACTION_BITS,
                "accepted": self.accepted[position[node]],
                "payout": pay.get(node, 0), "reputation": rep.get(node),
                "reputation_change": change.get(node),
            } for rank, (node, score) in enumerate(zip(out.ranking, out.scores, strict=True))],
            "judges": [{
                "node": j.node.hex(), "counted": j.counted, "agree2": j.agree2,
                "payout": pay.get(j.node, 0), "reputation": rep.get(j.node),
                "reputation_change": change.get(j.node),
            } for j in self.judges],
            "refund": out.refund,
            "slashes": [{"node": x.node.hex(), "amount": x.amount,
                         "reason": SLASH_REASONS[x.reason]} for x in out.slashes],
            "no_shows": [node.hex() for node in self.no_shows],
            "equivocators": [e.first.node.hex() for e in self.equivocations],
            "fit": {"newton_steps": self.fit.iterations, "converged": self.fit.converged},
            "outcome_id": out.id().hex(),
        }


def decayed_reputation(score: int, *, blocks_elapsed: int, floor: int, half_life: int) -> int:
    """Reputation after ``blocks_elapsed`` blocks without participation.

    The excess over ``floor`` halves every ``half_life`` blocks, linearly interpolated in
    between (excess · (1 − rest / (2·half_life))), so decay is monotone and exact at every
    whole half-life. Scores at or below the floor do not move; half_life 0 disables decay.
    """
    if blocks_elapsed < 0:
        raise ValueError("blocks_elapsed must be non-negative")
    if score <= floor or half_life <= 0:
        return score
    halvings, rest = divmod(blocks_elapsed, half_life)
    if halvings >= 64:
        return floor
    excess = (score - floor) >> halvings
    excess -= excess * rest // (2 * half_life)
    return floor + excess


def position_weight(k: int) -> int:
    """k^1.5 in fixed point (2^16 = 1.0), floor: the pay weight of a good answer."""
    return math.isqrt(k * k * k << 32)


def _consensus_outcome(key_first: tuple[int, int], key_second: tuple[int, int]) -> Outcome:
    """The verdict the consensus ranking gives an ordered pair."""
    if key_first > key_second:
        return Outcome.FIRST_WINS
    return Outcome.SECOND_WINS if key_first < key_second else Outcome.TIE


# _AGREEMENT[verdict][consensus]: 2 if equal, 1 if exactly one of them is a tie, 0 if opposite
_AGREEMENT = tuple(tuple(2 if v == c else 1 if Outcome.TIE in (v, c) else 0
                         for c in Outcome) for v in Outcome)


def _split(pool: int, weights: Mapping[bytes, int], seed: bytes) -> dict[bytes, int]:
    """⌊pool·w/Σw⌋ each; the dust goes to the heaviest (ties by a keyed hash of the round's
    seed and the node id, never by the node id alone)."""
    total = sum(weights.values())
    shares = {node: pool * w // total for node, w in weights.items()}
    best = min(weights, key=lambda node: (-weights[node], tagged_hash(TIE_TAG, seed + node)))
    shares[best] += pool - sum(shares.values())
    return shares


def _tally_total(tally: Sequence[int]) -> int:
    """Σ of a pair's verdict weights [first, second, tie], each a non-negative int."""
    if len(tally) != 3:
        raise SettlementInputError("a pair's tally holds 3 weights (first, second, tie)")
    return sum(require_int(w, "verdict weight") for w in tally)


def pair_verdict(tally: Sequence[int]) -> tuple[Outcome, bool]:
    """(verdict, decisive) of one ordered pair from its verdict weights [first, second, tie].

    A side with ≥ ⅔ of the weight wins decisively; a side with a strict majority but less
    than ⅔ *leans* (counted as half a win and half a tie, y = ¾); anything else is a tie.
    A coalition below ⅓ cannot move a pair the others agree on out of "decisive", and one
    below ½ cannot flip its direction, while honest margins still shape the fit.
    """
    total = _tally_total(tally)
    for side in (Outcome.FIRST_WINS, Outcome.SECOND_WINS):
        if 3 * tally[side] >= 2 * total:
            return side, True
        if 2 * tally[side] > total:
            return side, False
    return Outcome.TIE, True


def majority_verdict(tally: Sequence[int]) -> tuple[Outcome, bool]:
    """(verdict, decisive) of a pair of two answers: the side with a strict majority of the
    weight wins, decisively; anything else is a tie (`pair_verdict` without its leaning
    level).

    Why not ⅔ here: with a ⅔ level a coalition under ⅓ holds a veto on *decisive*. Against
    a wrong target that is harmless (the honest screen rejects it), but between two right
    answers it decides the order: a 30% coalition voting for the second best made every
    verdict about the best merely leaning while its own stayed decisive, and the second
    best ranked first in 48.8% of 600 held-out rounds (control 9.2%; docs/swarm.md §5.2a,
    "runner-up"). A strict majority flips only where honest errors exceed (½ − c)/(1 − c)
    of the honest weight, the floor any rule has.
    """
    verdict, _ = pair_verdict(tally)
    return verdict, True


def verdict_comparisons(
    pairs: Sequence[tuple[int, int]], tallies: Sequence[Sequence[int]], *,
    verdict: Callable[[Sequence[int]], tuple[Outcome, bool]] = pair_verdict, first_key: int = 0,
) -> tuple[list[Comparison], dict[bytes, int]]:
    """The fit's input: per judged ordered pair its ``verdict`` (`pair_verdict` or
    `majority_verdict`), weighted by the total weight W of the judges who judged it (so the
    weight does not depend on how they voted). A decisive verdict is one comparison of
    weight W; a leaning one is a win of weight ⌊W/2⌋ plus a tie of weight W − ⌊W/2⌋. Keys
    ``pair‖k`` / ``lean‖k`` (k from ``first_key``) stand in for judges.
    ``tallies[k]`` holds pair k's verdict weights [first, second, tie]."""
    out: list[Comparison] = []
    pair_weights: dict[bytes, int] = {}
    if len(tallies) != len(pairs):
        raise SettlementInputError("one tally per pair")
    for k, ((a, b), tally) in enumerate(zip(pairs, tallies, strict=True), start=first_key):
        total = _tally_total(tally)
        if total == 0:
            continue
        outcome, decisive = verdict(tally)
        key = b"pair" + k.to_bytes(4, "big")
        out.append(Comparison(key, a, b, outcome))
        if decisive:
            pair_weights[key] = total
        else:
            lean = b"lean" + k.to_bytes(4, "big")
            out.append(Comparison(lean, a, b, Outcome.TIE))
            pair_weights[key] = total // 2
            pair_weights[lean] = total - total // 2
    return out, pair_weights


def consensus_comparisons(
    pairs: Sequence[tuple[int, int]], comparisons: Sequence[Comparison],
    weights: Mapping[bytes, int],
) -> tuple[list[Comparison], dict[bytes, int]]:
    """`verdict_comparisons` from individual judges' comparisons of scheduled pairs."""
    index = {pair: k for k, pair in enumerate(pairs)}
    tallies = [[0, 0, 0] for _ in pairs]
    for c in comparisons:
        k = index.get((c.first, c.second))
        if k is None:
            raise SettlementInputError(f"({c.first}, {c.second}) is not a scheduled pair")
        if c.judge not in weights:
            raise SettlementInputError(f"judge {c.judge!r} has no weight")
        if type(c.outcome) is not Outcome and c.outcome not in (0, 1, 2):
            raise SettlementInputError(f"outcome must be 0, 1 or 2, not {c.outcome!r}")
        tallies[k][int(c.outcome)] += require_int(weights[c.judge], "judge weight")
    return verdict_comparisons(pairs, tallies)


@dataclasses.dataclass(frozen=True)
class AnswerView:
    """The round as the answer phase left it: what judges must judge and settlement ranks.

    Judges call `answer_view` on the commitments and reveals they hold, judge ``pairs`` of
    ``nodes`` (index = position) and commit to ``answer_set``; settlement recomputes the same
    view from the openings it carries, so the two agree whenever the judge saw the same data.
    """

    round_id: bytes
    single: Mapping[tuple[bytes, int], Commitment]  # (node, kind) -> its one counting commitment
    equivocators: frozenset[bytes]
    evidence: tuple[EquivocationEvidence, ...]
    nodes: tuple[bytes, ...]  # revealed answerers, in node-id order
    answer_hashes: tuple[bytes, ...]  # aligned with nodes
    answer_no_shows: frozenset[bytes]
    answer_set: bytes
    pairs: tuple[tuple[int, int], ...]


def answer_view(
    *,
    round_id: bytes,
    answerers: Iterable[bytes],
    judges: Iterable[bytes],
    commitments: Iterable[Commitment],
    answer_openings: Iterable[AnswerOpening],
) -> AnswerView:
    """Counting commitments, equivocations and revealed answers of a round (§5.1 rules)."""
    roles = {KIND_ANSWER: frozenset(answerers), KIND_JUDGMENT: frozenset(judges)}
    grouped: dict[tuple[bytes, int], dict[bytes, Commitment]] = {}
    for c in sorted(set(commitments)):
        if c.round_id != round_id or c.node not in roles.get(c.kind, frozenset()):
            continue
        if not c.verify_signature():
            continue
        grouped.setdefault((c.node, c.kind), {}).setdefault(c.digest, c)
    evidence: list[EquivocationEvidence] = []
    equivocators: set[bytes] = set()
    single: dict[tuple[bytes, int], Commitment] = {}
    for key in sorted(grouped):
        by_digest = grouped[key]
        if len(by_digest) > 1:
            first, second = sorted(by_digest.values())[:2]
            proof = make_evidence(first, second)
            assert proof is not None
            evidence.append(proof)
            equivocators.add(key[0])
        else:
            single[key] = next(iter(by_digest.values()))
    openings = list(answer_openings)
    answer_hashes: dict[bytes, bytes] = {}
    no_shows: set[bytes] = set()
    for node in sorted(roles[KIND_ANSWER] - equivocators):
        commitment = single.get((node, KIND_ANSWER))
        if commitment is None:
            continue
        opened = [o for o in openings if o.node == node and opening_matches(commitment, o)]
        if opened:
            answer_hashes[node] = opened[0].answer_hash  # the digest binds one answer hash
        else:
            no_shows.add(node)
    nodes = tuple(sorted(answer_hashes))
    return AnswerView(
        round_id=round_id, single=single, equivocators=frozenset(equivocators),
        evidence=tuple(evidence), nodes=nodes,
        answer_hashes=tuple(answer_hashes[node] for node in nodes),
        answer_no_shows=frozenset(no_shows), answer_set=answer_set_digest(answer_hashes.items()),
        pairs=judging_pairs(round_id, len(nodes)))


def _share_groups(values: Sequence[int], answer_hashes: Sequence[bytes],
                  ties: Sequence[int]) -> list[int]:
    """Per ranked answer, the floor mean of ``values`` over its group of ranks: ranks holding
    the same answer (same hash) or tied in the consensus (same ``ties`` entry) are one group.

    Identical answers are one answer, and tied answers are equal in the judges' eyes: where
    the fit or the tie order happened to put each must not decide who is paid more.
    """
    group = list(range(len(values)))

    def root(r: int) -> int:
        while group[r] != r:
            r = group[r]
        return r

    first_of: dict[tuple[int, bytes | int], int] = {}
    for rank, key in enumerate(zip(answer_hashes, ties, strict=True)):
        for label in ((0, key[0]), (1, key[1])):
            other = first_of.setdefault(label, rank)
            a, b = root(rank), root(other)
            group[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for rank in range(len(values)):
        members.setdefault(root(rank), []).append(rank)
    return [sum(values[r] for r in members[root(rank)]) // len(members[root(rank)])
            for rank in range(len(values))]


SCREEN_BAD = 0
SCREEN_GOOD = 1
SCREEN_NONE = 2  # no opinion: the judge's own answer, or it could not tell
TIER_REJECTED = 0
TIER_UNDECIDED = 1
TIER_ACCEPTED = 2
TIE_TAG = b"pouw/swtie"
BEACON_TAG = b"pouw/swbeacon"


def beacon_seed(round_id: bytes, beacon_block: bytes) -> bytes:
    """A round's tie seed: H_"pouw/swbeacon"(round id ‖ id of its beacon block), the block
    ``ChainParams.swarm_beacon_delay`` above the height its request names
    (`contracts.swarm.beacon_fault`). That block is mined after the request is signed and,
    for a round shorter than the delay, after every commitment, so neither the client (by
    grinding its nonce) nor a node (by its key) can choose how ties fall."""
    return tagged_hash(BEACON_TAG, round_id + beacon_block)


def judgment_length(n: int, pairs: Sequence[tuple[int, int]]) -> int:
    """Outcome bytes a judgment of ``n`` answers carries: one per pair, one screen per answer."""
    return len(pairs) + n


def tie_order(seed: bytes, n: int) -> tuple[int, ...]:
    """Per answer index, its place in the round's order for breaking exact ties: sorted by a
    keyed hash of the round's seed, so neither a node id nor an index decides a tie."""
    digests = [tagged_hash(TIE_TAG, seed + i.to_bytes(4, "big")) for i in range(n)]
    place = [0] * n
    for p, i in enumerate(sorted(range(n), key=lambda i: digests[i])):
        place[i] = p
    return tuple(place)


@dataclasses.dataclass(frozen=True)
class RoundRanking:
    """What aggregation decides: the fit, each answer's screen tier, their order (accepted,
    then undecided, then rejected, each tier by strength, exact ties by the round's seed),
    which ranks tie, and each judge's agreement with it."""

    fit: BradleyTerryFit
    tiers: tuple[int, ...]  # by answer index: TIER_ACCEPTED, TIER_UNDECIDED or TIER_REJECTED
    ranking: tuple[int, ...]  # answer indices, best first
    ties: tuple[int, ...]  # per rank: the first rank of its tie (equal tier and strength)
    judges: tuple[JudgeReport, ...]
    weights: Mapping[bytes, int]  # the judge weights

    @property
    def accepted(self) -> tuple[bool, ...]:
        """By answer index: passed the screen."""
        return tuple(t == TIER_ACCEPTED for t in self.tiers)


def _tally(
    size: int, votes: Mapping[bytes, Mapping[int, int]], weights: Mapping[bytes, int],
    conflicted: frozenset[bytes], verdict: Callable[[Sequence[int]], tuple[int | None, bool]],
) -> list[list[int]]:
    """Per item (pair or screened answer) the weight behind each of the 3 values.

    ``votes[judge][item]`` is a judge's value on an item. A conflicted judge (one that also
    answered: every other answer competes with its own) is clipped on an item where the
    judges without a conflict hold at least ⅔ of the item's weight, against the
    ``verdict`` of all the other judges on it ((value or None, decisive)):

    * where they hold ≥ ⅔ on one side (*decisive*), its weight counts for that side whatever
      it voted (Yuma-style clipping to the consensus): it can neither flip nor weaken the
      verdict, nor withhold the support an honest vote adds (until 2026-12-05 a dissenting
      vote was dropped there too, and an answerer-judge that voted down every answer above
      its own ranked first 3 points more often than voting honestly, docs/swarm.md §5.2a);
    * elsewhere (*contested*) its vote counts only if it is the others' verdict: it can
      confirm one, not create or flip one.

    Decisive is judged by all the other judges, not only those without a conflict: under a
    coalition of less than ⅓ of the weight a decisive verdict then has an honest majority,
    while among the judges without a conflict the coalition's share is larger. Where
    conflicted judges hold more than ⅓ (small rounds in which most judges also answer)
    nothing is clipped: clipping them there would hand their items to whoever did not
    answer, e.g. a coalition of outside judges."""
    tallies = [[0, 0, 0] for _ in range(size)]
    free = [0] * size  # weight of judges without a conflict, per item
    for node, mine in votes.items():
        for item, value in mine.items():
            tallies[item][value] += weights[node]
            if node not in conflicted:
                free[item] += weights[node]
    if not conflicted:
        return tallies
    out = [list(t) for t in tallies]
    for node in sorted(conflicted):
        for item, value in votes[node].items():
            if 3 * free[item] < 2 * sum(tallies[item]):
                continue
            others = list(tallies[item])
            others[value] -= weights[node]
            if not sum(others):  # nobody else judged it: its vote counts
                continue
            consensus, decisive = verdict(others)
            if decisive and consensus is not None:
                out[item][value] -= weights[node]
                out[item][consensus] += weights[node]
            elif consensus != value:
                out[item][value] -= weights[node]
    return out


def _pair_clip_verdict(others: Sequence[int]) -> tuple[int | None, bool]:
    """The others' `pair_verdict`; decisive when one side holds ≥ ⅔ (a tie is contested)."""
    outcome, decisive = pair_verdict(others)
    return int(outcome), decisive and outcome != Outcome.TIE


def _screen_clip_verdict(others: Sequence[int]) -> tuple[int | None, bool]:
    """Good or bad when a strict majority of the others' weight marked it so (decisive at
    ≥ ⅔), else None: a conflicted mark there, no opinion included, does not count."""
    total = sum(others)
    for mark in (SCREEN_GOOD, SCREEN_BAD):
        if 2 * others[mark] > total:
            return mark, 3 * others[mark] >= 2 * total
    return None, False


def screen_tiers(tallies: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """Per answer from its screen weights [bad, good, no opinion]: rejected when at least ⅔
    of the weight with an opinion on it called it bad; accepted when it is not rejected and
    its good share g = good / (good + bad) is at least ½ of the largest good share in the
    round; else undecided (no opinion at all: undecided).

    Why relative to the best share: a coalition that calls every answer but its own bad
    scales every other answer's share by the same factor (its weight is in every
    denominator), so it cannot veto acceptance by marking down everything (with an
    absolute ⅔ a 30% coalition vetoed any answer on which one honest judge erred).

    Why ½ of it (⅔ until session 6): a coalition marking its target good raises the best
    share, and marking the best answer bad lowers that answer's. With 85%-accurate honest
    judges and c = 0.3, a right answer holds g ≈ 0.595 against its target's ≈ 0.895: under
    ⅔ of the best, so the best answer fell to undecided and the coalition's choice among
    right answers ranked first by tier alone (the runner-up attack, docs/swarm.md §5.2a:
    48.8% of rounds; 29.5% at ½). A coalition under ⅓ still cannot move an answer the
    other judges are unanimous on (unanimous good: share > ⅔ > ½ of the best; unanimous
    bad: ≥ ⅔ bad). Integer cross-multiplication only."""
    best_good, best_total = 0, 1  # the largest good share so far, as a fraction
    for tally in tallies:
        total = tally[SCREEN_GOOD] + tally[SCREEN_BAD]
        if total and tally[SCREEN_GOOD] * best_total > best_good * total:
            best_good, best_total = tally[SCREEN_GOOD], total
    tiers = []
    for tally in tallies:
        total = tally[SCREEN_GOOD] + tally[SCREEN_BAD]
        if total and 3 * tally[SCREEN_BAD] >= 2 * total:
            tiers.append(TIER_REJECTED)
        elif total and 2 * tally[SCREEN_GOOD] * best_total >= best_good * total:
            tiers.append(TIER_ACCEPTED)
        else:
            tiers.append(TIER_UNDECIDED)
    return tuple(tiers)


#: `strength_fit` rescales its comparisons' weights to this total (each rounded up)
FIT_WEIGHT_TOTAL = 1 << 32


def normalized_weights(weights: Mapping[bytes, int]) -> dict[bytes, int]:
    """``weights`` rescaled to sum to about `FIT_WEIGHT_TOTAL`, each rounded up (so none
    becomes 0). Why: a judge who judges every item scales every comparison's weight W by the
    same factor, but the fit's prior is a rounded fraction of the weights, so that factor
    alone moved strengths, and a coalition under ⅓ that changed no verdict still swapped two
    answers the honest judges' data left within 10⁻⁴ of each other (hypothesis trial
    8045284 of `test_a_coalition_under_a_third_cannot_move_unanimous_honest_judges`). The
    fit sees only the weights' proportions."""
    total = sum(weights.values())
    if total == 0:
        return dict(weights)
    return {key: -(-w * FIT_WEIGHT_TOTAL // total) for key, w in weights.items()}


def strength_fit(
    n: int, pairs: Sequence[tuple[int, int]], pair_tallies: Sequence[Sequence[int]],
    screen_tallies: Sequence[Sequence[int]],
) -> BradleyTerryFit:
    """One Bradley-Terry fit of the pairs and the screen: every answer also plays a virtual
    *threshold* answer (index n) with its screen weights as the verdict weights (good = the
    answer wins, bad = it loses); θ is returned relative to the threshold's, for the n real
    answers. Pairs of answers enter through `majority_verdict`, the screen through
    `pair_verdict` (⅔ decisive, else leaning): with the screen by strict majority too, a
    coalition marking every answer but its target bad flips the screens of right answers
    that one or two honest judges doubt, and the GOOD + all-BAD attack's excess changed
    outcomes rose from −0.2 to +2.2 points at 30% (600 held-out rounds, docs/swarm.md §5.2a).

    Why: the screen is evidence about strength like any pair, so a wrong answer that honest
    judges mark bad loses strength even where a coalition wins its pairs for it, and a
    right answer the coalition marks bad still wins its pairs. A fit that did not converge
    is θ = 0 throughout (`bradley_terry_scores`), so it ranks nothing here either."""
    threshold = [(i, n) for i in range(n)]
    screen_as_pairs = [[t[SCREEN_GOOD], t[SCREEN_BAD], t[SCREEN_NONE]] for t in screen_tallies]
    comparisons, weights = verdict_comparisons(pairs, pair_tallies, verdict=majority_verdict)
    screen_comparisons, screen_weights = verdict_comparisons(threshold, screen_as_pairs,
                                                             first_key=len(pairs))
    fit = bradley_terry_scores([*comparisons, *screen_comparisons],
                               weights=normalized_weights(weights | screen_weights), n=n + 1)
    return dataclasses.replace(fit, theta=tuple(t - fit.theta[n] for t in fit.theta[:n]),
                               prior_weights=fit.prior_weights[:n])


def _check_aggregate_input(
    n: int, pairs: Sequence[tuple[int, int]], verdicts: Mapping[bytes, bytes],
    weights: Mapping[bytes, int], own: Mapping[bytes, int], seed: bytes,
) -> None:
    """`SettlementInputError` for anything `aggregate` cannot rank."""
    require_int(n, "n")
    if not isinstance(seed, bytes):
        raise SettlementInputError("seed must be bytes")
    for pair in pairs:
        if len(pair) != 2:
            raise SettlementInputError("a pair holds two answer indices")
        a = require_int(pair[0], "pair index", high=n - 1)
        b = require_int(pair[1], "pair index", high=n - 1)
        if a == b:
            raise SettlementInputError(f"pair of answer {a} with itself")
    size = judgment_length(n, pairs)
    for node, outcomes in verdicts.items():
        if not isinstance(node, bytes) or not isinstance(outcomes, bytes):
            raise SettlementInputError("verdicts map judge ids (bytes) to outcome bytes")
        if node not in weights:
            raise SettlementInputError(f"judge {node.hex()} has no weight")
        require_int(weights[node], "judge weight")
        if len(outcomes) != size or any(v > Outcome.TIE for v in outcomes):
            raise SettlementInputError(f"judge {node.hex()}: {size} outcome bytes 0..2 expected")
    for index in own.values():
        require_int(index, "own answer index", high=n - 1)


def aggregate(
    *,
    n: int,
    pairs: Sequence[tuple[int, int]],
    verdicts: Mapping[bytes, bytes],
    weights: Mapping[bytes, int],
    own_answer: Mapping[bytes, int] | None = None,
    seed: bytes = b"",
) -> RoundRanking:
    """Rank ``n`` answers from judges' outcome bytes, judges weighted by ``weights``.

    Each judge's bytes (`judgment_length`): one verdict per pair of ``pairs`` (0 first wins,
    1 second wins, 2 tie), then one screen mark per answer (0 bad, 1 good, 2 no opinion).
    ``own_answer`` maps a judge to the index of its own answer, which it neither compares
    nor screens; such a judge is *conflicted* on every other answer too, so where the judges
    without a conflict hold ⅔ of an item's weight it is clipped to the others' verdict
    (`_tally`).

    One pass, no reweighting within the round (docs/swarm.md §5.2a): per-pair weighted
    verdicts (`majority_verdict`) and one Bradley-Terry fit of them and the screen
    (`strength_fit`); the screen's tiers relative to the best good share (`screen_tiers`);
    the order: tier, then strength, then the round's ``seed`` (`tie_order`) for exact
    ties.
    Reputation moves between rounds, by each judge's agreement with this order. `settle`
    uses exactly this; benches and the node's fast path can call it without signed messages.
    """
    own = own_answer or {}
    _check_aggregate_input(n, pairs, verdicts, weights, own, seed)
    pair_votes: dict[bytes, dict[int, int]] = {}
    screen_votes: dict[bytes, dict[int, int]] = {}
    for node, outcomes in verdicts.items():
        mine_index = own.get(node)
        pair_votes[node] = {k: outcomes[k] for k, (a, b) in enumerate(pairs)
                            if mine_index != a and mine_index != b}
        screen_votes[node] = {i: outcomes[len(pairs) + i] for i in range(n) if i != mine_index}
    conflicted = frozenset(node for node in verdicts if node in own)
    screen_tallies = _tally(n, screen_votes, weights, conflicted, _screen_clip_verdict)
    fit = strength_fit(n, pairs, _tally(len(pairs), pair_votes, weights, conflicted,
                                         _pair_clip_verdict), screen_tallies)
    tiers = screen_tiers(screen_tallies)
    # the screen's direction per answer (what a mark is scored against): good or bad by the
    # larger weight, None on a tie; it agrees with every accepted / rejected tier
    direction = [SCREEN_GOOD if t[SCREEN_GOOD] > t[SCREEN_BAD] else
                 SCREEN_BAD if t[SCREEN_BAD] > t[SCREEN_GOOD] else None
                 for t in screen_tallies]
    keys = tuple(zip(tiers, fit.rank_keys(), strict=True))
    place = tie_order(seed, n)
    ranking = tuple(sorted(range(n), key=lambda i: (-keys[i][0], -keys[i][1], place[i])))
    ties: list[int] = []
    for rank, i in enumerate(ranking):
        ties.append(ties[-1] if rank and keys[ranking[rank - 1]] == keys[i] else rank)
    # agreement with the consensus: per pair 2 full, 1 tie involved, 0 opposite; per screen
    # mark (good or bad) 2 if it is the screen's direction, 1 on a tie, 0 if the opposite
    consensus = [_consensus_outcome(keys[a], keys[b]) for a, b in pairs]
    reports = []
    for node in sorted(verdicts):
        marks = {i: v for i, v in screen_votes[node].items() if v != SCREEN_NONE}
        pair_agree = sum(_AGREEMENT[v][consensus[k]] for k, v in pair_votes[node].items())
        screen_agree = sum(1 if direction[i] is None else 2 if v == direction[i] else 0
                           for i, v in marks.items())
        reports.append(JudgeReport(node=node, counted=len(pair_votes[node]) + len(marks),
                                   agree2=pair_agree + screen_agree))
    return RoundRanking(fit=fit, tiers=tiers, ranking=ranking, ties=tuple(ties),
                        judges=tuple(reports), weights=weights)


def counted_judgments(
    view: AnswerView, *, judges: Iterable[bytes], judgment_openings: Sequence[JudgmentOpening],
) -> tuple[dict[bytes, bytes], frozenset[bytes]]:
    """(judge -> outcome bytes of its counted judgment, judges who did not show).

    Judgment rules (module docstring, Participation), one check each; equivocators are
    already out (`answer_view`)."""
    size = judgment_length(len(view.nodes), view.pairs)
    verdicts: dict[bytes, bytes] = {}
    no_shows: set[bytes] = set()
    for node in sorted(set(judges) - view.equivocators):
        commitment = view.single.get((node, KIND_JUDGMENT))
        # a selected judge that never committed is not slashed (it may be offline)
        if commitment is None:
            continue
        judged = [j for j in judgment_openings
                  if j.node == node and opening_matches(commitment, j)]
        # a counting commitment must be opened, else the judge is a no-show
        if not judged:
            no_shows.add(node)
            continue
        judgment = judged[0]
        # a judgment of another view of the reveals is not counted, and not provably bad
        if judgment.answer_set != view.answer_set or len(judgment.outcomes) != size:
            continue
        # an outcome byte above 2 is malformed: as good as no opening
        if any(v > Outcome.TIE for v in judgment.outcomes):
            no_shows.add(node)
            continue
        verdicts[node] = judgment.outcomes
    return verdicts, frozenset(no_shows)


def round_slashes(*, equivocators: Iterable[bytes], no_shows: Iterable[bytes],
                  stakes: Mapping[bytes, int], params: SettlementParams) -> tuple[Slash, ...]:
    """One slash per node with a positive amount: equivocation outranks no-show."""
    equivocating = frozenset(equivocators)
    slashes: list[Slash] = []
    for node in sorted(equivocating | frozenset(no_shows)):
        reason, bps = ((SLASH_EQUIVOCATION, params.equivocation_slash_bps)
                       if node in equivocating else (SLASH_NO_SHOW, params.no_show_slash_bps))
        amount = stakes.get(node, 0) * bps // BPS
        if amount > 0:
            slashes.append(Slash(node=node, amount=amount, reason=reason))
    return tuple(slashes)


def _credit(payouts: dict[bytes, int], shares: Mapping[bytes, int]) -> None:
    """Add ``shares`` to ``payouts`` (a node may be paid as answerer and as judge)."""
    for node, amount in shares.items():
        payouts[node] = payouts.get(node, 0) + amount


def good_count(ranked_tiers: Sequence[int]) -> int:
    """How many of the top ranks are *good* (paid): the accepted answers, or if none is
    accepted the top ⌈n/2⌉ that are not rejected (tiers in rank order, best first)."""
    accepted = sum(t == TIER_ACCEPTED for t in ranked_tiers)
    if accepted:
        return accepted
    return min((len(ranked_tiers) + 1) // 2, sum(t != TIER_REJECTED for t in ranked_tiers))


def round_payouts(
    *, fee: int, forfeited: int, ranked: Sequence[bytes], ranked_hashes: Sequence[bytes],
    ranked_tiers: Sequence[int], ties: Sequence[int], reports: Sequence[JudgeReport],
    params: SettlementParams, seed: bytes = b"",
) -> tuple[dict[bytes, int], int]:
    """(node -> amount, refund): the Money rules of the module docstring."""
    n = len(ranked)
    # no answer revealed: the whole fee is refunded (the slashed stake is burned)
    if n == 0:
        return {}, fee
    answer_fee = fee * params.answer_share_bps // BPS
    judge_pool = fee - answer_fee
    good = good_count(ranked_tiers)
    refund = 0
    payouts: dict[bytes, int] = {}
    if good:
        answer_weights = _share_groups(
            [position_weight(good - r) if r < good else 0 for r in range(n)], ranked_hashes,
            ties)
        positive = {node: w for node, w in zip(ranked, answer_weights, strict=True) if w > 0}
        _credit(payouts, _split(answer_fee + forfeited, positive, seed))
    else:  # every answer rejected: the answer pool goes back to the client
        refund += answer_fee + forfeited
    merits = {r.node: r.agree2 - r.counted for r in reports if r.agree2 > r.counted}
    # no judge did better than chance: the judge pool is refunded
    if not merits:
        return payouts, refund + judge_pool
    _credit(payouts, _split(judge_pool, merits, seed))
    return payouts, refund


def reputation_deltas(
    *, ranked: Sequence[bytes], ranked_hashes: Sequence[bytes], ties: Sequence[int],
    reports: Sequence[JudgeReport], penalized: Iterable[bytes], params: SettlementParams,
) -> dict[bytes, int]:
    """Node -> reputation change before clamping: the Reputation rules of the module docstring."""
    n = len(ranked)
    step = params.reputation_step
    # an answerer moves by its rank, copies of one answer by their mean
    rank_deltas = [step * (n - 1 - 2 * r) // (n - 1) if n > 1 else 0 for r in range(n)]
    deltas = dict(zip(ranked, _share_groups(rank_deltas, ranked_hashes, ties), strict=True))
    # a judge moves by how much better than chance it agreed with the consensus
    for report in reports:
        if report.counted:
            delta = step * (report.agree2 - report.counted) // report.counted
            deltas[report.node] = deltas.get(report.node, 0) + delta
        else:
            deltas.setdefault(report.node, 0)
    # no-shows and equivocators lose the penalty
    for node in penalized:
        deltas[node] = deltas.get(node, 0) - params.reputation_penalty
    return deltas


def settle(
    *,
    request: SwarmRequest,
    answerers: Sequence[bytes],
    judges: Sequence[bytes],
    commitments: Sequence[Commitment],
    answer_openings: Sequence[AnswerOpening],
    judgment_openings: Sequence[JudgmentOpening],
    reputations: Mapping[bytes, int],
    stakes: Mapping[bytes, int],
    params: SettlementParams = DEFAULT_PARAMS,
    seed: bytes | None = None,
) -> RoundSettlement:
    """Settle one round. ``reputations`` are current (already decayed) scores; ``stakes`` bonded.

    The request's signature and the selection of ``answerers``/``judges`` are the caller's to
    check (the contract does); everything about commitments and openings is checked here.
    The node's fast path may call it too (before settlement) for the ranking and top answer.
    ``seed`` orders exact ties and places the rounding dust: on chain the round's
    `beacon_seed` (the contract passes it); None, the round id, only where the beacon block
    is not mined yet (the fast path) or no chain runs the round (benches).
    """
    for table, what in ((reputations, "reputation"), (stakes, "stake")):
        for value in table.values():
            require_int(value, what, high=MAX_U64)
    round_id = request.round_id()
    tie_seed = round_id if seed is None else seed
    if not isinstance(tie_seed, bytes):
        raise SettlementInputError("seed must be bytes")
    # 1-2. counting commitments, equivocations, revealed answers
    view = answer_view(round_id=round_id, answerers=answerers, judges=judges,
                       commitments=commitments, answer_openings=answer_openings)
    revealed = view.nodes
    # 3. judgments: one commitment and a matching opening over this answer set
    verdicts, judge_no_shows = counted_judgments(view, judges=judges,
                                                 judgment_openings=judgment_openings)
    no_shows = (view.answer_no_shows | judge_no_shows) - view.equivocators
    # 4. per-pair reputation-weighted consensus verdicts, Bradley-Terry, the screen
    result = aggregate(
        n=len(revealed), pairs=view.pairs, verdicts=verdicts,
        own_answer={node: i for i, node in enumerate(revealed)},
        weights={node: reputations.get(node, 0) + params.judge_weight_base for node in verdicts},
        seed=tie_seed)
    ranked = [revealed[i] for i in result.ranking]
    ranked_hashes = [view.answer_hashes[i] for i in result.ranking]
    ranked_tiers = [result.tiers[i] for i in result.ranking]
    # 5. slashes
    slashes = round_slashes(equivocators=view.equivocators, no_shows=no_shows, stakes=stakes,
                            params=params)
    # 6. money
    payouts, refund = round_payouts(
        fee=request.fee, forfeited=sum(s.amount for s in slashes), ranked=ranked,
        ranked_hashes=ranked_hashes, ranked_tiers=ranked_tiers, ties=result.ties,
        reports=result.judges, params=params, seed=tie_seed)
    # 7. reputation, clamped to u64
    deltas = reputation_deltas(ranked=ranked, ranked_hashes=ranked_hashes, ties=result.ties,
                               reports=result.judges, penalized=view.equivocators | no_shows,
                               params=params)
    updates = tuple(
        ReputationUpdate(node=node, score=min(MAX_U64, max(0, reputations.get(node, 0) + d)))
        for node, d in sorted(deltas.items()))

    scores = result.fit.scores()
    outcome = RoundOutcome(
        round_id=round_id,
        ranking=tuple(ranked),
        scores=tuple(scores[i] for i in result.ranking),
        payouts=tuple(Payout(node=node, amount=a) for node, a in sorted(payouts.items()) if a),
        refund=refund,
        reputations=updates,
        slashes=slashes,
    )
    return RoundSettlement(outcome=outcome, answer_nodes=revealed, fit=result.fit,
                           accepted=result.accepted,
                           reputation_changes={u.node: u.score - reputations.get(u.node, 0)
                                               for u in updates},
                           judges=result.judges, no_shows=tuple(sorted(no_shows)),
                           equivocations=view.evidence)
