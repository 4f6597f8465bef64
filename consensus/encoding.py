"""Canonical msgpack encoding for every consensus object.

Why: anything hashed or signed must have exactly one byte representation, or two honest nodes
could disagree on an id, and a relayer could mutate bytes without changing meaning
(malleability). msgpack is not canonical by itself, so we restrict it:

* an object is a msgpack *array* of its fields in declaration order (no maps at all: a map's
  order is insertion order, so maps are rejected outright; use sorted lists instead);
* only unsigned integers (< 2**64), byte strings and arrays appear; no floats, strings, bools,
  nil or ext types; integers wider than 64 bits travel as fixed-length big-endian bytes;
* hashes and keys are exactly 32 bytes, signatures exactly 64.

Decoding checks the size before unpacking, unpacks with msgpack's length limits, converts to
the typed object (rejecting wrong types), then re-encodes and compares: any non-minimal
integer or length prefix, trailing byte or other non-canonical form raises `EncodingError`.

Classes declare their schema with ``typing.Annotated`` field types (``U64``, ``Hash32``...),
so one generic ``encode``/``decode`` serves them all. Object ids are BLAKE2b-256 of the
canonical bytes, domain-separated by the class's ``TAG`` (BLAKE2b personalization), so a
transaction id can never collide with a header id over the same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Self, TypeVar

import msgpack

from consensus.errors import EncodingError

Wire = int | bytes | list[Any]

MAX_U64 = 2**64 - 1
DEFAULT_MAX_SIZE = 1 << 20


def tagged_hash(tag: bytes, data: bytes) -> bytes:
    """BLAKE2b-256 with a domain tag (personalization, at most 16 bytes)."""
    if not 0 < len(tag) <= 16:
        raise ValueError(f"hash tag must be 1..16 bytes, got {len(tag)}")
    return hashlib.blake2b(data, digest_size=32, person=tag).digest()


class Codec:
    """Converts one field between its Python value and its msgpack wire value."""

    def to_wire(self, value: object) -> Wire:
        raise NotImplementedError

    def from_wire(self, raw: object) -> object:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class UInt(Codec):
    """Unsigned integer of at most ``bits`` bits (bits <= 64), msgpack int."""

    bits: int = 64

    def _check(self, value: object) -> int:
        # bool is an int subclass: reject it explicitly, it is not a canonical integer.
        if type(value) is not int:
            raise EncodingError(f"expected int, got {type(value).__name__}")
        if not 0 <= value < (1 << self.bits):
            raise EncodingError(f"integer {value} out of range for u{self.bits}")
        return value

    def to_wire(self, value: object) -> Wire:
        return self._check(value)

    def from_wire(self, raw: object) -> object:
        return self._check(raw)


@dataclasses.dataclass(frozen=True)
class BigUInt(Codec):
    """Unsigned integer below 2**(8*size), as fixed-length big-endian bytes."""

    size: int = 32

    def to_wire(self, value: object) -> Wire:
        if type(value) is not int:
            raise EncodingError(f"expected int, got {type(value).__name__}")
        if not 0 <= value < (1 << (8 * self.size)):
            raise EncodingError(f"integer out of range for {self.size}-byte unsigned")
        return value.to_bytes(self.size, "big")

    def from_wire(self, raw: object) -> object:
        if type(raw) is not bytes or len(raw) != self.size:
            raise EncodingError(f"expected {self.size}-byte big-endian integer")
        return int.from_bytes(raw, "big")


@dataclasses.dataclass(frozen=True)
class FixedBytes(Codec):
    """Byte string of exactly ``size`` bytes (hashes, keys, signatures)."""

    size: int

    def _check(self, value: object) -> bytes:
        if type(value) is not bytes:
            raise EncodingError(f"expected bytes, got {type(value).__name__}")
        if len(value) != self.size:
            raise EncodingError(f"expected {self.size} bytes, got {len(value)}")
        return value

    def to_wire(self, value: object) -> Wire:
        return self._check(value)

    def from_wire(self, raw: object) -> object:
        return self._check(raw)


@dataclasses.dataclass(frozen=True)
class VarBytes(Codec):
    """Byte string of at most ``max_len`` bytes."""

    max_len: int

    def _check(self, value: object) -> bytes:
        if type(value) is not bytes:
            raise EncodingError(f"expected bytes, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise EncodingError(f"byte string longer than {self.max_len}")
        return value

    def to_wire(self, value: object) -> Wire:
        return self._check(value)

    def from_wire(self, raw: object) -> object:
        return self._check(raw)


@dataclasses.dataclass(frozen=True)
class ListOf(Codec):
    """Homogeneous list (a tuple in Python) of at most ``max_len`` items.

    ``strictly_increasing`` makes set-like lists canonical: one order, no duplicates.
    """

    item: Codec
    max_len: int
    strictly_increasing: bool = False

    def _check_order(self, items: list[Any]) -> None:
        if self.strictly_increasing and any(a >= b for a, b in itertools.pairwise(items)):
            raise EncodingError("list must be strictly increasing (sorted, no duplicates)")

    def to_wire(self, value: object) -> Wire:
        if type(value) is not tuple:
            raise EncodingError(f"expected tuple, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise EncodingError(f"list longer than {self.max_len}")
        self._check_order(list(value))
        return [self.item.to_wire(v) for v in value]

    def from_wire(self, raw: object) -> object:
        if type(raw) is not list:
            raise EncodingError(f"expected array, got {type(raw).__name__}")
        if len(raw) > self.max_len:
            raise EncodingError(f"list longer than {self.max_len}")
        items = [self.item.from_wire(v) for v in raw]
        self._check_order(items)
        return tuple(items)


@dataclasses.dataclass(frozen=True)
class Nested(Codec):
    """A nested canonical object, encoded as its own field array."""

    cls: type[Any]

    def to_wire(self, value: object) -> Wire:
        if type(value) is not self.cls:
            raise EncodingError(f"expected {self.cls.__name__}, got {type(value).__name__}")
        return _to_wire(value, ())

    def from_wire(self, raw: object) -> object:
        return _from_wire(self.cls, raw)


@dataclasses.dataclass(frozen=True)
class Tagged(Codec):
    """A tagged union: ``[kind_id, fields]``; ``registry`` maps kind id -> class.

    The registry is a callable so that modules defining the variants can be imported after
    the class that holds the union (e.g. payload kinds registered by contracts).
    """

    registry: Callable[[], Mapping[int, type[Any]]]

    def to_wire(self, value: object) -> Wire:
        kinds = self.registry()
        kind_id = getattr(type(value), "KIND_ID", None)
        if type(kind_id) is not int or kinds.get(kind_id) is not type(value):
            raise EncodingError(f"unregistered variant {type(value).__name__}")
        return [kind_id, _to_wire(value, ())]

    def from_wire(self, raw: object) -> object:
        if type(raw) is not list or len(raw) != 2 or type(raw[0]) is not int:
            raise EncodingError("expected [kind, fields]")
        cls = self.registry().get(raw[0])
        if cls is None:
            raise EncodingError(f"unknown kind {raw[0]}")
        return _from_wire(cls, raw[1])


# Field type aliases: use these in dataclass annotations.
U64 = Annotated[int, UInt(64)]
U256 = Annotated[int, BigUInt(32)]
Hash32 = Annotated[bytes, FixedBytes(32)]
PublicKey = Annotated[bytes, FixedBytes(32)]
Signature64 = Annotated[bytes, FixedBytes(64)]

_SCHEMAS: dict[type[Any], tuple[tuple[str, Codec], ...]] = {}


def schema(cls: type[Any]) -> tuple[tuple[str, Codec], ...]:
    """(field name, codec) pairs in declaration order, from ``Annotated`` hints."""
    cached = _SCHEMAS.get(cls)
    if cached is not None:
        return cached
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    hints = typing.get_type_hints(cls, include_extras=True)
    out: list[tuple[str, Codec]] = []
    for f in dataclasses.fields(cls):
        codecs = [m for m in getattr(hints[f.name], "__metadata__", ()) if isinstance(m, Codec)]
        if len(codecs) != 1:
            raise TypeError(f"{cls.__name__}.{f.name} needs exactly one Codec annotation")
        out.append((f.name, codecs[0]))
    result = tuple(out)
    _SCHEMAS[cls] = result
    return result


def _to_wire(obj: object, omit: tuple[str, ...]) -> list[Any]:
    return [codec.to_wire(getattr(obj, name)) for name, codec in schema(type(obj))
            if name not in omit]


def _from_wire(cls: type[Any], raw: object) -> Any:
    fields = schema(cls)
    if type(raw) is not list:
        raise EncodingError(f"{cls.__name__}: expected array, got {type(raw).__name__}")
    if len(raw) != len(fields):
        raise EncodingError(f"{cls.__name__}: expected {len(fields)} fields, got {len(raw)}")
    kwargs = {name: codec.from_wire(v) for (name, codec), v in zip(fields, raw, strict=True)}
    try:
        return cls(**kwargs)
    except EncodingError:
        raise
    except (ValueError, TypeError) as exc:
        raise EncodingError(f"{cls.__name__}: {exc}") from exc


def encode(obj: object, *, omit: tuple[str, ...] = ()) -> bytes:
    """Canonical bytes of ``obj``; ``omit`` drops fields (unsigned tx, header commitment)."""
    return msgpack.packb(_to_wire(obj, omit), use_bin_type=True)  # type: ignore[no-any-return]


T = TypeVar("T")


def decode(cls: type[T], data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> T:
    """Parse canonical bytes into ``cls``; reject anything that is not exactly canonical."""
    if type(data) is not bytes:
        raise EncodingError(f"expected bytes, got {type(data).__name__}")
    # size limit first: never hand an attacker-sized buffer to the unpacker
    if len(data) > max_size:
        raise EncodingError(f"{len(data)} bytes exceed the limit of {max_size}", rule="oversized")
    try:
        raw = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=max_size,
            max_array_len=max_size,
            max_str_len=0,
            max_map_len=0,
            max_ext_len=0,
        )
    except msgpack.ExtraData as exc:
        raise EncodingError("trailing bytes after the object", rule="trailing") from exc
    except Exception as exc:  # msgpack raises several unrelated types on malformed input
        raise EncodingError(f"malformed msgpack: {exc!r}") from exc
    obj: T = _from_wire(cls, raw)
    if encode(obj) != data:
        raise EncodingError(f"{cls.__name__}: non-canonical encoding", rule="non_canonical")
    return obj


def object_id(obj: object) -> bytes:
    """Domain-separated BLAKE2b-256 of the canonical bytes (tag = the class's ``TAG``)."""
    tag: bytes = type(obj).TAG  # type: ignore[attr-defined]
    return tagged_hash(tag, encode(obj))


class Canonical:
    """Mixin giving a canonical dataclass ``encode``/``decode``/``id`` via the helpers above."""

    TAG: ClassVar[bytes]
    MAX_SIZE: ClassVar[int] = DEFAULT_MAX_SIZE

    def encode(self) -> bytes:
        return encode(self)

    @classmethod
    def decode(cls, data: bytes, *, max_size: int | None = None) -> Self:
        return decode(cls, data, max_size=cls.MAX_SIZE if max_size is None else max_size)

    def id(self) -> bytes:
        return object_id(self)
