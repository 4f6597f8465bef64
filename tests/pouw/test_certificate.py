"""Certificates: honest ones verify anywhere; every single-field tamper is rejected."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import msgpack
import pytest

from pouw import (
    MAX_CERTIFICATE_BYTES,
    MAX_TARGET,
    Certificate,
    CertificateError,
    tile_ticket,
    verify_certificate,
)

from .conftest import COMMITMENT


def _verify(cert: Certificate) -> int:
    return verify_certificate(cert, commitment=COMMITMENT, target=MAX_TARGET >> 18)


def test_honest_certificate_verifies(honest_certificate: Certificate) -> None:
    value = _verify(honest_certificate)
    assert value <= (MAX_TARGET >> 18) * honest_certificate.params.ticket_weight


def test_round_trip_is_canonical(honest_certificate: Certificate) -> None:
    data = honest_certificate.encode()
    assert Certificate.decode(data) == honest_certificate
    assert Certificate.decode(data).encode() == data


@pytest.mark.slow
def test_verifies_in_a_fresh_process(honest_certificate: Certificate) -> None:
    """No per-process salt anywhere: a second interpreter reaches the same verdict."""
    script = (
        "import sys; from pouw import Certificate, verify_certificate, MAX_TARGET;"
        "c = Certificate.decode(bytes.fromhex(sys.stdin.read()));"
        "print(verify_certificate(c, commitment=bytes(range(32)), target=MAX_TARGET >> 18))"
    )
    out = subprocess.run([sys.executable, "-c", script], input=honest_certificate.encode().hex(),
                         capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""})
    assert int(out.stdout) == _verify(honest_certificate)


def _flip_byte(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def _tampered(cert: Certificate) -> list[tuple[str, Certificate]]:
    """One copy per single-field change, covering every field of the certificate."""
    p = cert.params
    out = [
        ("tile_row", dataclasses.replace(cert, tile_row=(cert.tile_row + 1) % p.tile_rows)),
        ("tile_col", dataclasses.replace(cert, tile_col=(cert.tile_col + 1) % p.tile_cols)),
        ("chunk", dataclasses.replace(cert, chunk=(cert.chunk + 1) % p.chunks)),
        ("chunk-out-of-range", dataclasses.replace(cert, chunk=p.chunks)),
        ("tile-out-of-range", dataclasses.replace(cert, tile_row=p.tile_rows)),
        ("commitment", dataclasses.replace(cert, commitment=_flip_byte(cert.commitment, 0))),
        ("root_a", dataclasses.replace(cert, root_a=_flip_byte(cert.root_a, 31))),
        ("root_b", dataclasses.replace(cert, root_b=_flip_byte(cert.root_b, 7))),
        ("target", dataclasses.replace(cert, target=cert.target + 1)),
        ("params-m", dataclasses.replace(cert, params=dataclasses.replace(p, m=p.m * 2))),
        ("params-n", dataclasses.replace(cert, params=dataclasses.replace(p, n=p.n * 2))),
        ("params-r", dataclasses.replace(cert, params=dataclasses.replace(p, r=p.r * 2))),
        ("path_a-dropped", dataclasses.replace(cert, path_a=cert.path_a[:-1])),
        ("path_b-extra", dataclasses.replace(cert, path_b=(*cert.path_b, bytes(32)))),
    ]
    for i in range(len(cert.rows_a)):
        out.append((f"rows_a[{i}]", dataclasses.replace(cert, rows_a=_flip_byte(cert.rows_a, i))))
    for i in range(len(cert.cols_b)):
        out.append((f"cols_b[{i}]", dataclasses.replace(cert, cols_b=_flip_byte(cert.cols_b, i))))
    for i in range(len(cert.path_a)):
        path = list(cert.path_a)
        path[i] = _flip_byte(path[i], i % 32)
        out.append((f"path_a[{i}]", dataclasses.replace(cert, path_a=tuple(path))))
    for i in range(len(cert.path_b)):
        path = list(cert.path_b)
        path[i] = _flip_byte(path[i], i % 32)
        out.append((f"path_b[{i}]", dataclasses.replace(cert, path_b=tuple(path))))
    return out


def test_every_single_field_tamper_is_rejected(honest_certificate: Certificate) -> None:
    cases = _tampered(honest_certificate)
    assert len(cases) > 12 * honest_certificate.params.k  # every row and column byte
    accepted = []
    for name, cert in cases:
        try:
            _verify(cert)
        except CertificateError:
            continue
        accepted.append(name)
    assert accepted == []


def test_out_of_range_operand_is_rejected(honest_certificate: Certificate) -> None:
    rows = bytearray(honest_certificate.rows_a)
    rows[0] = 64  # one past VALUE_MAX
    with pytest.raises(CertificateError, match="outside"):
        _verify(dataclasses.replace(honest_certificate, rows_a=bytes(rows)))


def test_wrong_commitment_or_target_argument(honest_certificate: Certificate) -> None:
    with pytest.raises(CertificateError, match="different block"):
        verify_certificate(honest_certificate, commitment=bytes(32), target=MAX_TARGET >> 18)
    with pytest.raises(CertificateError, match="target"):
        verify_certificate(honest_certificate, commitment=COMMITMENT, target=MAX_TARGET >> 19)


def test_losing_ticket_is_rejected(honest_certificate: Certificate) -> None:
    """Re-labelled at a target the ticket does not beat, the certificate fails."""
    value = tile_ticket(honest_certificate)
    weight = honest_certificate.params.ticket_weight
    hard = max(0, value // weight - 1)
    cert = dataclasses.replace(honest_certificate, target=hard)
    with pytest.raises(CertificateError, match="does not beat"):
        verify_certificate(cert, commitment=COMMITMENT, target=hard)


def test_decode_rejects_malformed_bytes(honest_certificate: Certificate) -> None:
    data = honest_certificate.encode()
    fields = msgpack.unpackb(data)
    bad = {
        "empty": b"",
        "garbage": b"\xc1\xff\x00",
        "truncated": data[:-5],
        "trailing": data + b"\x00",
        "oversized": b"\x00" * (MAX_CERTIFICATE_BYTES + 1),
        "not-an-array": msgpack.packb({"a": 1}),
        "short-array": msgpack.packb(fields[:-1], use_bin_type=True),
        "version": msgpack.packb([2, *fields[1:]], use_bin_type=True),
        "negative-int": msgpack.packb([*fields[:9], -1, *fields[10:]], use_bin_type=True),
        "bool-int": msgpack.packb([*fields[:9], True, *fields[10:]], use_bin_type=True),
        "short-hash": msgpack.packb([*fields[:5], b"\x00" * 31, *fields[6:]], use_bin_type=True),
        "str-for-bin": msgpack.packb([*fields[:5], "x" * 32, *fields[6:]], use_bin_type=True),
        "rows-length": msgpack.packb([*fields[:12], fields[12][:-1], *fields[13:]],
                                     use_bin_type=True),
        "path-node": msgpack.packb([*fields[:14], [b"x"], fields[15]], use_bin_type=True),
    }
    for name, blob in bad.items():
        with pytest.raises(CertificateError):
            Certificate.decode(blob)
        assert Certificate.decode(data) == honest_certificate, name


def test_decode_rejects_non_canonical_integer(honest_certificate: Certificate) -> None:
    """An int encoded wider than needed (uint32 0xce for a small m) is not canonical."""
    fields = msgpack.unpackb(honest_certificate.encode())
    head = b"\xdd" + len(fields).to_bytes(4, "big")  # array32 where array16 suffices
    body = b"".join(msgpack.packb(f, use_bin_type=True) for f in fields)
    with pytest.raises(CertificateError, match="non-canonical"):
        Certificate.decode(head + body)
    m_wide = b"\xce" + fields[1].to_bytes(4, "big")
    parts = [msgpack.packb(f, use_bin_type=True) for f in fields]
    parts[1] = m_wide
    blob = b"\xdc" + len(fields).to_bytes(2, "big") + b"".join(parts)
    with pytest.raises(CertificateError, match="non-canonical"):
        Certificate.decode(blob)
