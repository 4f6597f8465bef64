"""The wire protocol: one WebSocket binary message = one canonical msgpack frame.

A frame is ``[type, body]`` where ``body`` is a map with string keys. Decoding rejects
anything that is not exactly how we would encode it (re-encoding must give the same bytes),
unknown types, missing or mistyped fields, and frames over the global or per-type size
limit. Every failure raises `ProtocolError`, which the policy treats as REJECT.

Block and transaction payloads travel as their canonical consensus encodings (bytes), so a
relay never re-encodes them and ids hash the same bytes everywhere.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from consensus.block import MAX_HEADER_SIZE
from consensus.tx import MAX_TX_SIZE

PROTOCOL_VERSION = 1
MAX_FRAME = 4 * 1024 * 1024  # bytes: one block of up to 4,000,000 bytes plus the envelope
MAX_HEADERS = 2000  # headers per HEADERS message
MAX_INV = 50_000  # ids per INV / GETDATA
MAX_ADDR = 1000  # addresses per ADDR
MAX_LOCATOR = 101  # ids in a GETHEADERS locator
MAX_BLOCKS_PER_MESSAGE = 256
MAX_SWARM = 1 << 20  # bytes of one swarm message's data (a round's reveals fit)
MAX_VOTE = 512  # bytes of one finality vote's canonical encoding (about 220 used)
AUTH_DOMAIN = b"pouwchain/p2p/auth/v1\x00"


class ProtocolError(ValueError):
    """A frame is malformed, non-canonical, oversized or unknown; ``reason`` names which."""

    def __init__(self, reason: str, message: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}" if message else reason)


class MsgType(enum.IntEnum):
    """Frame types; the number is the first element of a frame on the wire."""
    HELLO = 1  # handshake: version, network, tip, identity, nonce, listen address
    AUTH = 2  # handshake: signature over the peer's nonce
    REJECT = 3  # the sender closes the connection, with a reason
    PING = 4
    PONG = 5
    GETADDR = 6
    ADDR = 7
    TX = 8  # gossip: one transaction (pushed; txs are small)
    INV = 9  # gossip: announce blocks [id, height, cumulative work]
    GETDATA = 10  # request blocks by id (req id echoed)
    BLOCKS = 11  # blocks answering a GETDATA, plus the ids not served
    GETHEADERS = 12  # locator (our chain, tip first, exponential step back)
    HEADERS = 13  # up to MAX_HEADERS canonical headers after the common ancestor
    SWARM = 14  # swarm round gossip: kind (cap/req/commit/reveal/phase/close/final) + bytes
    VOTE = 15  # finality gossip: one validator's signed checkpoint vote (canonical bytes)


# Per-type size limits (bytes of the whole frame).
TYPE_LIMITS: dict[MsgType, int] = {
    MsgType.HELLO: 4096,
    MsgType.AUTH: 512,
    MsgType.REJECT: 1024,
    MsgType.PING: 128,
    MsgType.PONG: 128,
    MsgType.GETADDR: 64,
    MsgType.ADDR: MAX_ADDR * 300,
    MsgType.TX: MAX_TX_SIZE + 256,
    MsgType.INV: MAX_INV * 80,
    MsgType.GETDATA: MAX_INV * 40,
    MsgType.BLOCKS: MAX_FRAME,
    MsgType.GETHEADERS: MAX_LOCATOR * 40 + 256,
    MsgType.HEADERS: MAX_FRAME,
    MsgType.SWARM: MAX_SWARM + 256,
    MsgType.VOTE: MAX_VOTE + 64,
}


# checks one decoded field value (anything msgpack may produce)
Validator = Callable[[object], bool]


def _bytes(n: int | None = None, *, max_len: int | None = None) -> Validator:
    def check(v: object) -> bool:
        if type(v) is not bytes:
            return False
        if n is not None and len(v) != n:
            return False
        return max_len is None or len(v) <= max_len
    return check


def _uint(v: object) -> bool:
    return type(v) is int and 0 <= v < 2**64


def _str(max_len: int) -> Validator:
    return lambda v: type(v) is str and len(v) <= max_len


def _list_of(item: Validator, max_items: int) -> Validator:
    return lambda v: type(v) is list and len(v) <= max_items and all(item(x) for x in v)


def _inv_item(v: object) -> bool:
    return (type(v) is list and len(v) == 3 and _bytes(32)(v[0]) and _uint(v[1])
            and _bytes(max_len=32)(v[2]))


_ID = _bytes(32)
SCHEMAS: dict[MsgType, dict[str, Validator]] = {
    MsgType.HELLO: {"version": _uint, "network": _str(64), "chain_id": _uint, "genesis": _ID,
                    "tip": _ID, "height": _uint, "work": _bytes(max_len=32),
                    "node_id": _ID, "nonce": _ID, "listen": _str(300), "time": _uint,
                    "agent": _str(64)},
    MsgType.AUTH: {"signature": _bytes(64)},
    MsgType.REJECT: {"reason": _str(64), "message": _str(512)},
    MsgType.PING: {"nonce": _uint},
    MsgType.PONG: {"nonce": _uint},
    MsgType.GETADDR: {},
    MsgType.ADDR: {"addrs": _list_of(_str(255), MAX_ADDR)},
    MsgType.TX: {"tx": _bytes(max_len=MAX_TX_SIZE)},
    MsgType.INV: {"blocks": _list_of(_inv_item, MAX_INV)},
    MsgType.GETDATA: {"req": _uint, "ids": _list_of(_ID, MAX_INV)},
    MsgType.BLOCKS: {"req": _uint, "blocks": _list_of(_bytes(max_len=MAX_FRAME),
                                                      MAX_BLOCKS_PER_MESSAGE),
                     "missing": _list_of(_ID, MAX_INV)},
    MsgType.GETHEADERS: {"req": _uint, "locator": _list_of(_ID, MAX_LOCATOR)},
    MsgType.HEADERS: {"req": _uint, "headers": _list_of(_bytes(max_len=MAX_HEADER_SIZE),
                                                        MAX_HEADERS)},
    MsgType.SWARM: {"kind": _str(16), "data": _bytes(max_len=MAX_SWARM)},
    MsgType.VOTE: {"vote": _bytes(max_len=MAX_VOTE)},
}


# Optional fields: may be absent; checked when present.
OPTIONAL: dict[MsgType, dict[str, Validator]] = {
    # the sender checked only header and PoUW proof, not the state transition (early relay)
    MsgType.INV: {"early": lambda v: type(v) is bool},
}


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded frame."""

    type: MsgType
    body: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.body[key]

    def get(self, key: str, default: Any = None) -> Any:
        """An optional field, or ``default``."""
        return self.body.get(key, default)


def encode_frame(msg_type: MsgType, body: Mapping[str, Any]) -> bytes:
    """Canonical bytes of a frame; raises ProtocolError if our own message breaks the rules."""
    frame = msgpack.packb([int(msg_type), dict(body)], use_bin_type=True)
    _check(msg_type, body, len(frame))
    return bytes(frame)


def decode_frame(raw: bytes) -> Message:
    """Parse and check one frame (size, canonical form, type, fields)."""
    if len(raw) > MAX_FRAME:
        raise ProtocolError("oversized", f"{len(raw)} > {MAX_FRAME} bytes")
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError("malformed", f"not msgpack: {type(exc).__name__}") from exc
    if type(obj) is not list or len(obj) != 2 or type(obj[0]) is not int \
            or type(obj[1]) is not dict:
        raise ProtocolError("malformed", "frame must be [type, {body}]")
    try:
        msg_type = MsgType(obj[0])
    except ValueError as exc:
        raise ProtocolError("unknown_type", str(obj[0])) from exc
    body: dict[str, Any] = obj[1]
    _check(msg_type, body, len(raw))
    if msgpack.packb(obj, use_bin_type=True) != raw:
        raise ProtocolError("non_canonical", msg_type.name)
    return Message(msg_type, body)


def _check(msg_type: MsgType, body: Mapping[str, Any], size: int) -> None:
    """Apply the type's size limit and field schema; raises ProtocolError."""
    limit = TYPE_LIMITS[msg_type]
    if size > limit:
        raise ProtocolError("oversized", f"{msg_type.name} {size} > {limit} bytes")
    schema = SCHEMAS[msg_type]
    optional = OPTIONAL.get(msg_type, {})
    if not set(schema) <= set(body) <= set(schema) | set(optional):
        raise ProtocolError("malformed", f"{msg_type.name} fields {sorted(map(repr, body))}")
    for key, value in body.items():
        if not (schema.get(key) or optional[key])(value):
            raise ProtocolError("malformed", f"{msg_type.name}.{key}")


def auth_message(*, nonce: bytes, signer: bytes, genesis: bytes) -> bytes:
    """What a node signs to prove its identity: the peer's fresh nonce, bound to the network
    and to the signer's own id (so a signature cannot be replayed to another peer or chain)."""
    return AUTH_DOMAIN + genesis + signer + nonce


def work_bytes(work: int) -> bytes:
    """Cumulative work as minimal big-endian bytes (msgpack ints stop at 64 bits)."""
    return work.to_bytes(max(1, (work.bit_length() + 7) // 8), "big")


def work_int(raw: bytes) -> int:
    """Cumulative work from its `work_bytes` form."""
    return int.from_bytes(raw, "big")
