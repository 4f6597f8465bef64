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
That check is the trust boundary: bytes from the network or the disk are decoded once.

Canonical objects are frozen, so their encoding and id are computed once and memoised on the
instance (a cache outside the dataclass fields: equality, hashing and ``replace`` ignore it).
A nested object's encoding is spliced into its container's (a msgpack array is its header
followed by its elements' encodings), so decoding a block leaves every transaction's encoding
cached and re-encoding the block later costs nothing.

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
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Self, TypeVar

import msgpack

from core.errors import EncodingError

Wire = int | bytes | list[Any]

MAX_U64 = 2**64 - 1
DEFAULT_MAX_SIZE = 1 << 20

T = TypeVar("T")


def tagged_hash(tag: bytes, data: bytes) -> bytes:
    """BLAKE2b-256 with a domain tag (personalization, at most 16 bytes)."""
    if not 0 < len(tag) <= 16:
        raise ValueError(f"hash tag must be 1..16 bytes, got {len(tag)}")
    return hashlib.blake2b(data, digest_size=32, person=tag).digest()


def array_header(length: int) -> bytes:
    """The minimal msgpack array header for ``length`` items (what ``packb`` writes)."""
    if length < 16:
        return bytes((0x90 | length,))
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    if length < 1 << 32:
        return b"\xdd" + length.to_bytes(4, "big")
    raise EncodingError(f"array of {length} items is too long for msgpack")


def _pack(wire: Wire) -> bytes:
    return msgpack.packb(wire, use_bin_type=True)  # type: ignore[no-any-return]


class Codec:
    """Converts one field between its Python value and its msgpack wire value."""

    def to_wire(self, value: object) -> Wire:
        raise NotImplementedError

    def from_wire(self, raw: object) -> object:
        raise NotImplementedError

    def pack(self, value: object, *, splice: bool = False) -> bytes:
        """The field's canonical msgpack bytes (same as packing `to_wire`).

        ``splice``: build nested objects' encodings one by one (memoising each) even when
        none is memoised yet; otherwise only already-memoised lists are spliced.
        """
        return _pack(self.to_wire(value))

    def splices(self) -> bool:
        """Whether `pack` splices nested objects' memoised encodings (see `Nested`)."""
        return False


@dataclasses.dataclass(frozen=True)
class UInt(Codec):
    """Unsigned integer of at most ``bits`` bits (bits <= 64), msgpack int."""

    bits: int = 64

    def to_wire(self, value: object) -> Wire:
        # bool is an int subclass: reject it explicitly, it is not a canonical integer.
        if type(value) is not int:
            raise EncodingError(f"expected int, got {type(value).__name__}")
        if not 0 <= value < (1 << self.bits):
            raise EncodingError(f"integer {value} out of range for u{self.bits}")
        return value

    def from_wire(self, raw: object) -> object:
        return self.to_wire(raw)  # the same check both ways: the wire value is the value


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

    def to_wire(self, value: object) -> Wire:
        if type(value) is not bytes:
            raise EncodingError(f"expected bytes, got {type(value).__name__}")
        if len(value) != self.size:
            raise EncodingError(f"expected {self.size} bytes, got {len(value)}")
        return value

    def from_wire(self, raw: object) -> object:
        return self.to_wire(raw)  # the same check both ways: the wire value is the value


@dataclasses.dataclass(frozen=True)
class VarBytes(Codec):
    """Byte string of at most ``max_len`` bytes."""

    max_len: int

    def to_wire(self, value: object) -> Wire:
        if type(value) is not bytes:
            raise EncodingError(f"expected bytes, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise EncodingError(f"byte string longer than {self.max_len}")
        return value

    def from_wire(self, raw: object) -> object:
        return self.to_wire(raw)  # the same check both ways: the wire value is the value


@dataclasses.dataclass(frozen=True)
class ListOf(Codec):
    """Homogeneous list (a tuple in Python) of at most ``max_len`` items.

    ``strictly_increasing`` makes set-like lists canonical: one order, no duplicates.
    """

    item: Codec
    max_len: int
    strictly_increasing: bool = False

    def splices(self) -> bool:
        return self.item.splices()

    def _check_order(self, items: Sequence[Any]) -> None:
        if self.strictly_increasing and any(a >= b for a, b in itertools.pairwise(items)):
            raise EncodingError("list must be strictly increasing (sorted, no duplicates)")

    def _check(self, value: object) -> tuple[Any, ...]:
        if type(value) is not tuple:
            raise EncodingError(f"expected tuple, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise EncodingError(f"list longer than {self.max_len}")
        self._check_order(value)
        return value

    def to_wire(self, value: object) -> Wire:
        return [self.item.to_wire(v) for v in self._check(value)]

    def pack(self, value: object, *, splice: bool = False) -> bytes:
        items = self._check(value)
        # splice when asked, or when the items carry memoised encodings (a decoded block's
        # transactions); fresh items (undo entries) pack faster as one msgpack call
        if self.item.splices() and items and (splice or _memoised(items[0])):
            item_pack = self.item.pack
            return array_header(len(items)) + b"".join(
                [item_pack(v, splice=splice) for v in items])
        return _pack([self.item.to_wire(v) for v in items])

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

    def splices(self) -> bool:
        return True

    def _check(self, value: object) -> object:
        if type(value) is not self.cls:
            raise EncodingError(f"expected {self.cls.__name__}, got {type(value).__name__}")
        return value

    def to_wire(self, value: object) -> Wire:
        return _to_wire(self._check(value), ())

    def pack(self, value: object, *, splice: bool = False) -> bytes:
        return _encoding(self._check(value), splice)  # memoised on the nested object

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
_SPLICES: dict[type[Any], bool] = {}
_WIRE: dict[type[Any], tuple[tuple[str, Callable[[object], Wire]], ...]] = {}
# attribute names of the per-instance memo (kept in the instance __dict__, not a field)
_ENCODING_MEMO = "_canonical_encoding"
_ID_MEMO = "_canonical_id"


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
    cls = type(obj)
    if omit:
        return [codec.to_wire(getattr(obj, name)) for name, codec in schema(cls)
                if name not in omit]
    converters = _WIRE.get(cls)
    if converters is None:
        _splices(cls)  # (the hot path in `_encoding` relies on both caches being filled)
        converters = _WIRE[cls] = tuple((name, codec.to_wire) for name, codec in schema(cls))
    return [to_wire(getattr(obj, name)) for name, to_wire in converters]


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


def memo(obj: object, name: str, compute: Callable[[], T]) -> T:
    """``compute()`` once per (frozen) instance: stored in its ``__dict__`` under ``name``.

    Only for values that are a pure function of the instance's fields. Instances without a
    ``__dict__`` (slotted classes) simply recompute.
    """
    store: dict[str, Any] | None = getattr(obj, "__dict__", None)
    if store is None:
        return compute()
    value: T | None = store.get(name)
    if value is None:
        value = store[name] = compute()
    return value


def _memoised(obj: object) -> bool:
    store: dict[str, Any] | None = getattr(obj, "__dict__", None)
    return store is not None and _ENCODING_MEMO in store


def _splices(cls: type[Any]) -> bool:
    cached = _SPLICES.get(cls)
    if cached is None:
        cached = _SPLICES[cls] = any(codec.splices() for _, codec in schema(cls))
    return cached


def _encode_fields(obj: object, omit: tuple[str, ...], splice: bool = False) -> bytes:
    cls = type(obj)
    if not _splices(cls):
        return _pack(_to_wire(obj, omit))
    fields = [(name, codec) for name, codec in schema(cls) if name not in omit]
    return array_header(len(fields)) + b"".join(
        [codec.pack(getattr(obj, name), splice=splice) for name, codec in fields])


def _encoding(obj: object, splice: bool) -> bytes:
    """The full encoding, memoised on the instance (unless its class opts out)."""
    cls = type(obj)
    if not getattr(cls, "MEMOISE", True):
        converters = _WIRE.get(cls)
        if converters is not None and not _SPLICES[cls]:
            # hot path for small records (state values): one msgpack call, no memo
            return msgpack.packb(  # type: ignore[no-any-return]
                [to_wire(getattr(obj, name)) for name, to_wire in converters], use_bin_type=True)
        return _encode_fields(obj, (), splice)
    store: dict[str, Any] | None = getattr(obj, "__dict__", None)
    if store is None:
        return _encode_fields(obj, (), splice)
    data: bytes | None = store.get(_ENCODING_MEMO)
    if data is None:
        data = store[_ENCODING_MEMO] = _encode_fields(obj, (), splice)
    return data


def encode(obj: object, *, omit: tuple[str, ...] = ()) -> bytes:
    """Canonical bytes of ``obj``; ``omit`` drops fields (unsigned tx, header commitment).

    The full encoding is memoised on the instance (objects are frozen); partial ones are not.
    """
    if omit:
        return _encode_fields(obj, omit)
    return _encoding(obj, False)



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
    # re-encode (splicing, so nested objects keep their encodings too) and compare
    if _encoding(obj, True) != data:
        raise EncodingError(f"{cls.__name__}: non-canonical encoding", rule="non_canonical")
    return obj


def object_id(obj: object) -> bytes:
    """Domain-separated BLAKE2b-256 of the canonical bytes (tag = the class's ``TAG``)."""
    tag: bytes = type(obj).TAG  # type: ignore[attr-defined]
    return memo(obj, _ID_MEMO, lambda: tagged_hash(tag, encode(obj)))


class Canonical:
    """Mixin giving a canonical dataclass ``encode``/``decode``/``id`` via the helpers above."""

    TAG: ClassVar[bytes]
    MAX_SIZE: ClassVar[int] = DEFAULT_MAX_SIZE
    # memoise the encoding on instances; small short-lived records (state values, undo
    # entries) opt out: they are encoded once, and a memo costs each instance a dict
    MEMOISE: ClassVar[bool] = True

    def encode(self) -> bytes:
        return encode(self)

    @classmethod
    def decode(cls, data: bytes, *, max_size: int | None = None) -> Self:
        return decode(cls, data, max_size=cls.MAX_SIZE if max_size is None else max_size)

    def id(self) -> bytes:
        return object_id(self)
