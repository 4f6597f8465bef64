"""Frame encoding rules: canonical, typed, size-limited."""

from __future__ import annotations

import msgpack
import pytest

from node.p2p.protocol import (
    MAX_FRAME,
    TYPE_LIMITS,
    MsgType,
    ProtocolError,
    decode_frame,
    encode_frame,
)


def test_round_trip() -> None:
    frame = encode_frame(MsgType.PING, {"nonce": 7})
    msg = decode_frame(frame)
    assert msg.type == MsgType.PING and msg["nonce"] == 7


@pytest.mark.parametrize("raw, reason", [
    (b"\xc1garbage", "malformed"),
    (msgpack.packb([99, {}]), "unknown_type"),
    (msgpack.packb([int(MsgType.PING), {"nonce": "x"}]), "malformed"),
    (msgpack.packb([int(MsgType.PING), {"nonce": 1, "extra": 2}]), "malformed"),
    (msgpack.packb({"type": 4}), "malformed"),
    # 7 encoded as a uint64 instead of a fixint: same value, not canonical
    (b"\x92\x04\x81\xa5nonce\xcf" + (7).to_bytes(8, "big"), "non_canonical"),
    (b"\x00" * (MAX_FRAME + 1), "oversized"),
])
def test_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(raw)
    assert info.value.reason == reason


def test_per_type_limit() -> None:
    raw = msgpack.packb([int(MsgType.PING), {"nonce": 1, "pad": b"x" * 200}])
    with pytest.raises(ProtocolError) as info:
        decode_frame(raw)
    assert info.value.reason == "oversized"
    with pytest.raises(ProtocolError):
        encode_frame(MsgType.ADDR, {"addrs": ["x:1"] * 1001})
    # a TX frame near the global limit is still over its own type's limit
    tx_frame = msgpack.packb([int(MsgType.TX), {"tx": b"x" * 100_000}])
    assert len(tx_frame) < MAX_FRAME
    with pytest.raises(ProtocolError) as info:
        decode_frame(tx_frame)
    assert info.value.reason == "oversized"
    assert TYPE_LIMITS[MsgType.TX] < 100_000
