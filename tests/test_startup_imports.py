"""A node, and the CLI, start without torch or py-ecc unless they run something that needs
them (issue 12: torch costs 1 s to import on a quiet machine and 5-7 s under load, py-ecc
0.3-2.3 s, at every node start and every CLI call).

Each check runs in a fresh interpreter and reads its ``sys.modules``; the controls show the
same check does see torch and py-ecc when a backend that needs them is selected.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.bls import BLSPY
from tests.framework.util import ROOT

pytestmark = pytest.mark.slow  # fresh interpreters

HEAVY = ("torch", "py_ecc")


def heavy_modules_after(code: str) -> set[str]:
    """Which of HEAVY a fresh interpreter has imported after running ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", ["node.builder", "node.cli.main", "node.cli.__main__",
                                    "testnet.cli", "consensus.finality"])
def test_the_node_and_the_cli_import_neither_torch_nor_py_ecc(module: str) -> None:
    expected = set() if BLSPY is not None else {"py_ecc"}  # py-ecc is the fallback
    assert heavy_modules_after(f"import {module}") == expected


def test_mining_verifying_and_signing_need_neither() -> None:
    """The default backend (the native kernel where it built, else numpy) mines and verifies
    a certificate, and the BLS backend signs and verifies, all without torch."""
    code = """
import numpy as np
from core.bls import BACKEND, derive_secret
from pouw import MAX_TARGET, get_backend, mine_product, verify_certificate
rng = np.random.default_rng(7)
a = rng.integers(-64, 64, (64, 256), dtype=np.int8)
b = rng.integers(-64, 64, (256, 64), dtype=np.int8)
result = mine_product(a, b, commitment=bytes(32), target=MAX_TARGET, backend="auto")
assert np.array_equal(result.product, a.astype(np.int64) @ b.astype(np.int64))
assert result.wins and not result.backend.startswith("torch")
verify_certificate(result.wins[0].certificate, commitment=bytes(32), target=MAX_TARGET)
secret = derive_secret(bytes(range(32)))
pubkey = BACKEND.secret_to_pubkey(secret)
assert BACKEND.verify(pubkey, b"m" * 32, BACKEND.sign(secret, b"m" * 32))
"""
    expected = set() if BLSPY is not None else {"py_ecc"}
    assert heavy_modules_after(code) == expected


@pytest.mark.parametrize(("code", "module"), [
    ("from pouw import get_backend; get_backend('torch-cpu')", "torch"),
    ("from swarm.runtime.factory import make_backend; make_backend('builtin:arith-xs')",
     "torch"),
    ("import core.bls_pyecc", "py_ecc"),
])
def test_the_check_sees_them_when_selected(code: str, module: str) -> None:
    """Controls: a torch backend, a model and the py-ecc reference do import them."""
    assert module in heavy_modules_after(code)
