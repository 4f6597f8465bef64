"""The runtime's int8 products as mining work, without torch: `mining_hook` pads each product
to the shapes pouw accepts and mines it through a session, and `mined_weight_roots` names the
weight roots such blocks carry. The models (torch) and the node (which must start without
torch, issue 12) both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np

from pouw.merkle import matrix_root
from pouw.params import MN_MAX, R_MAX, R_MIN, TILE_H, TILE_W

#: matmul_hook(a, b): exact product of int8 operands a (m x k) and b (k x n), any int dtype.
MatmulHook = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


class _Product(Protocol):
    @property
    def product(self) -> np.ndarray: ...


class ProductMiner(Protocol):
    """What mines a product: a `MiningSession` (its `MiningResult`), or a mining node's
    miner (node.swarm.service.MinedProducts)."""

    @property
    def r(self) -> int | None: ...

    def mine(self, a: np.ndarray, b: np.ndarray) -> _Product: ...


def padded_weight(b: np.ndarray, r: int) -> np.ndarray:
    """B (k x n) zero-padded to the shape `mining_hook` mines: k up to a multiple of r (at
    least r), n up to a multiple of TILE_W."""
    k, n = b.shape
    bp = np.zeros((max(_round_up(k, r), r), _round_up(n, TILE_W)), dtype=np.int8)
    bp[:k, :n] = b
    return bp


def mined_weight_roots(weights: Iterable[np.ndarray]) -> frozenset[bytes]:
    """The ``root_b`` a block header carries when `mining_hook` mines a product whose B is
    one of ``weights``, for every chunk size r pouw allows (the padding depends on r): an
    explorer marks such a block as inference work (docs/explorer.md)."""
    roots: set[bytes] = set()
    for weight in weights:
        shapes: set[tuple[int, ...]] = set()
        r = R_MIN
        while r <= R_MAX:
            bp = padded_weight(weight, r)
            if bp.shape not in shapes:
                shapes.add(bp.shape)
                roots.add(matrix_root(np.ascontiguousarray(bp.T))[0])  # B's columns
            r *= 2
    return frozenset(roots)


def mining_hook(session: ProductMiner) -> MatmulHook:
    """A matmul hook that mines every product through `session`.

    pouw needs m a multiple of 8, n of 4 and k a multiple of r (a power of two >= 16), so
    operands are zero-padded (zeros leave the product unchanged) and the result cropped.
    Row blocks beyond pouw's m bound are mined as separate jobs.
    """
    r = session.r or R_MIN

    def hook(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        m, k = a.shape
        n = b.shape[1]
        bp = padded_weight(b, r)
        kp = bp.shape[0]
        out = np.empty((m, n), dtype=np.int64)
        step = MN_MAX
        for lo in range(0, m, step):
            hi = min(m, lo + step)
            mp = _round_up(hi - lo, TILE_H)
            ap = np.zeros((mp, kp), dtype=np.int8)
            ap[:hi - lo, :k] = a[lo:hi]
            out[lo:hi] = session.mine(ap, bp).product[:hi - lo, :n]
        return out

    return hook
