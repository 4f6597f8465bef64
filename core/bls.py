"""BLS12-381 signatures for finality votes: the IETF proof-of-possession scheme.

Two backends with one API (core.bls_base.BlsBackend) and one meaning: blspy (C++,
core.bls_blspy, ~1 ms for a 64-key FastAggregateVerify) and py-ecc (pure Python,
core.bls_pyecc, ~1.3 s: the reference and the test oracle; docs/finality.md). `BACKEND` is
the one consensus uses: blspy where it imports, else py-ecc. py-ecc's module is imported only
in that case: it costs 0.3 s at start on a quiet machine and 2.3 s under load (issue 12).
A test signs, aggregates and verifies random and hostile cases with both and asserts
byte-identical signatures and equal verdicts (tests/core/test_bls.py).
"""

from __future__ import annotations

from typing import Any

from core.bls_base import (
    CURVE_ORDER,
    PUBKEY_BYTES,
    SECRET_BYTES,
    SIGNATURE_BYTES,
    BlsBackend,
    derive_secret,
)
from core.bls_blspy import BLSPY

BACKEND: BlsBackend[Any]
if BLSPY is not None:
    BACKEND = BLSPY
else:  # pragma: no cover - where blspy is not installed: the pure-Python reference
    from core.bls_pyecc import PY_ECC

    BACKEND = PY_ECC

__all__ = ["BACKEND", "BLSPY", "CURVE_ORDER", "PUBKEY_BYTES", "SECRET_BYTES", "SIGNATURE_BYTES",
           "BlsBackend", "derive_secret"]
