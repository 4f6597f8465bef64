"""Generate the golden PoUW test vectors (run from the repo root; output is committed).

Operands come from a documented byte stream (SHAKE-256 of a label), so another
implementation can rebuild them without numpy's RNG:
    entry = (byte & 0x7F) - 64, row-major, A first (m·k bytes) then B (k·n bytes).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from pouw import MAX_TARGET, mine_product
from pouw.hashing import derive_seed
from pouw.params import PouwParams

HERE = Path(__file__).parent
CASES = [
    # name, m, k, n, r, target
    ("tiny-every-ticket-wins", 8, 64, 8, 16, MAX_TARGET),
    ("small-r32", 16, 128, 12, 32, MAX_TARGET >> 6),
    ("medium-r64", 64, 512, 32, 64, MAX_TARGET >> 12),
    ("extreme-values", 24, 256, 16, 32, MAX_TARGET >> 8),
]


def operands(name: str, m: int, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The documented operand stream; 'extreme-values' uses only -64 and 63."""
    raw = np.frombuffer(hashlib.shake_256(name.encode()).digest(m * k + k * n), dtype=np.uint8)
    if name == "extreme-values":
        values = np.where(raw & 1, 63, -64).astype(np.int8)
    else:
        values = ((raw & 0x7F).astype(np.int16) - 64).astype(np.int8)
    return values[: m * k].reshape(m, k), values[m * k :].reshape(k, n)


def commitment_of(name: str) -> bytes:
    return hashlib.sha256(b"pouw-vector:" + name.encode()).digest()


def build(
    name: str, m: int, k: int, n: int, r: int, target: int, backend: str
) -> dict[str, object]:
    a, b = operands(name, m, k, n)
    commitment = commitment_of(name)
    result = mine_product(a, b, commitment=commitment, target=target, r=r, backend=backend,
                          max_wins=4)
    params = PouwParams(m=m, k=k, n=n, r=r)
    seed = derive_seed(commitment=commitment, params_bytes=params.to_bytes(),
                       root_a=result.root_a, root_b=result.root_b)
    return {
        "name": name,
        "m": m, "k": k, "n": n, "r": r,
        "target": hex(target),
        "commitment": commitment.hex(),
        "root_a": result.root_a.hex(),
        "root_b": result.root_b.hex(),
        "seed": seed.hex(),
        "product_sha256": hashlib.sha256(result.product.astype("<i4").tobytes()).hexdigest(),
        "tickets_evaluated": result.tickets_evaluated,
        "wins": [
            {"value": hex(w.value), "tile_row": w.certificate.tile_row,
             "tile_col": w.certificate.tile_col, "chunk": w.certificate.chunk,
             "certificate": w.certificate.encode().hex()}
            for w in result.wins
        ],
    }


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "numpy"
    for case in CASES:
        vector = build(*case, backend=backend)
        (HERE / f"{case[0]}.json").write_text(json.dumps(vector, indent=1) + "\n")
        print(f"wrote {case[0]}.json ({len(vector['wins'])} wins)")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
