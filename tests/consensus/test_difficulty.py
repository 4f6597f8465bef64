"""Tests of the integer ASERT difficulty rule."""

from __future__ import annotations

import ast
import inspect
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import difficulty
from consensus.difficulty import (
    MAX_TARGET,
    RADIX,
    Anchor,
    DifficultyParams,
    asert_exponent,
    asert_target,
    block_work,
    dev_escape_applies,
    pow2_fixed,
    required_target,
)

T = 600
HALFLIFE = 172_800
PARAMS = DifficultyParams(target_block_time=T, halflife=HALFLIFE)
DEV = DifficultyParams(target_block_time=T, halflife=HALFLIFE, dev_min_difficulty=True)
ANCHOR_TARGET = 2**224 - 1
# Anchor at height 0 whose parent is at -T: a block every T seconds keeps the target.
ANCHOR = Anchor(height=0, parent_time=-T, target=ANCHOR_TARGET)


def target_at(parent_height: int, parent_time: int, *, params: DifficultyParams = PARAMS,
              anchor: Anchor = ANCHOR) -> int:
    return asert_target(params=params, anchor=anchor, parent_height=parent_height,
                        parent_time=parent_time)


def on_schedule(height: int) -> int:
    """Timestamp of the block at ``height`` on a chain exactly on schedule."""
    return height * T


def test_on_schedule_keeps_anchor_target() -> None:
    for height in (0, 1, 10, 1000, 100_000):
        assert target_at(height, on_schedule(height)) == ANCHOR_TARGET


def test_whole_halflives_are_exact_powers_of_two() -> None:
    for k in range(1, 8):
        assert target_at(5, on_schedule(5) + k * HALFLIFE) == ANCHOR_TARGET << k
        assert target_at(5, on_schedule(5) - k * HALFLIFE) == ANCHOR_TARGET >> k


def test_known_values() -> None:
    # Computed once with this implementation and checked against 2**x within 0.013 %.
    # The factor is 2**x in 16-bit fixed point: 0x1009E = 65694 for x = 227/65536.
    assert target_at(0, T) == (ANCHOR_TARGET * 0x1009E) >> 16
    # x = 1/2: 0x16A02 = 92674 (2**0.5 * 65536 = 92681.9).
    assert target_at(0, HALFLIFE // 2) == (ANCHOR_TARGET * 0x16A02) >> 16
    # x = -1/2: one shift right of the same factor.
    assert target_at(0, -HALFLIFE // 2) == (ANCHOR_TARGET * 0x16A02) >> 17
    half = target_at(0, HALFLIFE // 2)
    assert abs(half / (ANCHOR_TARGET * math.sqrt(2)) - 1) < 1.3e-4


def test_exponent_truncates_toward_zero() -> None:
    # One second early: -65536/172800 = -0.379..., which C++ truncates to 0 (floor gives -1).
    assert asert_exponent(params=PARAMS, anchor=ANCHOR, parent_height=3,
                          parent_time=on_schedule(3) - 1) == 0
    assert target_at(3, on_schedule(3) - 1) == ANCHOR_TARGET
    # Three seconds late: 196608/172800 = 1.13..., truncated to 1.
    assert asert_exponent(params=PARAMS, anchor=ANCHOR, parent_height=3,
                          parent_time=on_schedule(3) + 3) == 1
    # Three seconds early: symmetric, -1.
    assert asert_exponent(params=PARAMS, anchor=ANCHOR, parent_height=3,
                          parent_time=on_schedule(3) - 3) == -1


def test_clamps_to_one_and_max_target() -> None:
    assert target_at(0, 10**9) == MAX_TARGET
    assert target_at(0, -(10**9)) == 1
    capped = DifficultyParams(target_block_time=T, halflife=HALFLIFE, max_target=2**230)
    assert target_at(0, 10**9, params=capped) == 2**230


def test_pow2_fixed_factor_range_and_accuracy() -> None:
    for frac in range(0, RADIX, 97):
        shifts, factor = pow2_fixed(frac)
        assert shifts == 0
        assert RADIX <= factor < 2 * RADIX
        exact = RADIX * 2 ** (frac / RADIX)
        assert abs(factor - exact) / exact < 1.3e-4
    assert pow2_fixed(-1)[0] == -1
    assert pow2_fixed(3 * RADIX) == (3, RADIX)


def test_parameter_validation() -> None:
    with pytest.raises(ValueError):
        DifficultyParams(target_block_time=0, halflife=HALFLIFE)
    with pytest.raises(ValueError):
        DifficultyParams(target_block_time=T, halflife=0)
    with pytest.raises(ValueError):
        DifficultyParams(target_block_time=T, halflife=HALFLIFE, max_target=2**256)
    with pytest.raises(ValueError):
        target_at(-1, 0)
    with pytest.raises(ValueError):
        target_at(0, 0, anchor=Anchor(height=0, parent_time=0, target=0))


def test_dev_escape_only_on_dev_chains() -> None:
    parent_time = 50 * T
    late = parent_time + 2 * T + 1
    just_in_time = parent_time + 2 * T
    assert dev_escape_applies(params=DEV, parent_time=parent_time, block_time=late)
    assert not dev_escape_applies(params=DEV, parent_time=parent_time, block_time=just_in_time)
    assert not dev_escape_applies(params=PARAMS, parent_time=parent_time, block_time=late)

    def required(params: DifficultyParams, block_time: int) -> int:
        return required_target(params=params, anchor=ANCHOR, parent_height=49,
                               parent_time=parent_time, block_time=block_time)

    assert required(DEV, late) == MAX_TARGET
    assert required(PARAMS, late) == target_at(49, parent_time)
    assert required(DEV, just_in_time) == target_at(49, parent_time, params=DEV)
    assert required(DEV, just_in_time) < MAX_TARGET
    # An escape block is worth (almost) nothing in the fork choice.
    assert block_work(MAX_TARGET) == 1


def test_block_work() -> None:
    assert block_work(2**255 - 1) == 2
    assert block_work(2**224 - 1) == 2**32
    assert block_work(1) == 2**255
    with pytest.raises(ValueError):
        block_work(0)
    with pytest.raises(ValueError):
        block_work(MAX_TARGET + 1)


def test_module_has_no_floats() -> None:
    tree = ast.parse(inspect.getsource(difficulty))
    for node in ast.walk(tree):
        # No float literals, no true division, no float() calls, no math module.
        assert not (isinstance(node, ast.Constant) and isinstance(node.value, float))
        assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div))
        assert not (isinstance(node, ast.Name) and node.id in {"float", "math"})


heights = st.integers(min_value=0, max_value=10**7)
offsets = st.integers(min_value=-(10**9), max_value=10**9)
targets = st.integers(min_value=1, max_value=MAX_TARGET)


@settings(max_examples=300)
@given(height=heights, offset=offsets, delta=st.integers(min_value=0, max_value=10**6),
       target=targets)
def test_slower_blocks_give_easier_targets(height: int, offset: int, delta: int,
                                           target: int) -> None:
    anchor = Anchor(height=0, parent_time=-T, target=target)
    t = on_schedule(height) + offset
    early = target_at(height, t, anchor=anchor)
    late = target_at(height, t + delta, anchor=anchor)
    assert 1 <= early <= late <= MAX_TARGET
    # More blocks in the same time: harder (or equal).
    assert target_at(height + 1, t, anchor=anchor) <= early


@settings(max_examples=300)
@given(height=heights, offset=st.integers(min_value=0, max_value=20 * HALFLIFE))
def test_ahead_and_behind_are_symmetric(height: int, offset: int) -> None:
    # Ahead by x and behind by x multiply to the square of the anchor (up to approximation).
    anchor = Anchor(height=0, parent_time=-T, target=2**128)
    slow = target_at(height, on_schedule(height) + offset, anchor=anchor)
    fast = target_at(height, on_schedule(height) - offset, anchor=anchor)
    ratio = (slow * fast) / (anchor.target * anchor.target)
    assert abs(ratio - 1) < 4e-4
    # Exponents are exactly opposite thanks to truncation toward zero.
    e_slow = asert_exponent(params=PARAMS, anchor=anchor, parent_height=height,
                            parent_time=on_schedule(height) + offset)
    e_fast = asert_exponent(params=PARAMS, anchor=anchor, parent_height=height,
                            parent_time=on_schedule(height) - offset)
    assert e_slow == -e_fast


@settings(max_examples=300)
@given(height=heights, offset=st.integers(min_value=-40 * HALFLIFE, max_value=40 * HALFLIFE))
def test_matches_real_power_of_two(height: int, offset: int) -> None:
    anchor = Anchor(height=0, parent_time=-T, target=2**200)
    got = target_at(height, on_schedule(height) + offset, anchor=anchor)
    exponent = asert_exponent(params=PARAMS, anchor=anchor, parent_height=height,
                              parent_time=on_schedule(height) + offset)
    expected = 2 ** (200 + exponent / RADIX)
    assert abs(got / expected - 1) < 1.3e-4
    assert isinstance(got, int)
