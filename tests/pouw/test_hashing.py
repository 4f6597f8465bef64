"""The XOF streams: the native SHAKE-256 loop (pouw/_native/shake.c) equals hashlib byte for
byte, on both of its paths (four streams at once, one at a time) and at every block edge."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pouw.hashing import native_shake, xof, xof_streams

needs_native = pytest.mark.skipif(not native_shake(),
                                  reason="pouw/_native/shake.c not built (setup.py build_ext)")


def shake_stream(tag: bytes, seed: bytes, index: int, length: int) -> bytes:
    """docs/pouw.md §4 spelled out: SHAKE-256(len(tag) ‖ tag ‖ seed ‖ index, 8 bytes BE)."""
    message = len(tag).to_bytes(1, "big") + tag + seed + index.to_bytes(8, "big")
    return hashlib.shake_256(message).digest(length)


@needs_native
@settings(max_examples=200, deadline=None)
@given(tag=st.binary(max_size=16), seed=st.binary(max_size=300),
       start=st.integers(0, 2**64 - 16), count=st.integers(1, 11),
       length=st.integers(1, 700))
def test_native_streams_equal_hashlib(tag: bytes, seed: bytes, start: int, count: int,
                                      length: int) -> None:
    indices = range(start, start + count)
    native = xof_streams(tag, seed, indices, length)
    assert native == xof_streams(tag, seed, indices, length, native=False)
    assert native == b"".join(shake_stream(tag, seed, i, length) for i in indices)


@needs_native
@pytest.mark.parametrize("seed_len", [0, 114, 115, 116, 117, 150, 251, 252, 253])
@pytest.mark.parametrize("length", [135, 136, 137, 272, 273])
def test_block_edges(seed_len: int, length: int) -> None:
    """Tag b"pouw.perm.E" is 11 bytes, so the message (length byte, tag, seed, index) is
    seed + 20 bytes: up to 115 it and its padding fit one 136-byte block (four streams at a
    time; at 115 the pad is the one byte 0x9F), from 116 the one-stream path absorbs two or
    three blocks; the output takes one, two or three squeezes."""
    seed = bytes(range(256))[:seed_len]
    got = xof_streams(b"pouw.perm.E", seed, range(3, 10), length)
    assert got == b"".join(shake_stream(b"pouw.perm.E", seed, i, length) for i in range(3, 10))


def test_single_stream_and_empty_ranges() -> None:
    assert xof(b"pouw.noise.EL", b"\x01" * 32, 5, 64) == shake_stream(b"pouw.noise.EL",
                                                                        b"\x01" * 32, 5, 64)
    assert xof_streams(b"t", b"s", range(4, 4), 10) == b""
    assert xof_streams(b"t", b"s", range(0, 3), 0) == b""
