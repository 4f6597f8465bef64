"""The fast paths give exactly the results of the straightforward definitions.

Memoised and spliced encodings equal plain msgpack of the wire form; the signing bytes cut
from the encoding equal the generic encoding without the signature; the vectorised lane sum
equals adding pairs one at a time; the lazily folded state root equals a from-scratch root
after any sequence of writes, reverts and blocks; the record cache never serves stale values;
and a block applied with pre-verified signatures ends in the same state as one checked inline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tracemalloc

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.block import Block
from consensus.genesis import dev_seed
from consensus.transition import apply_transaction
from consensus.tx import SIGNING_DOMAIN, Transaction, public_key, signatures_valid
from consensus.validation import connect_block
from contracts import Transfer
from core.encoding import _to_wire, array_header, decode, encode
from core.errors import EncodingError, TransactionError
from core.interfaces import MemoryKV
from core.lthash import ELEMENT_CACHE_ENTRIES, ElementCache, LtHash, element_bytes, lane_sum
from core.records import Account, StakeRecord, Unbonding
from core.state import RECORD_CACHE_ENTRIES, RecordCache, State, root_from_items
from tests.framework.chain import Chain, make_block, new_chain, tx

ADDRESSES = [public_key(dev_seed(i)) for i in range(6)]


def plain(obj: object) -> bytes:
    """The reference encoding: one msgpack call over the whole wire form."""
    return msgpack.packb(_to_wire(obj, ()), use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize("length", [0, 1, 15, 16, 65535, 65536])
def test_array_header_matches_msgpack(length: int) -> None:
    assert array_header(length) == msgpack.packb([0] * length)[: len(array_header(length))]
    assert msgpack.packb([0] * length) == array_header(length) + b"\x00" * length


def test_block_encoding_spliced_equals_plain_and_is_memoised(chain: Chain) -> None:
    txs = [tx(1, n, Transfer(to=ADDRESSES[2], amount=1 + n)) for n in range(20)]
    block = make_block(chain, txs)
    data = plain(block)
    assert block.encode() == data
    decoded = Block.decode(data)
    # decoding re-encodes by splicing: every transaction's encoding is memoised on the way
    assert all("_canonical_encoding" in t.__dict__ for t in decoded.transactions)
    assert [t.encode() for t in decoded.transactions] == [plain(t) for t in txs]
    assert decoded.encode() is decoded.encode()  # memoised, not recomputed
    assert decoded == block and hash(decoded.header) == hash(block.header)
    # the memo is not a field: replace builds a fresh object with its own encoding
    other = dataclasses.replace(decoded.transactions[0], fee=999)
    assert other.encode() == plain(other) != decoded.transactions[0].encode()


def test_stake_record_nested_list_spliced_equals_plain() -> None:
    entries = tuple(Unbonding(release_height=h, amount=7 * h) for h in range(1, 20))
    for e in entries:
        e.encode()  # memoised items take the splicing path
    record = StakeRecord(bonded=5, unbonding=entries)
    assert record.encode() == plain(record)
    assert decode(StakeRecord, plain(record)) == record


def test_memoised_encoding_does_not_hide_non_canonical_input(chain: Chain) -> None:
    block = make_block(chain, [tx(1, 0, Transfer(to=ADDRESSES[2], amount=1))])
    data = block.encode()
    Block.decode(data)
    with pytest.raises(EncodingError) as info:
        Block.decode(data + b"\x00")
    assert info.value.rule == "trailing"


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(1, 2**64 - 1),
       st.binary(min_size=64, max_size=64))
def test_signing_bytes_equal_generic_encoding(nonce: int, fee: int, amount: int,
                                              signature: bytes) -> None:
    t = Transaction(chain_id=1337, sender=ADDRESSES[0], nonce=nonce, fee=fee,
                    payload=Transfer(to=ADDRESSES[1], amount=amount), signature=signature)
    assert t.signing_bytes() == SIGNING_DOMAIN + encode(t, omit=("signature",))


pairs = st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.binary(max_size=40)),
                 max_size=12)


@given(pairs, pairs)
def test_lane_sum_equals_one_at_a_time(added: list[tuple[bytes, bytes]],
                                       removed: list[tuple[bytes, bytes]]) -> None:
    one_by_one = LtHash()
    for key, value in added:
        one_by_one.add(key, value)
    for key, value in removed:
        one_by_one.remove(key, value)
    batched = LtHash()
    batched.update(add=added, remove=removed)
    assert batched.to_bytes() == one_by_one.to_bytes()
    only_added = LtHash()
    for key, value in added:
        only_added.add(key, value)
    assert lane_sum(added).tobytes() == only_added.to_bytes()


# a random program over a State: writes, snapshots and reverts, blocks and undos
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 5), st.integers(0, 3), st.integers(0, 2)),
        st.tuples(st.just("snapshot"), st.just(0), st.just(0), st.just(0)),
        st.tuples(st.just("revert"), st.just(0), st.just(0), st.just(0)),
        st.tuples(st.just("root"), st.just(0), st.just(0), st.just(0)),
        st.tuples(st.just("block"), st.just(0), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_lazy_root_equals_root_from_scratch(program: list[tuple[str, int, int, int]]) -> None:
    kv = MemoryKV()
    cache = RecordCache(max_entries=3)  # tiny: evictions happen
    elements = ElementCache(max_entries=2)
    state = State(kv, records=cache, elements=elements)
    snapshots = []
    undos = []  # (undo data, the stored items before that block)
    start = dict(kv.data)
    state.begin_block()
    for op, who, balance, nonce in program:
        if op == "set":
            state.set_account(ADDRESSES[who], Account(balance=balance, nonce=nonce))
        elif op == "snapshot":
            snapshots.append(state.snapshot())
        elif op == "revert" and snapshots:
            state.revert(snapshots.pop())
        elif op == "root":
            assert state.root() == root_from_items(kv.items())
        elif op == "block":
            undos.append((state.end_block(), start))
            start = dict(kv.data)
            snapshots.clear()
            state.begin_block()
        # a second view over the same store (sharing the cache) always agrees
        other = State(kv, records=cache)
        for address in ADDRESSES:
            assert other.account(address) == state.account(address)
    undos.append((state.end_block(), start))
    assert state.root() == root_from_items(kv.items())
    # undo every block, newest first: the exact earlier stores come back
    for undo, before in reversed(undos):
        state.apply_undo(undo)
        assert {k: v for k, v in kv.data.items() if not k.startswith(b"\x00")} == {
            k: v for k, v in before.items() if not k.startswith(b"\x00")}
        assert state.root() == root_from_items(kv.items())


def test_element_cache_only_serves_the_exact_pair() -> None:
    cache = ElementCache(max_entries=2)
    first = cache.computed(b"k", b"v1")
    assert cache.element(b"k", b"v1") is first == element_bytes(b"k", b"v1")
    assert cache.element(b"k", b"v2") == element_bytes(b"k", b"v2")  # other value: computed
    cache.computed(b"a", b"x")
    cache.computed(b"b", b"y")  # evicts k
    assert len(cache) == 2 and cache.element(b"k", b"v1") == first


#: bytes one full cache entry may hold (tracemalloc, fresh objects: the worst case);
#: measured at the default sizes: ~398 B for an account record and ~2,286 B for an element
RECORD_ENTRY_BYTES = 448
ELEMENT_ENTRY_BYTES = 2432


def _keys(count: int) -> list[bytes]:
    return [b"acct/" + hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(count)]


def test_a_full_record_cache_holds_its_entries_at_most_and_forgets_the_oldest() -> None:
    """The chain store's cache (default size) filled with twice its size of account
    records: ``RECORD_CACHE_ENTRIES`` entries, the newest, at most ``RECORD_ENTRY_BYTES``
    each (issue 12's soak: a cache that fills for hours shows as RSS growth)."""
    keys = _keys(2 * RECORD_CACHE_ENTRIES)
    tracemalloc.start()
    try:
        cache = RecordCache()
        for i, key in enumerate(keys):
            raw = Account(balance=10**12 + i, nonce=i).encode()
            cache.put(bytes(key), raw, Account.decode(raw))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cache) == RECORD_CACHE_ENTRIES
    newest = Account(balance=10**12 + len(keys) - 1, nonce=len(keys) - 1)
    assert cache.get(keys[-1], newest.encode()) == newest
    assert cache.get(keys[0], Account(balance=10**12, nonce=0).encode()) is None
    assert held <= RECORD_CACHE_ENTRIES * RECORD_ENTRY_BYTES, \
        f"{held / RECORD_CACHE_ENTRIES:.0f} B per entry"


def test_a_full_element_cache_holds_its_entries_at_most_and_forgets_the_oldest() -> None:
    keys = _keys(2 * ELEMENT_CACHE_ENTRIES)
    tracemalloc.start()
    try:
        cache = ElementCache()
        for i, key in enumerate(keys):
            cache.computed(bytes(key), Account(balance=1 + i, nonce=i).encode())
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cache) == ELEMENT_CACHE_ENTRIES
    last = Account(balance=len(keys), nonce=len(keys) - 1).encode()
    assert cache.element(keys[-1], last) is cache.element(keys[-1], last)  # cached
    first = Account(balance=1, nonce=0).encode()
    assert cache.element(keys[0], first) is not cache.element(keys[0], first)  # computed
    assert held <= ELEMENT_CACHE_ENTRIES * ELEMENT_ENTRY_BYTES, \
        f"{held / ELEMENT_CACHE_ENTRIES:.0f} B per entry"


def test_record_cache_never_serves_a_stale_record() -> None:
    kv = MemoryKV()
    cache = RecordCache()
    state = State(kv, records=cache)
    state.set_account(ADDRESSES[0], Account(balance=5, nonce=1))
    # someone else rewrites the stored bytes behind the cache's back
    kv.put(b"acct/" + ADDRESSES[0], Account(balance=9, nonce=2).encode())
    assert State(kv, records=cache).account(ADDRESSES[0]) == Account(balance=9, nonce=2)
    # and non-canonical stored bytes are still rejected (decoded with the full check)
    kv.put(b"acct/" + ADDRESSES[0], b"\x92\xcc\x05\x01")
    with pytest.raises(EncodingError):
        State(kv, records=cache).account(ADDRESSES[0])


def test_pre_verified_signatures_give_the_same_block_outcome(chain: Chain) -> None:
    txs = [tx(i % 3, i // 3, Transfer(to=ADDRESSES[4], amount=1 + i)) for i in range(9)]
    block = make_block(chain, txs)
    assert signatures_valid(block.transactions)
    inline, fast = new_chain(chain.config), new_chain(chain.config)
    undo_inline = connect_block(inline.state, block, params=chain.params)
    undo_fast = connect_block(fast.state, block, params=chain.params, signatures_verified=True)
    assert undo_inline == undo_fast
    assert inline.kv.data == fast.kv.data


def test_signatures_valid_reports_a_bad_signature(chain: Chain) -> None:
    good = tx(1, 0, Transfer(to=ADDRESSES[2], amount=1))
    bad = dataclasses.replace(good, signature=bytes(64))
    assert signatures_valid([good])
    assert not signatures_valid([good, bad])
    # without the flag the transition names the rule
    with pytest.raises(TransactionError) as info:
        apply_transaction(chain.state, bad, height=1, params=chain.params)
    assert info.value.rule == "tx.signature"


def test_block_decode_rejects_non_canonical_nested_bytes(chain: Chain) -> None:
    """Splicing re-encodes nested objects one by one: a non-canonical transaction inside a
    block, a padded list header, trailing and oversized input are all still rejected."""
    txs = [tx(1, 0, Transfer(to=ADDRESSES[2], amount=1)),
           tx(2, 0, Transfer(to=ADDRESSES[3], amount=2))]
    block = make_block(chain, txs)
    data = block.encode()
    assert Block.decode(data) == block
    second = txs[1].encode()
    nonce_at = 1 + 3 + 34  # array header, chain id 1337 (uint16), sender (bin8 of 32)
    assert second[nonce_at] == 0x00  # nonce 0 as a positive fixint
    padded_tx = second[:nonce_at] + b"\xcc\x00" + second[nonce_at + 1:]
    assert msgpack.unpackb(padded_tx) == msgpack.unpackb(second)  # same meaning to msgpack
    bad_forms = {
        "non_canonical": [
            data.replace(second, padded_tx),
            data.replace(array_header(2) + txs[0].encode(),
                         b"\xdc\x00\x02" + txs[0].encode()),  # array16 for 2 transactions
        ],
        "trailing": [data + b"\x90"],
    }
    for rule, forms in bad_forms.items():
        for bad in forms:
            assert bad != data
            with pytest.raises(EncodingError) as info:
                Block.decode(bad)
            assert info.value.rule == rule
    with pytest.raises(EncodingError) as info:
        Block.decode(data, max_size=len(data) - 1)
    assert info.value.rule == "oversized"
    with pytest.raises(EncodingError) as info:
        Transaction.decode(txs[0].encode() + b"\x00")
    assert info.value.rule == "trailing"
