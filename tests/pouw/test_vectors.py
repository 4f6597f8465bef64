"""Golden vectors (tests/vectors/pouw/*.json): every backend must reproduce them exactly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pouw import Certificate, available_backends, mine_product, verify_certificate
from tests.framework.util import load_script

VECTORS = Path(__file__).parent.parent / "vectors" / "pouw"
generate = load_script(VECTORS / "generate.py", "pouw_vectors")


def _vectors() -> list[dict[str, Any]]:
    files = sorted(VECTORS.glob("*.json"))
    assert len(files) >= 4
    return [json.loads(f.read_text()) for f in files]


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_backend_reproduces_vector(backend: str, vector: dict[str, Any]) -> None:
    a, b = generate.operands(vector["name"], vector["m"], vector["k"], vector["n"])
    commitment = bytes.fromhex(vector["commitment"])
    target = int(vector["target"], 16)
    result = mine_product(a, b, commitment=commitment, target=target, r=vector["r"],
                          backend=backend, max_wins=len(vector["wins"]))
    assert result.root_a.hex() == vector["root_a"]
    assert result.root_b.hex() == vector["root_b"]
    product_hash = hashlib.sha256(result.product.astype("<i4").tobytes()).hexdigest()
    assert product_hash == vector["product_sha256"]
    assert [w.certificate.encode().hex() for w in result.wins] == [
        w["certificate"] for w in vector["wins"]
    ]
    assert [hex(w.value) for w in result.wins] == [w["value"] for w in vector["wins"]]


@pytest.mark.parametrize("vector", _vectors(), ids=lambda v: v["name"])
def test_vector_certificates_verify(vector: dict[str, Any]) -> None:
    for win in vector["wins"]:
        cert = Certificate.decode(bytes.fromhex(win["certificate"]))
        value = verify_certificate(cert, commitment=bytes.fromhex(vector["commitment"]),
                                   target=int(vector["target"], 16))
        assert hex(value) == win["value"]
