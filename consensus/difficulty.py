"""Difficulty adjustment: an integer ASERT rule (aserti3-2d style).

ASERT ("absolutely scheduled exponentially rising targets") sets every block's target from a
fixed *anchor* block and the parent's height and timestamp alone:

    next_target = anchor_target * 2 ** ((dt - T * (dh + 1)) / halflife)

with ``dt = parent_time - anchor_parent_time`` and ``dh = parent_height - anchor_height``.
It keeps O(1) state, reacts on every block and has no window effects. Everything here is
integer arithmetic: 2**x is split into an integer shift and a 16-bit fraction whose power of
two comes from the cubic polynomial of the Bitcoin Cash specification (error < 0.013 %).

Rounding choice: the exponent division truncates toward zero, as the C++ reference does
(``int64_t / int64_t``), not toward minus infinity as Python's ``//`` would. The shift split
that follows is an arithmetic shift (a floor), again as in the reference. The two choices make
the function bit-for-bit equal to aserti3-2d for every input the reference accepts.

A block's target is a ceiling on its proof-of-work ticket: a larger target is easier. Its work
is ``2**256 // (target + 1)``, so an easier block weighs less in the fork choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.params import ChainParams
from pouw import MAX_TARGET as MAX_TARGET  # largest (easiest) target: every ticket wins

# Fixed-point radix of the exponent: 16 fractional bits, as in aserti3-2d.
RADIX_BITS = 16
RADIX = 1 << RADIX_BITS
# Cubic approximation of 2**x - 1 on [0, 1), coefficients scaled by 2**48 (aserti3-2d).
_C1 = 195_766_423_245_049
_C2 = 971_821_376
_C3 = 5_127
_POLY_SHIFT = 48


@dataclass(frozen=True, kw_only=True)
class DifficultyParams:
    """Network parameters of the difficulty rule.

    ``dev_min_difficulty`` enables the development-chain escape (see ``required_target``); it
    must stay ``False`` on any network whose blocks carry value.
    """

    target_block_time: int
    halflife: int
    max_target: int = MAX_TARGET
    dev_min_difficulty: bool = False

    def __post_init__(self) -> None:
        # A zero or negative block time or halflife makes the exponent meaningless.
        if self.target_block_time <= 0:
            raise ValueError("target_block_time must be positive")
        if self.halflife <= 0:
            raise ValueError("halflife must be positive")
        # The ceiling must itself be a valid target.
        if not 1 <= self.max_target <= MAX_TARGET:
            raise ValueError("max_target must lie in [1, 2**256 - 1]")


def chain_difficulty(params: ChainParams) -> DifficultyParams:
    """The difficulty parameters of a network, from its chain parameters."""
    return DifficultyParams(
        target_block_time=params.target_block_time,
        halflife=params.asert_halflife,
        dev_min_difficulty=params.min_difficulty,
    )


@dataclass(frozen=True, kw_only=True)
class Anchor:
    """The reference point of ASERT: a block's height, its parent's time and its target.

    For a chain anchored at genesis use ``height=0``, ``target=genesis_target`` and
    ``parent_time=genesis_time - target_block_time`` (genesis has no parent; this makes a
    chain on schedule keep the genesis target).
    """

    height: int
    parent_time: int
    target: int


def _trunc_div(numerator: int, denominator: int) -> int:
    """Integer division rounding toward zero, as C/C++ signed division does."""
    assert denominator > 0
    quotient = abs(numerator) // denominator
    return quotient if numerator >= 0 else -quotient


def pow2_fixed(exponent: int) -> tuple[int, int]:
    """Split ``2 ** (exponent / RADIX)`` into ``(shifts, factor)``.

    The value is ``factor * 2**shifts / RADIX`` with ``RADIX <= factor < 2 * RADIX``; ``factor``
    uses the cubic approximation of the fractional power of two.
    """
    # Arithmetic shift: floors, so the fraction is always in [0, RADIX).
    shifts = exponent >> RADIX_BITS
    frac = exponent - (shifts << RADIX_BITS)
    poly = _C1 * frac + _C2 * frac * frac + _C3 * frac * frac * frac + (1 << (_POLY_SHIFT - 1))
    factor = (poly >> _POLY_SHIFT) + RADIX
    return shifts, factor


def asert_exponent(*, params: DifficultyParams, anchor: Anchor, parent_height: int,
                   parent_time: int) -> int:
    """The ASERT exponent in units of 1/RADIX: ``(dt - T*(dh+1)) * RADIX / halflife``."""
    time_delta = parent_time - anchor.parent_time
    height_delta = parent_height - anchor.height
    schedule_error = time_delta - params.target_block_time * (height_delta + 1)
    return _trunc_div(schedule_error * RADIX, params.halflife)


def asert_target(*, params: DifficultyParams, anchor: Anchor, parent_height: int,
                 parent_time: int) -> int:
    """The ASERT target of the block that follows ``parent``, clamped to [1, max_target]."""
    # The anchor must precede the block being computed.
    if parent_height < anchor.height:
        raise ValueError("parent is below the anchor")
    # The anchor's own target must be valid, or the result is meaningless.
    if not 1 <= anchor.target <= params.max_target:
        raise ValueError("anchor target out of range")
    exponent = asert_exponent(params=params, anchor=anchor, parent_height=parent_height,
                              parent_time=parent_time)
    shifts, factor = pow2_fixed(exponent)
    target = anchor.target * factor
    target = target << shifts if shifts >= 0 else target >> -shifts
    target >>= RADIX_BITS
    # Clamp: a zero target would be unsatisfiable, one above the ceiling is not a target.
    return max(1, min(target, params.max_target))


def dev_escape_applies(*, params: DifficultyParams, parent_time: int, block_time: int) -> bool:
    """Whether the development-chain minimum-difficulty escape applies to a block.

    Rule: on a chain with ``dev_min_difficulty`` enabled, a block whose timestamp is more than
    ``2 * target_block_time`` after its parent's may use ``max_target``. The escape does not
    feed back into later targets (ASERT only reads the anchor and the parent's height and
    time), and an escape block has work 1, so a chain of escape blocks never outweighs a chain
    of real work. It cannot be abused on the real network because the flag is off there: the
    rule is then simply absent.
    """
    return params.dev_min_difficulty and block_time > parent_time + 2 * params.target_block_time


def required_target(*, params: DifficultyParams, anchor: Anchor, parent_height: int,
                    parent_time: int, block_time: int) -> int:
    """The target a block at ``parent_height + 1`` with timestamp ``block_time`` must meet."""
    if dev_escape_applies(params=params, parent_time=parent_time, block_time=block_time):
        return params.max_target
    return asert_target(params=params, anchor=anchor, parent_height=parent_height,
                        parent_time=parent_time)


def block_work(target: int) -> int:
    """Expected number of tickets to meet ``target``: ``2**256 // (target + 1)``."""
    # A target outside [1, MAX_TARGET] is never valid, so its work is not defined.
    if not 1 <= target <= MAX_TARGET:
        raise ValueError("target out of range")
    return (1 << 256) // (target + 1)
