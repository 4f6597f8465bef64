"""Merkle commitments to the rows of A and the columns of B.

Leaves are whole rows (int8 bytes), so a certificate opens a tile's rows with one
path from the aligned block's subtree root: log2(rows / block) siblings.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pouw.hashing import tagged_hash

_LEAF = b"\x00"
_NODE = b"\x01"
EMPTY_LEAF = hashlib.sha256(b"\x02pouw-empty-leaf").digest()


def _hash_rows(rows: np.ndarray) -> list[bytes]:
    sha = hashlib.sha256
    return [sha(_LEAF + row.tobytes()).digest() for row in rows]


def leaf_hashes(rows: np.ndarray) -> list[bytes]:
    """SHA-256 of every row; two threads, since hashlib releases the GIL on large rows."""
    if rows.ndim != 2:
        raise ValueError("rows must be a 2-D array")
    count = rows.shape[0]
    if count < 64 or rows.shape[1] < 2048:
        return _hash_rows(rows)
    half = count // 2
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(_hash_rows, (rows[:half], rows[half:]))
    return first + second


def _parent(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def build_levels(leaves: list[bytes]) -> list[list[bytes]]:
    """All levels of the tree, leaves first, padded to a power of two with EMPTY_LEAF."""
    size = 1
    while size < len(leaves):
        size *= 2
    level = leaves + [EMPTY_LEAF] * (size - len(leaves))
    levels = [level]
    while len(level) > 1:
        level = [_parent(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        levels.append(level)
    return levels


def bind_root(tree_root: bytes, *, rows: int, row_len: int) -> bytes:
    """The committed root also fixes the matrix shape."""
    return tagged_hash(
        b"pouw.root.v1", rows.to_bytes(4, "big"), row_len.to_bytes(4, "big"), tree_root
    )


def matrix_root(rows: np.ndarray) -> tuple[bytes, list[list[bytes]]]:
    """(bound root, tree levels) for the rows of a 2-D int8 array."""
    levels = build_levels(leaf_hashes(rows))
    return bind_root(levels[-1][0], rows=rows.shape[0], row_len=rows.shape[1]), levels


def block_path(levels: list[list[bytes]], *, block: int, block_size: int) -> list[bytes]:
    """Siblings from the aligned block's subtree root up to the tree root."""
    depth = block_size.bit_length() - 1
    path = []
    index = block
    for level in levels[depth:-1]:
        path.append(level[index ^ 1])
        index //= 2
    return path


def root_from_block(
    leaves: list[bytes], *, block: int, path: list[bytes], total_rows: int
) -> bytes:
    """Recompute the tree root from an aligned block of leaf hashes and its path.

    Raises ValueError if the path length does not match the tree for `total_rows`.
    """
    block_size = len(leaves)
    size = 1
    while size < total_rows:
        size *= 2
    size = max(size, block_size)
    expected = (size // block_size).bit_length() - 1
    if len(path) != expected:
        raise ValueError(f"Merkle path has {len(path)} nodes, expected {expected}")
    first = block * block_size
    level = [
        leaf if first + i < total_rows else EMPTY_LEAF for i, leaf in enumerate(leaves)
    ]
    while len(level) > 1:
        level = [_parent(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    node = level[0]
    index = block
    for sibling in path:
        node = _parent(sibling, node) if index & 1 else _parent(node, sibling)
        index //= 2
    return node
