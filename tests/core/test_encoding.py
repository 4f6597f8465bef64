"""Canonical encoding: round trips, and rejection of every non-canonical form."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.block import Block, BlockHeader
from consensus.genesis import dev_seed
from consensus.tx import Transaction, sign_transaction
from contracts import BeginUnstake, RegisterSwarmNode, Stake, Transfer, Withdraw
from core.encoding import (
    U64,
    U256,
    Canonical,
    Hash32,
    Signature64,
    decode,
    encode,
    object_id,
    tagged_hash,
)
from core.errors import ConsensusError, EncodingError
from core.records import StakeRecord, SwarmNode, Unbonding

u64 = st.integers(min_value=0, max_value=2**64 - 1)
h32 = st.binary(min_size=32, max_size=32)


@dataclasses.dataclass(frozen=True)
class Sample(Canonical):
    TAG: ClassVar[bytes] = b"test/sample"
    MAX_SIZE: ClassVar[int] = 200
    a: U64
    big: U256
    h: Hash32
    sig: Signature64


samples = st.builds(
    Sample, a=u64, big=st.integers(0, 2**256 - 1), h=h32, sig=st.binary(min_size=64, max_size=64)
)
payloads = st.one_of(
    st.builds(Transfer, to=h32, amount=u64),
    st.builds(Stake, amount=u64),
    st.builds(BeginUnstake, amount=u64),
    st.builds(Withdraw),
    st.builds(
        RegisterSwarmNode,
        models=st.lists(h32, max_size=5, unique=True).map(lambda x: tuple(sorted(x))),
        endpoint=st.binary(max_size=128),
    ),
)
transactions = st.builds(
    Transaction,
    chain_id=u64,
    sender=h32,
    nonce=u64,
    fee=u64,
    payload=payloads,
    signature=st.binary(min_size=64, max_size=64),
)
headers = st.builds(
    BlockHeader,
    version=u64, chain_id=u64, height=u64, parent_hash=h32, timestamp=u64,
    target=st.integers(0, 2**256 - 1), tx_root=h32, state_root=h32, miner=h32,
    root_a=h32, root_b=h32, m=u64, k=u64, n=u64, r=u64, certificate=st.binary(max_size=300),
)


@given(samples)
def test_sample_round_trip(obj: Sample) -> None:
    data = obj.encode()
    assert Sample.decode(data) == obj
    assert msgpack.unpackb(data)[0] == obj.a  # an array in declared field order


@given(transactions)
def test_transaction_round_trip(tx: Transaction) -> None:
    data = tx.encode()
    assert Transaction.decode(data) == tx
    assert encode(Transaction.decode(data)) == data


@given(headers)
def test_header_round_trip(header: BlockHeader) -> None:
    assert BlockHeader.decode(header.encode()) == header


def test_records_round_trip() -> None:
    rec = StakeRecord(bonded=5, unbonding=(Unbonding(release_height=9, amount=3),))
    assert StakeRecord.decode(rec.encode()) == rec
    node = SwarmNode(models=(bytes(32), b"\x01" * 32), endpoint=b"tcp://x")
    assert SwarmNode.decode(node.encode()) == node


def _sample_wire(**changes: object) -> list[object]:
    wire: list[object] = [5, (7).to_bytes(32, "big"), b"h" * 32, b"s" * 64]
    for index, value in changes.items():
        wire[int(index[1:])] = value
    return wire


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (_sample_wire(f0=-1), "negative int"),
        (_sample_wire(f0=5.0), "float"),
        (_sample_wire(f0=True), "bool"),
        (_sample_wire(f0=None), "nil"),
        (_sample_wire(f0=2**64), "int beyond u64 (as bytes)"),
        (_sample_wire(f1=(7).to_bytes(31, "big")), "short big int"),
        (_sample_wire(f2=b"h" * 31), "31-byte hash"),
        (_sample_wire(f2=b"h" * 33), "33-byte hash"),
        (_sample_wire(f2="h" * 32), "str instead of bin"),
        (_sample_wire(f3=b"s" * 63), "63-byte signature"),
        (_sample_wire()[:3], "missing field"),
        ([*_sample_wire(), 1], "extra field"),
        ({"a": 5}, "map"),
        ({}, "empty map"),
        (msgpack.ExtType(1, b"x"), "ext type"),
        ("text", "top-level str"),
        (5, "top-level int"),
    ],
)
def test_rejects_wrong_types(wire: object, why: str) -> None:
    if why == "int beyond u64 (as bytes)":
        wire = _sample_wire(f0=(2**64).to_bytes(9, "big"))
    data = msgpack.packb(wire, use_bin_type=True)
    with pytest.raises(EncodingError):
        Sample.decode(data)


def test_wrong_type_errors_are_consensus_errors() -> None:
    with pytest.raises(ConsensusError) as info:
        Sample.decode(b"\xc0")
    assert info.value.rule == "encoding"


def test_rejects_non_minimal_int() -> None:
    good = Sample(a=5, big=7, h=b"h" * 32, sig=b"s" * 64).encode()
    assert good[1:2] == b"\x05"  # positive fixint
    for padded in (b"\xcc\x05", b"\xcd\x00\x05", b"\xce\x00\x00\x00\x05",
                   b"\xcf" + (5).to_bytes(8, "big")):
        bad = good[:1] + padded + good[2:]
        assert msgpack.unpackb(bad) == msgpack.unpackb(good)  # same meaning to plain msgpack
        with pytest.raises(EncodingError) as info:
            Sample.decode(bad)
        assert info.value.rule == "non_canonical"


def test_rejects_non_minimal_lengths() -> None:
    good = Sample(a=5, big=7, h=b"h" * 32, sig=b"s" * 64).encode()
    assert good[0] == 0x94  # fixarray of 4
    bad = b"\xdc\x00\x04" + good[1:]  # array16 header for the same array
    with pytest.raises(EncodingError, match="non-canonical"):
        Sample.decode(bad)
    # bin16 instead of bin8 for the hash
    i = good.index(b"\xc4\x20" + b"h" * 32)
    bad = good[:i] + b"\xc5\x00\x20" + good[i + 2:]
    with pytest.raises(EncodingError, match="non-canonical"):
        Sample.decode(bad)


def test_rejects_trailing_bytes() -> None:
    good = Sample(a=5, big=7, h=b"h" * 32, sig=b"s" * 64).encode()
    for tail in (b"\x00", b"\xc0", good):
        with pytest.raises(EncodingError) as info:
            Sample.decode(good + tail)
        assert info.value.rule in {"trailing", "oversized"}
    with pytest.raises(EncodingError) as info:
        Sample.decode(good + b"\x00")
    assert info.value.rule == "trailing"


def test_rejects_truncated() -> None:
    good = Sample(a=5, big=7, h=b"h" * 32, sig=b"s" * 64).encode()
    for cut in range(len(good)):
        with pytest.raises(EncodingError):
            Sample.decode(good[:cut])


def test_oversized_checked_before_unpacking() -> None:
    # 10 MB of a valid-looking bin32 header: rejected by length alone, never unpacked
    huge = b"\xc6" + (10**7).to_bytes(4, "big") + bytes(10**7)
    with pytest.raises(EncodingError) as info:
        decode(Sample, huge, max_size=1000)
    assert info.value.rule == "oversized"
    # a short input that *claims* a huge array is stopped by msgpack's limits
    with pytest.raises(EncodingError):
        decode(Sample, b"\xdd\xff\xff\xff\xff", max_size=1000)


def test_rejects_non_bytes_input() -> None:
    with pytest.raises(EncodingError):
        Sample.decode(bytearray(b"\x90"))  # type: ignore[arg-type]


def test_set_lists_must_be_sorted_and_unique() -> None:
    a, b = bytes(32), b"\x01" * 32
    for models in ((b, a), (a, a)):
        wire = [list(models), b""]
        with pytest.raises(EncodingError, match="strictly increasing"):
            SwarmNode.decode(msgpack.packb(wire, use_bin_type=True))
        with pytest.raises(EncodingError):
            SwarmNode(models=models).encode()


def test_encode_refuses_invalid_values() -> None:
    with pytest.raises(EncodingError):
        Sample(a=-1, big=0, h=b"h" * 32, sig=b"s" * 64).encode()
    with pytest.raises(EncodingError):
        Sample(a=0, big=2**256, h=b"h" * 32, sig=b"s" * 64).encode()
    with pytest.raises(EncodingError):
        Sample(a=0, big=0, h=b"h" * 31, sig=b"s" * 64).encode()


def test_unknown_payload_kind_rejected() -> None:
    tx = Transaction(chain_id=1, sender=bytes(32), nonce=0, fee=0,
                     payload=Stake(amount=1), signature=bytes(64))
    wire = msgpack.unpackb(tx.encode())
    wire[4][0] = 99
    with pytest.raises(EncodingError, match="unknown kind"):
        Transaction.decode(msgpack.packb(wire, use_bin_type=True))


@given(transactions, st.data())
def test_mutations_decode_canonically_or_fail(tx: Transaction, data: st.DataObject) -> None:
    raw = bytearray(tx.encode())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255))
    try:
        decoded = Transaction.decode(bytes(raw))
    except EncodingError:
        return
    assert decoded.encode() == bytes(raw)  # whatever decodes is canonical


@given(st.binary(max_size=400))
def test_random_bytes_only_raise_encoding_error(data: bytes) -> None:
    try:
        obj = BlockHeader.decode(data)
    except EncodingError:
        return
    assert obj.encode() == data


def test_ids_are_domain_separated() -> None:
    s = Sample(a=5, big=7, h=b"h" * 32, sig=b"s" * 64)
    assert object_id(s) == tagged_hash(b"test/sample", s.encode())
    assert object_id(s) != tagged_hash(b"pouw/tx", s.encode())
    assert len(object_id(s)) == 32
    with pytest.raises(ValueError):
        tagged_hash(b"x" * 17, b"")


def test_block_round_trip_with_transactions() -> None:

    header = BlockHeader(
        version=1, chain_id=1, height=1, parent_hash=bytes(32), timestamp=5, target=2**255,
        tx_root=bytes(32), state_root=bytes(32), miner=bytes(32), root_a=bytes(32),
        root_b=bytes(32), m=8, k=64, n=8, r=16, certificate=b"cert",
    )
    txs = tuple(
        sign_transaction(dev_seed(0), chain_id=1, nonce=i, fee=1, payload=Withdraw())
        for i in range(20)
    )
    block = Block(header=header, transactions=txs)
    data = block.encode()
    assert Block.decode(data) == block
    with pytest.raises(EncodingError):
        Block.decode(data, max_size=len(data) - 1)
