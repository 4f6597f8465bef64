"""Transcript tickets: per tile and per chunk, from the exact int32 accumulator.

After chunk ℓ a tile's h×w partial sums (two's complement bits) are XOR-folded into one
32-bit word; the tile state is chained through a keyed 64-bit mixer; the ticket is the
256-bit value (state's top PREFILTER_BITS bits ‖ BLAKE2b tail). Only tickets whose top
bits tie the bound need the BLAKE2b tail, so tickets are evaluated vectorised.
"""

from __future__ import annotations

import numpy as np

from pouw.hashing import tagged_hash
from pouw.params import PREFILTER_BITS, TILE_H, TILE_W

_K_ROW = np.uint64(0x9E3779B97F4A7C15)
_K_COL = np.uint64(0xC2B2AE3D27D4EB4F)
#: The state chain's odd multiplier: s_c = (s_{c-1} XOR fold_c) · CHUNK_MULTIPLIER mod 2^64.
CHUNK_MULTIPLIER = 0x165667B19E3779F9
_K_CHUNK = np.uint64(CHUNK_MULTIPLIER)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_TAIL_BITS = 256 - PREFILTER_BITS


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: a bijection with full avalanche (uint64, wrapping)."""
    x = x ^ (x >> _S33)
    x = x * _M1
    x = x ^ (x >> _S33)
    x = x * _M2
    out: np.ndarray = x ^ (x >> _S33)
    return out


def ticket_keys(seed: bytes) -> tuple[int, bytes]:
    """(64-bit mixer key, 32-byte BLAKE2b key), both secret until the seed exists."""
    mixer = tagged_hash(b"pouw.mixkey", seed)
    return int.from_bytes(mixer[:8], "big"), tagged_hash(b"pouw.tickkey", seed)


def initial_states(mixer_key: int, tile_rows: np.ndarray, tile_cols: np.ndarray) -> np.ndarray:
    """State of every tile before chunk 0; tile_rows/tile_cols broadcast together."""
    with np.errstate(over="ignore"):
        x = (
            np.uint64(mixer_key)
            ^ (tile_rows.astype(np.uint64) * _K_ROW)
            ^ (tile_cols.astype(np.uint64) * _K_COL)
        )
        return fmix64(x)


def advance_states(states: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Chain one chunk's 32-bit folds into the tile states: s = (s XOR fold) * K mod 2^64.

    Multiplying by an odd constant is a bijection whose top bits depend on every input
    bit, so the prefilter bits need the exact fold; it costs two vector ops per tile.
    """
    with np.errstate(over="ignore"):
        x: np.ndarray = np.bitwise_xor(states, folds.astype(np.uint64))
        np.multiply(x, _K_CHUNK, out=x)
        return x


def fold_tiles(acc: np.ndarray) -> np.ndarray:
    """XOR of each TILE_H×TILE_W tile of an int32 (rows×cols) accumulator → uint32."""
    rows, cols = acc.shape
    bits = np.ascontiguousarray(acc).view(np.uint32)
    x = bits.reshape(rows // TILE_H, TILE_H, cols // TILE_W, TILE_W)
    y = x[:, 0:4] ^ x[:, 4:8]
    y = y[:, 0:2] ^ y[:, 2:4]
    y = y[:, 0] ^ y[:, 1]
    y = y[..., 0:2] ^ y[..., 2:4]
    return np.ascontiguousarray(y[..., 0] ^ y[..., 1])


def ticket_value(hash_key: bytes, *, tile_row: int, tile_col: int, chunk: int, state: int) -> int:
    """The 256-bit ticket: the state's top bits, then a BLAKE2b tail over its identity."""
    tail = tagged_hash(
        b"pouw.ticket.v1",
        tile_row.to_bytes(4, "big"),
        tile_col.to_bytes(4, "big"),
        chunk.to_bytes(4, "big"),
        state.to_bytes(8, "big"),
        key=hash_key,
    )
    top = state >> (64 - PREFILTER_BITS)
    return (top << _TAIL_BITS) | (int.from_bytes(tail, "big") >> PREFILTER_BITS)


def candidate_mask(states: np.ndarray, bound: int) -> np.ndarray:
    """Tiles whose ticket may be <= bound: top bits at most the bound's top bits."""
    bound_top = bound >> _TAIL_BITS
    limit = ((bound_top + 1) << (64 - PREFILTER_BITS)) - 1
    return states <= np.uint64(limit)
