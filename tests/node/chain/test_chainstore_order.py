"""Chain store properties on real LevelDB: arrival order does not matter, and the signature
pool never changes a verdict.

* The same set of blocks (four branches, one of them carrying a block with a wrong state
  root and descendants of it) fed to a fresh `ChainStore` in any order ends on the same tip
  with byte-for-byte the same state, equal to the reference chain computed in memory.
* A block large enough for the parallel signature check is accepted when every signature
  is good, and rejected (marked invalid, state untouched) when one is bad.
* The ASERT halflife comes from the genesis config.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.block import Block
from consensus.genesis import dev_config, parse_genesis_config
from consensus.validation import connect_block
from core.errors import ConsensusError, GenesisError
from core.state import root_from_items
from node.chain.chainstore import MIN_PARALLEL_SIGNATURES, STATE, ChainStore
from tests.framework.chain import (
    NOW,
    Chain,
    extend,
    fork,
    make_block,
    new_chain,
    state_items,
    transfer,
)


@dataclasses.dataclass
class BlockSet:
    blocks: list[Block]
    best: Chain  # the reference chain the store must end on
    invalid: bytes  # the block with the wrong state root


def build_block_set() -> BlockSet:
    """A tree of blocks: A (4), B off A[1] (3, the best valid), C off genesis (2), and D off
    B[0] whose second block claims a wrong state root and has two descendants."""
    base = new_chain()
    a = fork(base)
    a_blocks = [extend(a, [transfer(1, n, amount=10 + n)], seed=n) for n in range(4)]
    b = fork(base)
    for block in a_blocks[:2]:
        extend_from(b, block)
    b_blocks = [extend(b, [transfer(2, n), transfer(1, 2 + n, to=101)], seed=20 + n)
                for n in range(3)]
    c = fork(base)
    c_blocks = [extend(c, [transfer(3, n, amount=77)], seed=40 + n) for n in range(2)]
    d = fork(base)
    for block in [*a_blocks[:2], b_blocks[0]]:
        extend_from(d, block)
    d1 = extend(d, [transfer(3, 0, to=102)], seed=60)
    bad = make_block(d, [transfer(3, 1)], seed=61, state_root=b"\x02" * 32)
    d.headers.append(bad.header)  # descendants hang off the bad block
    d_rest = [make_block(d, [], seed=62)]
    d.headers.append(d_rest[0].header)
    d_rest.append(make_block(d, [], seed=63))
    # D's valid prefix reaches height 4, B's tip is at height 5, D's tip at 7 (invalid)
    blocks = [*a_blocks, *b_blocks, *c_blocks, d1, bad, *d_rest]
    return BlockSet(blocks=blocks, best=b, invalid=bad.header.block_id())


def extend_from(chain: Chain, block: Block) -> None:
    """Connect an existing block to an in-memory chain (a shared prefix of two branches)."""
    connect_block(chain.state, block, params=chain.params)
    chain.headers.append(block.header)


BLOCK_SET = build_block_set()


@settings(max_examples=25, deadline=None)
@given(order=st.permutations(range(len(BLOCK_SET.blocks))))
def test_any_arrival_order_ends_on_same_tip_and_state(order: list[int]) -> None:
    best = BLOCK_SET.best
    with tempfile.TemporaryDirectory(prefix="pouw-order-") as tmp:
        store = ChainStore.open(Path(tmp) / "db", genesis=best.config)
        try:
            for i in order:
                try:
                    store.add_block(BLOCK_SET.blocks[i], now=NOW)
                except ConsensusError as exc:  # a child of the known-invalid block
                    assert exc.rule == "header.parent_invalid"
            assert store.tip_id == best.tip.block_id()
            assert store.state_root() == best.state.root() == best.tip.state_root
            items = {k[len(STATE):]: v for k, v in store.db.iterate_prefix(STATE)}
            assert items == state_items(best)
            assert root_from_items(items.items()) == store.state_root()
            assert store.canonical_ids() == [h.block_id() for h in best.headers]
            assert store.tree.is_invalid(BLOCK_SET.invalid)
        finally:
            store.close()
        # and the verdict is the same after a restart
        reopened = ChainStore.open(Path(tmp) / "db", genesis=best.config)
        assert reopened.tip_id == best.tip.block_id()
        assert reopened.state_root() == best.tip.state_root
        reopened.close()


def big_block(chain: Chain, *, bad_signature_at: int | None = None) -> Block:
    """A block with enough transfers (from four senders) for the parallel signature check."""
    count = MIN_PARALLEL_SIGNATURES + 8
    txs = [transfer(i % 4, i // 4, to=100 + i) for i in range(count)]
    if bad_signature_at is not None:
        victim = txs[bad_signature_at]
        txs[bad_signature_at] = dataclasses.replace(
            victim, signature=bytes([victim.signature[0] ^ 1]) + victim.signature[1:])
        return make_block(chain, txs, state_root=chain.tip.state_root)
    return make_block(chain, txs)


@pytest.mark.parametrize("threads", [1, 2])
def test_parallel_signature_check_accepts_good_and_rejects_bad(tmp_path: Path,
                                                               threads: int) -> None:
    base = new_chain()
    store = ChainStore.open(tmp_path / "db", genesis=base.config, signature_threads=threads)
    try:
        bad = big_block(fork(base), bad_signature_at=MIN_PARALLEL_SIGNATURES)
        assert not store.verify_signatures(bad.transactions)
        update = store.add_block(bad, now=NOW)
        assert update.invalid == [bad.header.block_id()] and update.connected == []
        assert store.tip_id == base.tip.block_id()
        assert store.state_root() == base.state.root()

        a = fork(base)
        good = big_block(a)
        assert store.verify_signatures(good.transactions) is (threads > 1)
        extend_from(a, good)
        update = store.add_block(good, now=NOW)
        assert [b.header.block_id() for b in update.connected] == [good.header.block_id()]
        assert store.state_root() == a.state.root()
        assert {k[len(STATE):]: v for k, v in store.db.iterate_prefix(STATE)} == state_items(a)
    finally:
        store.close()


def test_asert_halflife_comes_from_the_genesis_config(tmp_path: Path) -> None:
    default = dev_config()
    assert default.params.asert_halflife == 288 * default.params.target_block_time
    config = dev_config(asert_halflife_blocks=36)
    assert config.params.asert_halflife == 36 * config.params.target_block_time
    store = ChainStore.open(tmp_path / "db", genesis=config)
    assert store.difficulty.halflife == 36 * config.params.target_block_time
    store.close()
    with pytest.raises(GenesisError):
        parse_genesis_config({"chain_id": 1, "target_block_time": 10, "initial_target": 1,
                              "unbonding_delay": 1, "asert_halflife_blocks": 0})
