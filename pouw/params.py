"""Protocol constants and job parameters of the PoUW scheme (see docs/pouw.md)."""

from __future__ import annotations

from dataclasses import dataclass

from pouw.errors import ParamsError

SCHEME_VERSION = 1

#: Operand entries lie in [VALUE_MIN, VALUE_MAX] (int7); after adding noise in [-64, 64]
#: every noisy entry lies in [-128, 127] and is stored as int8.
VALUE_MIN = -64
VALUE_MAX = 63

#: Output tile of one ticket: TILE_H rows of A by TILE_W columns of B.
TILE_H = 8
TILE_W = 4

#: Chunk size r (also the noise rank) is a power of two in this range. R_MAX bounds what a
#: verifier draws whatever the chunk: one 64-row block each of E_L and F_R (2·NOISE_BLOCK·r
#: XOF bytes) and the r-wide noisy rows. At r = 1024 the worst case took 1.33 ms on the Zen 2
#: (over issue 16's 1 ms, at any chunk); at 256 it is 0.86 ms. No producer picks more than 64
#: (default_r, contracts.jobs.padded_shape), so lowering it from 1024 refused nothing in use.
R_MIN = 16
R_MAX = 256

#: Largest chunk size chosen by default_r (callers that name no r: the library, the bench).
#: At 64, mining a real product costs at most 10 % more than mining junk at 4096³ (the
#: denoising, 2·L·r/k = 9.4 % with L = 3; 25 % at r = 256, docs/pouw.md §8), and the fused
#: kernel met both overhead goals at r = 64 on the Zen 2 (1.30× at 4096³, 0.98× at
#: 2048×4096², §11), where r = 128 was within the noise of it. On-chain matmul jobs take
#: their r from contracts.jobs.padded_shape (at least 64 chunks: the same bound).
DEFAULT_R_MAX = 64

#: Shape bounds. K_MAX bounds what one certificate carries (12·k operand bytes: <= 64 KiB) and
#: what its verification replays (2·5·k XOF bytes and 12·k hashed bytes at the last chunk:
#: worst case about half a millisecond, docs/pouw.md §9, §11), and keeps every int32
#: accumulator exact. A larger product is split along k: C = Σ_i A[:, K_i]·B[K_i, :].
K_MAX = 4096
MN_MAX = 65536

#: Most chunks per job (k/r). A verifier regenerates the noise of, and replays, every chunk up
#: to the certificate's: this bounds its per-chunk steps (K_MAX bounds its bytes).
MAX_CHUNKS = 128

#: Rows of E_L (and columns of F_R) expanded from one XOF call.
NOISE_BLOCK = 64

#: Top bits of a ticket that come from the vectorised tile mixer (the rest from BLAKE2b).
PREFILTER_BITS = 16

MAX_TARGET = 2**256 - 1


def _is_power_of_two(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


@dataclass(frozen=True)
class PouwParams:
    """Shape of one mined product C = A·B with A m×k, B k×n, in chunks of r along k."""

    m: int
    k: int
    n: int
    r: int

    def validate(self) -> None:
        """Raise ParamsError unless every bound in docs/pouw.md holds."""
        for name in ("m", "k", "n", "r"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ParamsError(f"{name} must be an int, got {type(value).__name__}")
        if not _is_power_of_two(self.r) or not R_MIN <= self.r <= R_MAX:
            raise ParamsError(f"r={self.r} must be a power of two in [{R_MIN}, {R_MAX}]")
        if self.k > K_MAX:
            raise ParamsError(f"k={self.k} > K_MAX={K_MAX}: split the product along k")
        if not 0 < self.k or self.k % self.r:
            raise ParamsError(f"k={self.k} must be a positive multiple of r={self.r}, <= {K_MAX}")
        if self.k // self.r > MAX_CHUNKS:
            raise ParamsError(f"k/r={self.k // self.r} chunks, at most {MAX_CHUNKS}: "
                              f"choose r >= {self.k // MAX_CHUNKS}")
        if not 0 < self.m <= MN_MAX or self.m % TILE_H:
            raise ParamsError(f"m={self.m} must be a positive multiple of {TILE_H}, <= {MN_MAX}")
        if not 0 < self.n <= MN_MAX or self.n % TILE_W:
            raise ParamsError(f"n={self.n} must be a positive multiple of {TILE_W}, <= {MN_MAX}")

    @property
    def chunks(self) -> int:
        """Number of r-chunks along k: tickets per tile."""
        return self.k // self.r

    @property
    def tile_rows(self) -> int:
        return self.m // TILE_H

    @property
    def tile_cols(self) -> int:
        return self.n // TILE_W

    @property
    def ticket_weight(self) -> int:
        """Multiply-accumulates one ticket stands for: one tile over one chunk."""
        return TILE_H * TILE_W * self.r

    @property
    def tickets(self) -> int:
        """Tickets the whole product yields."""
        return self.tile_rows * self.tile_cols * self.chunks

    def to_bytes(self) -> bytes:
        """Fixed-width encoding bound into the seed."""
        fields = (SCHEME_VERSION, self.m, self.k, self.n, self.r)
        return b"".join(v.to_bytes(4, "big") for v in fields)


def default_r(k: int) -> int:
    """Chunk size when the caller does not choose: the largest power of two up to
    DEFAULT_R_MAX (64) that divides k. Fewer chunks mean fewer fold passes, larger r more
    denoising work, which junk mining skips: 64 bounds that margin (docs/pouw.md §8, §11)."""
    r = DEFAULT_R_MAX
    while r > R_MIN and k % r:
        r //= 2
    return r


def win_bound(target: int, params: PouwParams) -> int:
    """A ticket wins when its 256-bit value is at most target × ticket weight (capped)."""
    return min(target * params.ticket_weight, MAX_TARGET)


def work_of_target(target: int) -> int:
    """Expected multiply-accumulates to find one winning ticket at this target."""
    return 2**256 // (target + 1)
