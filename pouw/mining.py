"""Mining: exact products of caller-supplied matmul jobs, with winning tickets on the way.

A session holds one commitment (the consensus layer passes the hash of the header being
mined). Each job returns its exact product; winning tickets are reported through a
callback as soon as their chunk is done. set_commitment() switches to a new tip: the
running job still finishes its product (the work is useful) but stops reporting tickets
for the stale commitment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from pouw import native
from pouw.backends import Backend, NativeBackend, get_backend
from pouw.certificate import Certificate
from pouw.errors import OperandError
from pouw.hashing import derive_seed
from pouw.merkle import block_path, matrix_root
from pouw.noise import (
    LIMB_BASE,
    NoiseFactors,
    denoise_operands,
    left_wide_factor,
    noise_factors,
    noisy_left,
    noisy_right,
    right_wide_factor,
)
from pouw.params import (
    MAX_TARGET,
    TILE_H,
    TILE_W,
    VALUE_MAX,
    VALUE_MIN,
    PouwParams,
    default_r,
    win_bound,
)
from pouw.tickets import (
    advance_states,
    candidate_mask,
    initial_states,
    ticket_keys,
    ticket_value,
)

#: Accumulator panel size in bytes: large enough for efficient GEMMs, small enough to
#: keep the fold and denoise passes in cache (measured in bench/pouw_overhead.py).
PANEL_BYTES = 8 * 1024 * 1024

PHASES = ("commit", "noise", "product", "tickets", "denoise")


@dataclass(frozen=True)
class WinningTicket:
    """A ticket at or under target × weight, with the certificate that proves it."""

    value: int
    certificate: Certificate


@dataclass
class MiningResult:
    """One job's exact product and what mining it yielded."""

    product: np.ndarray  # int32 m×n, equal to the int64 reference A·B
    params: PouwParams
    commitment: bytes
    root_a: bytes
    root_b: bytes
    wins: list[WinningTicket]
    tickets_evaluated: int
    stale: bool
    backend: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def certificates(self) -> list[Certificate]:
        return [w.certificate for w in self.wins]


@dataclass(frozen=True)
class _TicketJob:
    """One job once its operands and commitment are fixed: what checking a chunk's tickets
    and certifying a winner need, so each chunk passes only what changes (its states)."""

    params: PouwParams
    commitment: bytes
    target: int
    bound: int  # win_bound(target, params): a ticket wins at or under it
    hash_key: bytes
    root_a: bytes
    root_b: bytes
    a8: np.ndarray  # A, int8 rows
    bt: np.ndarray  # B transposed: its columns as C-contiguous rows
    levels_a: list[list[bytes]]
    levels_b: list[list[bytes]]

    def winning_tickets(self, states: np.ndarray, *, chunk: int, row_tiles: np.ndarray,
                        limit: int) -> Iterator[WinningTicket]:
        """At most ``limit`` winning tickets among this chunk's tiles, in row-major order."""
        return islice(self._winners(states, chunk=chunk, row_tiles=row_tiles), limit)

    def _winners(self, states: np.ndarray, *, chunk: int,
                 row_tiles: np.ndarray) -> Iterator[WinningTicket]:
        """Every winner, lazily (the caller stops at its limit before more are certified)."""
        # the cheap state mask must admit the tile (it never drops a winner)
        mask = candidate_mask(states, self.bound)
        if not mask.any():
            return
        yield from self.winners_among(
            (int(row_tiles[i]), int(j), chunk, int(states[i, j])) for i, j in np.argwhere(mask))

    def winners_among(self, candidates: Iterable[tuple[int, int, int, int]]
                      ) -> Iterator[WinningTicket]:
        """The winners among prefilter candidates (tile row, tile column, chunk, state), in
        the order given; the fused kernel lists them by (chunk, tile row, tile column)."""
        for tile_row, tile_col, chunk, state in candidates:
            value = ticket_value(self.hash_key, tile_row=tile_row, tile_col=tile_col,
                                 chunk=chunk, state=state)
            # the ticket's hash must be at or under target × weight
            if value > self.bound:
                continue
            yield WinningTicket(value=value, certificate=self.certificate(
                tile_row=tile_row, tile_col=tile_col, chunk=chunk))

    def certificate(self, *, tile_row: int, tile_col: int, chunk: int) -> Certificate:
        """The certificate of one tile's ticket: its operand rows and columns with paths."""
        return Certificate(
            params=self.params, commitment=self.commitment, root_a=self.root_a,
            root_b=self.root_b, target=self.target, tile_row=tile_row, tile_col=tile_col,
            chunk=chunk,
            rows_a=self.a8[tile_row * TILE_H:(tile_row + 1) * TILE_H].tobytes(),
            cols_b=self.bt[tile_col * TILE_W:(tile_col + 1) * TILE_W].tobytes(),
            path_a=tuple(block_path(self.levels_a, block=tile_row, block_size=TILE_H)),
            path_b=tuple(block_path(self.levels_b, block=tile_col, block_size=TILE_W)),
        )


def check_operands(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return int8 C-contiguous copies/views of A and B or raise OperandError."""
    for name, x in (("A", a), ("B", b)):
        if not isinstance(x, np.ndarray) or x.ndim != 2:
            raise OperandError(f"operand {name} must be a 2-D numpy array")
        if not np.issubdtype(x.dtype, np.integer):
            raise OperandError(f"operand {name} must have an integer dtype, got {x.dtype}")
        if x.size and (x.min() < VALUE_MIN or x.max() > VALUE_MAX):
            raise OperandError(f"operand {name} has entries outside [{VALUE_MIN}, {VALUE_MAX}]")
    if a.shape[1] != b.shape[0]:
        raise OperandError(f"inner dimensions differ: A is {a.shape}, B is {b.shape}")
    return (np.ascontiguousarray(a, dtype=np.int8), np.ascontiguousarray(b, dtype=np.int8))


def operand_roots(a: np.ndarray, b: np.ndarray) -> tuple[bytes, bytes]:
    """Merkle roots of A's rows and B's columns (what a block header commits to)."""
    a8, b8 = check_operands(a, b)
    return matrix_root(a8)[0], matrix_root(np.ascontiguousarray(b8.T))[0]


class MiningSession:
    """Mines a stream of matmul jobs under one (switchable) commitment."""

    def __init__(
        self,
        *,
        commitment: bytes,
        target: int,
        backend: Backend | str | None = None,
        r: int | None = None,
        panel_rows: int | None = None,
        max_wins: int = 1,
        on_ticket: Callable[[WinningTicket], None] | None = None,
    ) -> None:
        self.backend: Backend = (
            backend if backend is not None and not isinstance(backend, str)
            else get_backend(backend or "auto")
        )
        self.r = r
        self.panel_rows = panel_rows
        self.max_wins = max_wins
        self.on_ticket = on_ticket
        self._lock = threading.Lock()
        self._epoch = 0
        self._commitment = b""
        self._target = 0
        self.set_commitment(commitment, target=target)

    def set_commitment(self, commitment: bytes, *, target: int | None = None) -> None:
        """Mine for a new commitment from the next chunk on (thread-safe)."""
        if len(commitment) != 32:
            raise ValueError("commitment must be 32 bytes")
        if target is not None and not 0 <= target <= MAX_TARGET:
            raise ValueError("target must be in [0, 2^256 - 1]")
        with self._lock:
            self._commitment = commitment
            if target is not None:
                self._target = target
            self._epoch += 1

    def _current(self) -> tuple[int, bytes, int]:
        with self._lock:
            return self._epoch, self._commitment, self._target

    def _certify_candidates(self, job: _TicketJob, candidates: np.ndarray, *, epoch: int,
                            wins: list[WinningTicket]) -> bool:
        """Certify one panel's kernel candidates chunk by chunk under the chunked path's rules
        (the commitment is checked before each chunk); True if it went stale meanwhile."""
        chunks = job.params.chunks
        bounds = np.searchsorted(candidates["chunk"], np.arange(chunks + 1))
        for c in range(chunks):
            if self._current()[0] != epoch:
                return True
            batch = candidates[bounds[c]:bounds[c + 1]]
            tiles = ((int(x["tile_row"]), int(x["tile_col"]), c, int(x["state"])) for x in batch)
            for win in islice(job.winners_among(tiles), self.max_wins - len(wins)):
                wins.append(win)
                if self.on_ticket is not None:
                    self.on_ticket(win)
            if len(wins) >= self.max_wins:
                break
        return False

    def stream(self, jobs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[MiningResult]:
        """Mine each job in turn, yielding its result."""
        for a, b in jobs:
            yield self.mine(a, b)

    def mine(
        self,
        a: np.ndarray,
        b: np.ndarray,
        *,
        commit: Callable[[bytes, bytes, PouwParams], bytes] | None = None,
    ) -> MiningResult:
        """Compute A·B exactly under the current commitment, reporting winning tickets.

        `commit(root_a, root_b, params)`, if given, returns the commitment for this job once
        the operand roots are known: a miner puts them into the block header it hashes.
        """
        timings = dict.fromkeys(PHASES, 0.0)
        started = time.perf_counter()
        a8, b8 = check_operands(a, b)
        m, k = a8.shape
        n = b8.shape[1]
        params = PouwParams(m=m, k=k, n=n, r=self.r or default_r(k))
        params.validate()
        epoch, commitment, target = self._current()
        dev = self.backend

        t = time.perf_counter()
        bt = transpose_int8(b8)
        root_a, levels_a = matrix_root(a8)
        root_b, levels_b = matrix_root(bt)
        if commit is not None:
            commitment = commit(root_a, root_b, params)
            if len(commitment) != 32:
                raise ValueError("commit() must return 32 bytes")
        timings["commit"] = time.perf_counter() - t

        t = time.perf_counter()
        seed = derive_seed(commitment=commitment, params_bytes=params.to_bytes(),
                           root_a=root_a, root_b=root_b)
        f = noise_factors(seed, params)
        r = params.r
        isa = dev.isa if isinstance(dev, NativeBackend) else None
        noisy = noisy_job(dev, a8, b8, f)
        packed, a_biased, y, z = noisy.packed, noisy.left_biased, noisy.y, noisy.z
        # the chunked path cuts both operands per chunk (the fused kernel's fallback too)
        chunk_operands: list[tuple[object, object]] = []
        # the kernel's digit pairs straight from C; the chunked path's on the device (lazily
        # where it is only the kernel's fallback)
        denoise = native.denoise_job(y, z, f, k=k) if isa is not None else None
        digits: list[tuple[object, object]] = [] if isa is not None else \
            denoise_digits(dev, y, z, f, k=k)
        mixer_key, hash_key = ticket_keys(seed)
        timings["noise"] = time.perf_counter() - t

        job = _TicketJob(
            params=params, commitment=commitment, target=target,
            bound=win_bound(target, params), hash_key=hash_key, root_a=root_a, root_b=root_b,
            a8=a8, bt=bt, levels_a=levels_a, levels_b=levels_b,
        )
        wins: list[WinningTicket] = []
        looking = self.max_wins > 0
        stale = False
        evaluated = 0
        product = np.empty((m, n), dtype=np.int32)
        panel = self.panel_rows or max(TILE_H, min(m, PANEL_BYTES // (4 * n)) // TILE_H * TILE_H)
        col_tiles = np.arange(params.tile_cols)
        limit = native.prefilter_limit(job.bound)
        for p0 in range(0, m, panel):
            p1 = min(m, p0 + panel)
            row_tiles = np.arange(p0 // TILE_H, p1 // TILE_H)
            states = initial_states(mixer_key, row_tiles[:, None], col_tiles[None, :])
            acc = None
            if packed is not None and a_biased is not None:
                t = time.perf_counter()
                # more candidates than this (easy targets only) → the chunked path below
                _, candidates = native.fused_panel(
                    a_biased[p0:p1], packed, row_tile0=p0 // TILE_H, states=states,
                    limit=limit if looking else 0, max_candidates=max(4096, 4 * states.size),
                    denoise=denoise, out=product[p0:p1], isa=-1 if isa is None else isa)
                t2 = time.perf_counter()
                timings["product"] += t2 - t
                if candidates is not None and looking:
                    evaluated += states.size * params.chunks
                    stale = self._certify_candidates(job, candidates, epoch=epoch, wins=wins)
                    looking = not stale and len(wins) < self.max_wins
                    timings["tickets"] += time.perf_counter() - t2
                if candidates is not None or not looking:
                    continue  # out is product[p0:p1], denoised in the kernel
                states = initial_states(mixer_key, row_tiles[:, None], col_tiles[None, :])
            chunk_operands = chunk_operands or split_chunks(dev, *noisy.operands(a8, b8, f), r)
            digits = digits or denoise_digits(dev, y, z, f, k=k)
            for c in range(params.chunks):
                t = time.perf_counter()
                a_chunk, b_chunk = chunk_operands[c]
                acc = dev.accumulate(acc, dev_rows(a_chunk, p0, p1), b_chunk)
                t2 = time.perf_counter()
                timings["product"] += t2 - t
                if looking:
                    states = advance_states(states, dev.fold(acc))
                    evaluated += states.size
                    if self._current()[0] != epoch:
                        looking, stale = False, True
                    else:
                        for win in job.winning_tickets(states, chunk=c, row_tiles=row_tiles,
                                                       limit=self.max_wins - len(wins)):
                            wins.append(win)
                            if self.on_ticket is not None:
                                self.on_ticket(win)
                        looking = len(wins) < self.max_wins
                timings["tickets"] += time.perf_counter() - t2
            t = time.perf_counter()
            parts = [dev.product(dev_rows(left, p0, p1), right)
                     for left, right in digits]
            product[p0:p1] = dev.subtract_horner(acc, parts, LIMB_BASE)
            timings["denoise"] += time.perf_counter() - t
        timings["total"] = time.perf_counter() - started
        return MiningResult(
            product=product, params=params, commitment=commitment, root_a=root_a,
            root_b=root_b, wins=wins, tickets_evaluated=evaluated, stale=stale,
            backend=dev.name, timings=timings,
        )


@dataclass(frozen=True)
class NoisyJob:
    """The noise phase's output: Y = A'·F_L and Z = E_R·B for denoising, and A', B' in the
    form the mining path takes (the fused kernel's biased A' and packed B', or plain int8)."""

    y: np.ndarray
    z: np.ndarray
    packed: native.PackedRight | None = None
    left_biased: np.ndarray | None = None
    a_noisy: np.ndarray | None = None
    b_noisy: np.ndarray | None = None

    def operands(self, a8: np.ndarray, b8: np.ndarray,
                 f: NoiseFactors) -> tuple[np.ndarray, np.ndarray]:
        """(A', B') as int8, for the chunked path (made again if the kernel's form was kept)."""
        if self.a_noisy is not None and self.b_noisy is not None:
            return self.a_noisy, self.b_noisy
        return noisy_left(a8, f), noisy_right(b8, f)


def noisy_job(dev: Backend, a8: np.ndarray, b8: np.ndarray, f: NoiseFactors) -> NoisyJob:
    """A', B', Y and Z of one job: for the native backend in one C pass over each operand
    (Y and Z as signed gathers, no dense F_L or E_R); otherwise with numpy and the backend's
    products with the signed-permutation stacks (m·k·r + r·k·n MACs)."""
    if isinstance(dev, NativeBackend):
        out = native.noisy_operands(a8, b8, f, isa=dev.isa)
        return NoisyJob(y=out.y, z=out.z, packed=out.right, left_biased=out.left_biased)
    a_noisy, b_noisy = noisy_left(a8, f), noisy_right(b8, f)
    y = dev.to_numpy(dev.product(dev.put(a_noisy), dev.put(right_wide_factor(f))))
    z = dev.to_numpy(dev.product(dev.put(left_wide_factor(f)), dev.put(b8)))
    return NoisyJob(y=y, z=z, a_noisy=a_noisy, b_noisy=b_noisy)


def denoise_digits(dev: Backend, y: np.ndarray, z: np.ndarray, f: NoiseFactors, *,
                   k: int) -> list[tuple[object, object]]:
    """The (Left_l, Right_l) digit pairs of pouw.noise.denoise_operands on the device."""
    lefts, rights = denoise_operands(y, z, f, k=k)
    return [(dev.put(left), dev.put(right)) for left, right in zip(lefts, rights, strict=True)]


def split_chunks(dev: Backend, a_noisy: np.ndarray, b_noisy: np.ndarray,
                 r: int) -> list[tuple[object, object]]:
    """(A'[:, chunk c], B'[chunk c, :]) on the device for every chunk, for the chunked path."""
    return [(dev.put(np.ascontiguousarray(a_noisy[:, c * r:(c + 1) * r])),
             dev.put(b_noisy[c * r:(c + 1) * r])) for c in range(b_noisy.shape[0] // r)]


#: Rows per slab of transpose_int8: a slab's transpose stays in cache.
TRANSPOSE_SLAB_ROWS = 128


def transpose_int8(x: np.ndarray) -> np.ndarray:
    """A C-contiguous transpose in slabs of rows: as fast as torch's blocked copy and 4-6x
    faster than numpy's strided one at 4096 x 4096 (one whole-array copy misses cache)."""
    rows, cols = x.shape
    out = np.empty((cols, rows), dtype=x.dtype)
    for lo in range(0, rows, TRANSPOSE_SLAB_ROWS):
        out[:, lo:lo + TRANSPOSE_SLAB_ROWS] = x[lo:lo + TRANSPOSE_SLAB_ROWS].T
    return out


def dev_rows(x: object, lo: int, hi: int) -> object:
    """Rows [lo, hi) of a device array (numpy, torch and cupy all slice alike)."""
    return x[lo:hi]  # type: ignore[index]


def mine_product(
    a: np.ndarray,
    b: np.ndarray,
    *,
    commitment: bytes,
    target: int,
    r: int | None = None,
    backend: Backend | str | None = None,
    max_wins: int = 1,
) -> MiningResult:
    """Mine a single job: the exact product and up to max_wins winning certificates."""
    session = MiningSession(commitment=commitment, target=target, backend=backend, r=r,
                            max_wins=max_wins)
    return session.mine(a, b)
