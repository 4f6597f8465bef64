"""Shared fixtures for the PoUW tests."""

from __future__ import annotations

import numpy as np
import pytest

from pouw import MAX_TARGET, Certificate, mine_product

COMMITMENT = bytes(range(32))


def random_operands(m: int, k: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(-64, 64, (m, k), dtype=np.int8),
            rng.integers(-64, 64, (k, n), dtype=np.int8))


@pytest.fixture(scope="session")
def honest_certificate() -> Certificate:
    """A certificate from a 64×256×32 job at a moderate target (chunk > 0 somewhere)."""
    a, b = random_operands(64, 256, 32, seed=3)
    result = mine_product(a, b, commitment=COMMITMENT, target=MAX_TARGET >> 18, r=32,
                          backend="numpy")
    assert result.certificates, "expected a win at this target"
    return result.certificates[0]
