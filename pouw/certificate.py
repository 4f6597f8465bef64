"""Winning-ticket certificates and their canonical msgpack encoding."""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from pouw.errors import CertificateError
from pouw.params import K_MAX, SCHEME_VERSION, TILE_H, TILE_W, PouwParams

#: Largest encoded certificate: (8 + 4) rows of K_MAX bytes (48 KiB), 27 path nodes, header.
MAX_CERTIFICATE_BYTES = 64 * 1024
_FIELDS = 16
_MAX_PATH = 32


@dataclass(frozen=True)
class Certificate:
    """What a verifier needs to recompute one tile's transcript without the full product.

    rows_a: the tile's TILE_H rows of A (int8, row-major, k bytes each).
    cols_b: the tile's TILE_W columns of B (int8, column after column, k bytes each).
    path_a / path_b: Merkle siblings from the aligned row / column block to the roots.
    """

    params: PouwParams
    commitment: bytes
    root_a: bytes
    root_b: bytes
    target: int
    tile_row: int
    tile_col: int
    chunk: int
    rows_a: bytes
    cols_b: bytes
    path_a: tuple[bytes, ...]
    path_b: tuple[bytes, ...]

    def encode(self) -> bytes:
        """Canonical bytes: a fixed-order msgpack array, integers and bin only."""
        p = self.params
        packed: bytes = msgpack.packb(
            [
                SCHEME_VERSION, p.m, p.k, p.n, p.r,
                self.commitment, self.root_a, self.root_b, self.target.to_bytes(32, "big"),
                self.tile_row, self.tile_col, self.chunk,
                self.rows_a, self.cols_b, list(self.path_a), list(self.path_b),
            ],
            use_bin_type=True,
        )
        return packed

    @classmethod
    def decode(cls, data: bytes) -> Certificate:
        """Parse canonical bytes; anything else raises CertificateError saying why."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise CertificateError("certificate must be bytes")
        data = bytes(data)
        if len(data) > MAX_CERTIFICATE_BYTES:
            raise CertificateError(
                f"certificate is {len(data)} bytes, limit is {MAX_CERTIFICATE_BYTES}"
            )
        try:
            obj = msgpack.unpackb(
                data, raw=False, use_list=True, strict_map_key=True,
                max_bin_len=MAX_CERTIFICATE_BYTES, max_str_len=0, max_array_len=_MAX_PATH,
                max_map_len=0, max_ext_len=0,
            )
        except msgpack.ExtraData as exc:
            raise CertificateError("trailing bytes after certificate") from exc
        except Exception as exc:
            raise CertificateError(f"malformed certificate: {exc}") from exc
        cert = cls._from_fields(obj)
        if cert.encode() != data:
            raise CertificateError("non-canonical certificate encoding")
        return cert

    @classmethod
    def _from_fields(cls, obj: object) -> Certificate:
        if not isinstance(obj, list) or len(obj) != _FIELDS:
            raise CertificateError(f"certificate must be an array of {_FIELDS} fields")
        (version, m, k, n, r, commitment, root_a, root_b, target, tile_row, tile_col, chunk,
         rows_a, cols_b, path_a, path_b) = obj
        if version != SCHEME_VERSION or isinstance(version, bool):
            raise CertificateError(f"unsupported certificate version {version!r}")
        for name, value in (("m", m), ("k", k), ("n", n), ("r", r), ("tile_row", tile_row),
                            ("tile_col", tile_col), ("chunk", chunk)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
                raise CertificateError(f"field {name} must be an unsigned 32-bit integer")
        for name, value in (("commitment", commitment), ("root_a", root_a),
                            ("root_b", root_b), ("target", target)):
            if not isinstance(value, bytes) or len(value) != 32:
                raise CertificateError(f"field {name} must be 32 bytes")
        for name, value in (("rows_a", rows_a), ("cols_b", cols_b)):
            if not isinstance(value, bytes):
                raise CertificateError(f"field {name} must be bytes")
        if not 0 < k <= K_MAX or len(rows_a) != TILE_H * k or len(cols_b) != TILE_W * k:
            raise CertificateError("tile rows/columns do not match k")
        paths = []
        for name, path in (("path_a", path_a), ("path_b", path_b)):
            if not isinstance(path, list) or not all(
                isinstance(node, bytes) and len(node) == 32 for node in path
            ):
                raise CertificateError(f"field {name} must be a list of 32-byte hashes")
            paths.append(tuple(path))
        return cls(
            params=PouwParams(m=m, k=k, n=n, r=r), commitment=commitment, root_a=root_a,
            root_b=root_b, target=int.from_bytes(target, "big"), tile_row=tile_row,
            tile_col=tile_col, chunk=chunk, rows_a=rows_a, cols_b=cols_b,
            path_a=paths[0], path_b=paths[1],
        )
