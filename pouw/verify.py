"""Certificate verification: recompute one tile's transcript, h·w·(ℓ+1)·r MACs.

The cost depends on k and the tile, never on m or n (beyond log-length Merkle paths).
"""

from __future__ import annotations

import numpy as np

from pouw.certificate import Certificate
from pouw.errors import CertificateError, ParamsError
from pouw.hashing import derive_seed
from pouw.merkle import bind_root, leaf_hashes, root_from_block
from pouw.noise import noise_factors, noisy_left, noisy_right
from pouw.params import TILE_H, TILE_W, VALUE_MAX, VALUE_MIN, win_bound
from pouw.tickets import CHUNK_MULTIPLIER, initial_states, ticket_keys, ticket_value


def tile_ticket(cert: Certificate) -> int:
    """The ticket value of the certificate's tile at its chunk (no target check)."""
    p = cert.params
    rows = np.frombuffer(cert.rows_a, dtype=np.int8).reshape(TILE_H, p.k)
    cols = np.frombuffer(cert.cols_b, dtype=np.int8).reshape(TILE_W, p.k)
    seed = derive_seed(
        commitment=cert.commitment, params_bytes=p.to_bytes(), root_a=cert.root_a,
        root_b=cert.root_b,
    )
    row0, col0 = cert.tile_row * TILE_H, cert.tile_col * TILE_W
    f = noise_factors(seed, p, rows=(row0, row0 + TILE_H), cols=(col0, col0 + TILE_W),
                      chunks=cert.chunk + 1)
    chunks, r = cert.chunk + 1, p.r
    # every chunk's 8×4 product at once, then the running sums: Acc_0 … Acc_c. In float64
    # (BLAS) they are exact: |Acc| <= 128·128·K_MAX < 2^53.
    a_noisy = noisy_left(rows, f).astype(np.float64).reshape(TILE_H, chunks, r).transpose(1, 0, 2)
    b_noisy = noisy_right(np.ascontiguousarray(cols.T), f).astype(np.float64).reshape(
        chunks, r, TILE_W)
    acc = np.cumsum(np.matmul(a_noisy, b_noisy), axis=0).astype(np.int64).astype(np.int32)
    folds = np.bitwise_xor.reduce(acc.view(np.uint32).reshape(chunks, -1), axis=1)
    mixer_key, hash_key = ticket_keys(seed)
    state = int(initial_states(mixer_key, np.array([cert.tile_row]),
                               np.array([cert.tile_col]))[0])
    for fold in folds.tolist():  # advance_states on one tile, with Python integers
        state = ((state ^ fold) * CHUNK_MULTIPLIER) & 0xFFFFFFFFFFFFFFFF
    return ticket_value(hash_key, tile_row=cert.tile_row, tile_col=cert.tile_col,
                        chunk=cert.chunk, state=state)


def verify_certificate(cert: Certificate, *, commitment: bytes, target: int) -> int:
    """Check every rule; return the winning ticket value or raise CertificateError."""
    p = cert.params
    try:
        p.validate()  # job shape must be within the documented bounds
    except ParamsError as exc:
        raise CertificateError(f"bad job parameters: {exc}") from exc
    if cert.commitment != commitment:  # certificate must be bound to this commitment
        raise CertificateError("certificate commits to a different block")
    if cert.target != target:  # certificate must be mined at the required target
        raise CertificateError("certificate target differs from the required target")
    if not 0 <= cert.tile_row < p.tile_rows or not 0 <= cert.tile_col < p.tile_cols:
        raise CertificateError("tile index outside the output grid")  # tile must exist
    if not 0 <= cert.chunk < p.chunks:  # chunk must exist
        raise CertificateError("chunk index outside the product")
    rows = np.frombuffer(cert.rows_a, dtype=np.int8).reshape(TILE_H, p.k)
    cols = np.frombuffer(cert.cols_b, dtype=np.int8).reshape(TILE_W, p.k)
    for name, values in (("A", rows), ("B", cols)):  # operands must lie in [-64, 63]
        if values.min() < VALUE_MIN or values.max() > VALUE_MAX:
            raise CertificateError(f"operand {name} entry outside [{VALUE_MIN}, {VALUE_MAX}]")
    try:
        tree_a = root_from_block(leaf_hashes(rows), block=cert.tile_row, path=list(cert.path_a),
                                 total_rows=p.m)
        tree_b = root_from_block(leaf_hashes(cols), block=cert.tile_col, path=list(cert.path_b),
                                 total_rows=p.n)
    except ValueError as exc:
        raise CertificateError(str(exc)) from exc
    if bind_root(tree_a, rows=p.m, row_len=p.k) != cert.root_a:  # rows must open root_a
        raise CertificateError("rows of A do not match root_a")
    if bind_root(tree_b, rows=p.n, row_len=p.k) != cert.root_b:  # columns must open root_b
        raise CertificateError("columns of B do not match root_b")
    value = tile_ticket(cert)
    if value > win_bound(target, p):  # ticket must beat target × weight
        raise CertificateError("ticket does not beat the target")
    return value
