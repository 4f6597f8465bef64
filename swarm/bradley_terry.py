"""Reputation-weighted Bradley-Terry strengths in deterministic fixed-point integer arithmetic.

Why integers: every validator recomputes the ranking that decides payouts, so the fit must be
bit-identical on every machine and in every process. Floats (and numpy's BLAS) are not, so
everything here is Python integers with explicit floor rounding.

Model. Answer ``i`` has log-strength ``θ_i``; a judge prefers ``i`` to ``j`` with probability
``σ(θ_i − θ_j)``. Judge ``k`` contributes its comparisons with weight ``w_k`` (its reputation);
a tie counts half a win to each side. We maximise the weighted log-likelihood

    L(θ) = Σ_k w_k Σ_{(a, b, y) by k} [y log σ(θ_a − θ_b) + (1 − y) log σ(θ_b − θ_a)]
           + Σ_i α [½ log σ(θ_i) + ½ log σ(−θ_i)]

where the last term is the prior: every answer plays one tie, of weight α_i, against a virtual
answer fixed at θ = 0. It makes the maximum unique and finite for any data (an answer that
wins everything, or a comparison graph in several pieces) and pins the scale, so no
renormalisation is needed. α_i is 1/`PRIOR_DIVISOR` of the mean weight of answer i's own
comparisons (rounded up, at least 1): each answer's prior is measured on its own data, so one
heavy judge elsewhere does not shrink the strengths a light judge gave other answers; the fit
does not change when every weight is multiplied by a constant that keeps those quotients, and
a judge of weight 0 changes nothing.

Algorithm. Damped Newton on θ (L is strictly concave): the Hessian is a weighted graph
Laplacian plus the positive prior diagonal, so it is symmetric positive definite and
strictly diagonally dominant, and Gaussian elimination without pivoting is stable; it runs
on sparse rows in reverse Cuthill-McKee order (`elimination_order`) to keep fill-in small.
Newton always starts from θ = 0 (the prior's maximum); the Newton direction δ is scaled
down so that no coordinate moves by more than `MAX_STEP` (a trust region: far from the
maximum, where the curvature of σ vanishes, a full Newton step on a coordinate with little
data overshoots by tens of units).
Step ``t·δ`` (rounded toward zero) with t = 1, ½, ¼, ... accepting the first t whose
directional derivative ``∇L(θ + tδ)·δ`` is still ≥ −½ ``∇L(θ)·δ`` (no overshoot past the line
maximum by more than half; L needs no logarithm to check this). Stop when the accepted step is
at most `TOLERANCE` in every coordinate (``converged``), or after `MAX_NEWTON_STEPS`
(``converged`` False). A fit that has not converged is never used for a ranking:
`bradley_terry_scores` then returns θ = 0 for every answer (the prior's point: no order at
all), so settlement falls back to the screen and the round's seed instead of trusting an
arbitrary iterate (consensus rule, docs/swarm.md §5.3).

Input: anything malformed (a non-int index, ``n`` or start value, an outcome that is not one
of `Outcome`, a judge without a weight, a negative or non-int weight) raises
`SettlementInputError` (a ``ValueError``) naming the reason.

Fixed point: values carry `FRACTION_BITS` fraction bits (`ONE` = 1.0). Every division is
Python's floor division ``//`` and every rescale an arithmetic right shift ``>>`` (floor, also
for negatives). ``e^{−x}`` is computed by range reduction with ``ln 2`` and a Taylor series
(`exp_neg`); ``σ`` from it (`sigmoid`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from enum import IntEnum

FRACTION_BITS = 64
ONE = 1 << FRACTION_BITS
LN2 = 12786308645202655659  # floor(ln 2 · 2^64), checked against decimal in the tests
_GUARD_BITS = 8  # extra bits inside exp_neg's series
MAX_NEWTON_STEPS = 64
MAX_HALVINGS = 40
MAX_STEP = 2 * ONE  # largest move of one θ per Newton step (trust region)
TOLERANCE = ONE >> 40  # ≈ 9.1e-13 in θ
PRIOR_DIVISOR = 32
RANK_BITS = 32  # ranking compares θ rounded to 2^-32: rounding noise never orders a tie


class SettlementInputError(ValueError):
    """Malformed input to the fit or the settlement rules; ``reason`` says which rule."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def require_int(value: object, what: str, *, low: int = 0, high: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in [low, high], else `SettlementInputError`."""
    if type(value) is not int:
        raise SettlementInputError(f"{what} must be an int, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise SettlementInputError(f"{what} must be {bound}, not {value}")
    return value


class Outcome(IntEnum):
    """A judge's verdict on an ordered pair (first shown, second shown)."""

    FIRST_WINS = 0
    SECOND_WINS = 1
    TIE = 2


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One judged pair: ``judge`` (a key of the weights) compared answers by index."""

    judge: bytes
    first: int
    second: int
    outcome: Outcome


@dataclasses.dataclass(frozen=True)
class BradleyTerryFit:
    """Fitted log-strengths (fixed point, `ONE` = 1.0) and how the fit ended."""

    theta: tuple[int, ...]
    iterations: int
    converged: bool
    prior_weights: tuple[int, ...]  # α_i per answer

    def rank_keys(self) -> tuple[int, ...]:
        """θ rounded to multiples of 2^-`RANK_BITS`: what orders answers (ties are real ties)."""
        shift = FRACTION_BITS - RANK_BITS
        return tuple((t + (1 << (shift - 1))) >> shift for t in self.theta)

    def ranking(self) -> tuple[int, ...]:
        """Answer indices, strongest first; equal (rounded) strengths keep index order."""
        keys = self.rank_keys()
        return tuple(sorted(range(len(keys)), key=lambda i: (-keys[i], i)))

    def scores(self) -> tuple[int, ...]:
        """σ(θ_i) as a 64-bit fraction: the chance of beating the virtual prior answer."""
        return tuple(min(sigmoid(t), ONE - 1) for t in self.theta)


def exp_neg(x: int) -> int:
    """floor-ish ``e^{−x}`` in fixed point for ``x ≥ 0`` (both scaled by `ONE`)."""
    if x < 0:
        raise ValueError("exp_neg takes x >= 0")
    halvings, rest = divmod(x, LN2)  # e^{-x} = 2^{-halvings} · e^{-rest}, 0 <= rest < ln 2
    if halvings > FRACTION_BITS + 1:
        return 0
    one = ONE << _GUARD_BITS
    r = rest << _GUARD_BITS
    term = one
    total = one
    m = 1
    while term:
        term = term * r // (m * one)
        total += term
        m += 1
    return (one * one // total) >> (halvings + _GUARD_BITS)


def sigmoid(d: int) -> int:
    """``σ(d) = 1 / (1 + e^{−d})`` in fixed point, using only ``e^{−|d|}`` (no overflow)."""
    if d >= 0:
        return ONE * ONE // (ONE + exp_neg(d))
    e = exp_neg(-d)
    return e * ONE // (ONE + e)


@dataclasses.dataclass
class _Games:
    """Weighted games aggregated per unordered pair, in half-units (a tie is 1 of 2)."""

    n: int
    edges: list[tuple[int, int, int, int]]  # (i, j, games N_ij·2w, wins of i X_ij) with i < j
    prior: list[int]  # α_i: weight of answer i's tie against the virtual answer


def _aggregate(comparisons: Sequence[Comparison], weights: Mapping[bytes, int], n: int,
               ) -> _Games:
    games: dict[tuple[int, int], list[int]] = {}
    weight_sum = [0] * n  # per answer: Σ weight of its comparisons
    count = [0] * n  # per answer: how many comparisons of positive weight
    for c in comparisons:
        first = require_int(c.first, "comparison index", high=n - 1)
        second = require_int(c.second, "comparison index", high=n - 1)
        if first == second:
            raise SettlementInputError(f"comparison of answer {first} with itself")
        if type(c.outcome) is not Outcome and not (
                type(c.outcome) is int and 0 <= c.outcome <= Outcome.TIE):
            raise SettlementInputError(f"outcome must be 0, 1 or 2, not {c.outcome!r}")
        if not isinstance(c.judge, bytes) or c.judge not in weights:
            raise SettlementInputError(f"judge {c.judge!r} has no weight")
        w = require_int(weights[c.judge], "judge weight")
        if w == 0:
            continue
        for i in (first, second):
            weight_sum[i] += w
            count[i] += 1
        outcome = Outcome(c.outcome)
        first_score = 2 if outcome is Outcome.FIRST_WINS else 0 if outcome is Outcome.SECOND_WINS \
            else 1
        lo, hi = (first, second) if first < second else (second, first)
        lo_score = first_score if lo == first else 2 - first_score
        entry = games.setdefault((lo, hi), [0, 0])
        entry[0] += 2 * w
        entry[1] += lo_score * w
    # not configurable: a prior far below the weights would make the Hessian ill-conditioned
    prior = [max(1, -(-weight_sum[i] // (PRIOR_DIVISOR * count[i]))) if count[i] else 1
             for i in range(n)]
    edges = [(i, j, g[0], g[1]) for (i, j), g in sorted(games.items())]
    return _Games(n=n, edges=edges, prior=prior)


def _gradient(games: _Games, theta: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """(G, edge probabilities P_ij, anchor probabilities P_i0); G = 2·ONE·∇L exactly given P."""
    g = [0] * games.n
    edge_p: list[int] = []
    for i, j, total, wins in games.edges:
        p = sigmoid(theta[i] - theta[j])
        edge_p.append(p)
        part = wins * ONE - total * p
        g[i] += part
        g[j] -= part
    anchor_p = [sigmoid(t) for t in theta]
    for i, a in enumerate(games.prior):
        g[i] += a * ONE - 2 * a * anchor_p[i]
    return g, edge_p, anchor_p


def elimination_order(n: int, edges: Sequence[tuple[int, int, int, int]]) -> list[int]:
    """Reverse Cuthill-McKee order of the comparison graph (ties by degree, then index).

    Eliminating in this order keeps the fill-in of the Hessian's factorisation near the
    graph's small bandwidth (the schedule's ring + chords is a Möbius ladder), so a solve
    costs about n·b² instead of n³/6. Deterministic: it depends on the graph only.
    """
    adjacent: list[set[int]] = [set() for _ in range(n)]
    for i, j, _, _ in edges:
        adjacent[i].add(j)
        adjacent[j].add(i)
    seen = [False] * n
    order: list[int] = []
    for start in sorted(range(n), key=lambda v: (len(adjacent[v]), v)):
        if seen[start]:
            continue
        seen[start] = True
        queue = [start]
        head = 0
        while head < len(queue):
            v = queue[head]
            head += 1
            for u in sorted(adjacent[v], key=lambda u: (len(adjacent[u]), u)):
                if not seen[u]:
                    seen[u] = True
                    queue.append(u)
        order.extend(queue)
    order.reverse()
    return order


def _hessian(
    games: _Games, edge_p: Sequence[int], anchor_p: Sequence[int], position: Sequence[int],
) -> list[dict[int, int]]:
    """Upper triangle of M = 2·ONE·(−∇²L) in elimination positions, one sparse row each:
    the Laplacian of the games weighted by N·p(1−p), plus the prior diagonal."""
    n = games.n
    rows: list[dict[int, int]] = [{k: 0} for k in range(n)]
    for (i, j, total, _), p in zip(games.edges, edge_p, strict=True):
        h = total * p * (ONE - p) >> FRACTION_BITS
        a, b = sorted((position[i], position[j]))
        rows[a][a] += h
        rows[b][b] += h
        rows[a][b] = rows[a].get(b, 0) - h
    for i, a in enumerate(games.prior):
        rows[position[i]][position[i]] += 2 * a * anchor_p[i] * (ONE - anchor_p[i]) \
            >> FRACTION_BITS
    return rows


def solve_spd(upper: Sequence[Mapping[int, int]], rhs: Sequence[int]) -> list[int]:
    """x with ``M · x ≈ rhs``, x scaled by `ONE` relative to rhs / M; M symmetric, diagonally
    dominant, given by its upper triangle as sparse rows (``upper[k][j]``, j ≥ k).

    Gaussian elimination without pivoting in index order, multipliers in fixed point, floor
    rounding throughout. At step k only rows i > k change, each entry from row k alone, so
    the order of the sparse entries never affects the result.
    """
    n = len(rhs)
    rows = [dict(row) for row in upper]
    b = [v * ONE for v in rhs]
    for k in range(n):
        row_k = rows[k]
        pivot = max(row_k[k], 1)
        b_k = b[k]
        for i, a_ki in row_k.items():
            if i == k or a_ki == 0:
                continue
            f = a_ki * ONE // pivot
            row_i = rows[i]
            for j, a_kj in row_k.items():
                if j >= i:
                    row_i[j] = row_i.get(j, 0) - (f * a_kj >> FRACTION_BITS)
            b[i] -= f * b_k >> FRACTION_BITS
    x = [0] * n
    for k in range(n - 1, -1, -1):
        acc = b[k]
        for j, a_kj in rows[k].items():
            if j != k:
                acc -= a_kj * x[j]
        x[k] = acc // max(rows[k][k], 1)
    return x


def _newton(games: _Games, theta: list[int], max_steps: int) -> tuple[list[int], int, bool]:
    """(θ, steps, converged): damped Newton with the `MAX_STEP` trust region (docstring)."""
    n = games.n
    order = elimination_order(n, games.edges)
    position = [0] * n
    for k, v in enumerate(order):
        position[v] = k
    g, edge_p, anchor_p = _gradient(games, theta)
    steps = 0
    while steps < max_steps:
        steps += 1
        x = solve_spd(_hessian(games, edge_p, anchor_p, position), [g[v] for v in order])
        delta = [x[position[v]] for v in range(n)]
        slope = sum(gi * di for gi, di in zip(g, delta, strict=True))
        largest = max(abs(d) for d in delta)
        if slope <= 0 or largest <= TOLERANCE:
            return theta, steps, True
        if largest > MAX_STEP:  # trust region: the same direction, no coordinate beyond it
            delta = [d * MAX_STEP // largest for d in delta]
            slope = sum(gi * di for gi, di in zip(g, delta, strict=True))
        for halving in range(MAX_HALVINGS):
            # t·δ rounded toward zero: a floor shift keeps a negative coordinate at -1 ulp
            # forever, so with huge weights (where one ulp moves the gradient more than
            # the slope) no halving could ever pass the test
            step = [d >> halving if d >= 0 else -(-d >> halving) for d in delta]
            trial = [t + s for t, s in zip(theta, step, strict=True)]
            g_trial, p_trial, a_trial = _gradient(games, trial)
            if 2 * sum(gi * di for gi, di in zip(g_trial, delta, strict=True)) >= -slope:
                break
        else:
            return theta, steps, False
        theta, g, edge_p, anchor_p = trial, g_trial, p_trial, a_trial
        if max(abs(s) for s in step) <= TOLERANCE:
            return theta, steps, True
    return theta, steps, False


def bradley_terry_scores(
    comparisons: Sequence[Comparison],
    *,
    weights: Mapping[bytes, int],
    n: int,
    max_steps: int = MAX_NEWTON_STEPS,
    start: Sequence[int] | None = None,
) -> BradleyTerryFit:
    """Fit weighted Bradley-Terry log-strengths of ``n`` answers from judged comparisons.

    ``weights`` maps each judge to a non-negative integer (its reputation); comparisons by a
    judge of weight 0 are ignored. The priors α_i are per answer (module docstring). Newton
    starts from θ = ``start`` (default 0, what settlement uses) with steps bounded by
    `MAX_STEP`; if it has not converged after ``max_steps`` steps the result is θ = 0 for
    every answer with ``converged`` False: no ranking rests on an unfinished fit.
    """
    require_int(n, "n")
    require_int(max_steps, "max_steps", low=1)
    if start is not None:
        if len(start) != n:
            raise SettlementInputError("start must hold n log-strengths")
        for t in start:
            require_int(t, "start log-strength", low=-(1 << 80), high=1 << 80)
    games = _aggregate(comparisons, weights, n)
    if n == 0:
        return BradleyTerryFit(theta=(), iterations=0, converged=True, prior_weights=())
    theta, steps, converged = _newton(games, [0] * n if start is None else list(start),
                                      max_steps)
    return BradleyTerryFit(theta=tuple(theta) if converged else (0,) * n, iterations=steps,
                           converged=converged, prior_weights=tuple(games.prior))
