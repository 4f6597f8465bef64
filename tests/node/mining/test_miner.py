"""The miner: templates that validate, mempool transactions paid, stale switching, threading."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from aiohttp.test_utils import TestClient, TestServer

from consensus.block import Block, BlockHeader, header_commitment
from consensus.genesis import dev_config, dev_seed
from consensus.tx import public_key
from core.state import State
from node.chain.chainstore import ChainStore
from node.mining.jobs import set_cpu_threads
from node.mining.miner import ExactProduct, Miner, MinerConfig, build_template, with_job
from pouw import ParamsError, PouwParams, get_backend, mine_product, native, operand_roots
from tests.framework.chain import transfer
from tests.framework.nodes import Host, HostConfig
from tests.framework.util import wait_for

pytestmark = pytest.mark.usefixtures("restore_torch_threads")

GENESIS_TIME = dev_config().timestamp


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path, clock=lambda: GENESIS_TIME + 100)
    yield h
    h.close()


def mine_template_block(host: Host, *, seed: int = 0, now: int | None = None) -> Block:
    """A block from build_template, mined outside the Miner (checks the template alone)."""

    template = build_template(host.chain, host.mempool, miner=public_key(dev_seed(50)),
                              now=int(host.clock()) if now is None else now)
    rng = np.random.default_rng(seed)
    a = rng.integers(-64, 64, size=(8, 64), dtype=np.int8)
    b = rng.integers(-64, 64, size=(64, 8), dtype=np.int8)
    root_a, root_b = operand_roots(a, b)

    header = with_job(template.header, root_a, root_b, PouwParams(m=8, k=64, n=8, r=16))
    result = mine_product(a, b, commitment=header_commitment(header), target=header.target,
                          r=16)
    assert result.wins
    header = dataclasses.replace(header, certificate=result.wins[0].certificate.encode())
    return Block(header=header, transactions=template.transactions)


def test_template_block_is_valid_on_a_fresh_store(host: Host, tmp_path: Path) -> None:
    tx = transfer(0, 0, 60, 1234, fee=7)
    host.mempool.add(tx, tip=host.chain.tip_view(), now=int(host.clock()))  # type: ignore[arg-type]
    root_before = host.chain.state_root()
    block = mine_template_block(host)
    assert host.chain.state_root() == root_before  # the template never wrote the store
    assert block.transactions == (tx,)
    fresh = ChainStore.open(tmp_path / "fresh", genesis=dev_config())
    try:
        update = fresh.add_block(block, now=int(host.clock()))
        assert [b.header.block_id() for b in update.connected] == [block.header.block_id()]
        state = State(fresh.state_view())
        params = fresh.params
        assert state.account(public_key(dev_seed(50))).balance == params.block_subsidy + 7
        assert state.account(public_key(dev_seed(60))).balance == 1234
    finally:
        fresh.close()


def test_template_skips_transactions_that_no_longer_apply(host: Host) -> None:
    """A block confirmed a conflicting tx before the mempool heard: the template skips it."""
    pending = transfer(0, 0, 60, 5, fee=7)
    conflicting = transfer(0, 0, 60, 6, fee=7)  # same sender and nonce
    host.mempool.add(conflicting, tip=host.chain.tip_view(), now=0)  # type: ignore[arg-type]
    block = mine_template_block(host)
    assert block.transactions == (conflicting,)
    host.mempool = type(host.mempool)(params=host.chain.params)
    host.mempool.add(pending, tip=host.chain.tip_view(), now=0)  # type: ignore[arg-type]
    host.chain.add_block(block, now=int(host.clock()))  # the mempool is not updated (a race)
    second = mine_template_block(host, seed=1)
    assert second.transactions == ()
    host.chain.add_block(second, now=int(host.clock()))
    assert host.chain.tip_id == second.header.block_id()


async def test_generate_mines_blocks_and_pays_mempool_txs(host: Host) -> None:
    miner = Miner(host, config=MinerConfig(seed=1), clock=host.clock)
    tx = transfer(0, 0, 60, 1000, fee=99)
    host.mempool.add(tx, tip=host.chain.tip_view(), now=0)  # type: ignore[arg-type]
    try:
        ids = await miner.generate(3, timeout=60)
    finally:
        miner.stop()
    assert len(ids) == 3
    assert host.chain.height == 3
    assert [host.chain.block_id_at(h).hex() for h in (1, 2, 3)] == ids  # type: ignore[union-attr]
    first = host.chain.get_block(bytes.fromhex(ids[0]))
    assert first is not None and first.transactions == (tx,)
    assert len(host.mempool) == 0
    state = State(host.chain.state_view())
    subsidy = host.chain.params.block_subsidy
    assert state.account(miner.address).balance == 10**12 + 3 * subsidy + 99
    assert state.account(public_key(dev_seed(60))).balance == 1000
    assert state.account(tx.sender).balance == 10**12 - 1000 - 99
    stats = miner.stats()
    assert stats["blocks_mined"] == 3
    assert stats["tickets_per_s"] > 0
    assert stats["nonuseful_macs"] >= 3 * 64 * 256 * 64
    assert stats["useful_macs"] == 0
    assert stats["backend"] == miner.session.backend.name


BIG = (4096, 4096, 2048, 256)  # ~0.2-0.5 s per product on a 2-vCPU CPU (k at most K_MAX)


@pytest.fixture
def hard_host(tmp_path: Path) -> Iterator[Host]:
    """A chain whose target nobody meets (until the dev escape after 2 block times)."""
    h = Host(tmp_path, genesis=dev_config(initial_target=1), clock=lambda: GENESIS_TIME + 5)
    yield h
    h.close()


async def test_tip_change_makes_the_running_job_stale(hard_host: Host) -> None:
    host = hard_host
    miner = Miner(host, config=MinerConfig(shape=BIG, seed=2), clock=host.clock)
    miner.start(asyncio.get_running_loop())
    try:
        await wait_for(lambda: miner._round is not None)
        first_template = miner._round[0]  # type: ignore[index]
        assert first_template.parent_id == host.chain.genesis_id
        # another miner's block arrives: timestamp past the dev escape, so it meets MAX_TARGET
        block = mine_template_block(host, now=GENESIS_TIME + 30)
        await host.submit_block(block)
        assert host.chain.tip_id == block.header.block_id()
        await wait_for(lambda: miner.stats()["stale_rounds"] >= 1)
        await wait_for(lambda: miner._round is not None
                       and miner._round[0].parent_id == block.header.block_id())
        assert miner.stats()["blocks_mined"] == 0
    finally:
        miner.stop()
    assert miner.stats()["tickets_evaluated"] > 0


async def test_mining_does_not_starve_the_event_loop(tmp_path: Path) -> None:
    """The API answers while a mining round runs: many requests complete between two ends
    of rounds (a miner on the event loop would answer at most one per round). Counted in
    rounds, not timed: a loaded machine makes both slower alike."""
    host = Host(tmp_path, genesis=dev_config(initial_target=1), clock=lambda: GENESIS_TIME + 5,
                mine=True, mining_shape=BIG)
    await host.attach_mining()  # a mining node: the miner starts at once, on a target nobody meets
    miner = host.miner
    assert isinstance(miner, Miner) and host.jobs is not None
    client = TestClient(TestServer(host.app))
    await client.start_server()
    try:
        await wait_for(lambda: miner.stats()["rounds"] >= 1, timeout=120)
        slowest = 0.0
        in_this_round = most_in_a_round = 0
        round_seen = miner.stats()["rounds"]
        async with asyncio.timeout(300):
            while most_in_a_round < 5:
                started = time.perf_counter()
                response = await client.get("/api/v1/miner")
                assert response.status == 200
                body = await response.json()
                slowest = max(slowest, time.perf_counter() - started)
                rounds = miner.stats()["rounds"]
                in_this_round = in_this_round + 1 if rounds == round_seen else 0
                round_seen = rounds
                most_in_a_round = max(most_in_a_round, in_this_round)
                await asyncio.sleep(0.02)  # pacing the requests, not a wait
        assert body["running"] is True
        print(f"slowest API answer while mining: {slowest * 1000:.1f} ms")
    finally:
        await client.close()
        host.close()


async def test_dev_chain_is_paced_while_every_round_wins(tmp_path: Path) -> None:
    """Each dev block waits 0.5-1.5x the interval after its parent, drawn from (miner,
    parent): two paced miners rarely offer siblings at once."""
    now = [GENESIS_TIME + 100.0]
    host = Host(tmp_path, clock=lambda: now[0])
    miner = Miner(host, config=MinerConfig(trivial_block_interval=5), clock=host.clock)
    miner.start(asyncio.get_running_loop())
    try:
        await wait_for(lambda: host.chain.height == 1)
        parent = host.chain.tip_header.timestamp
        delay = miner._paced_delay(host.chain.tip_id)
        assert 2.5 <= delay < 7.5
        now[0] = parent + delay - 0.2
        await asyncio.sleep(0.7)
        assert host.chain.height == 1  # not yet due on the miner's clock
        now[0] = parent + delay + 0.01
        await wait_for(lambda: host.chain.height >= 2)
        # the template may predate the clock's last step by a moment: the timestamp is the
        # clock's when the template was built, at most now
        assert parent < host.chain.tip_header.timestamp <= int(now[0])
        other = Miner(host, config=MinerConfig(trivial_block_interval=5,
                                               address=bytes([7]) * 32), clock=host.clock)
        delays = {m._paced_delay(bytes([k]) * 32) for m in (miner, other) for k in range(8)}
        assert len(delays) == 16 and all(2.5 <= d < 7.5 for d in delays)
    finally:
        miner.stop()
        host.close()


async def test_generate_mines_exactly_the_blocks_asked_for_while_the_loop_lags(
        tmp_path: Path) -> None:
    """A node that does not mine on its own mines exactly what generate() asks for. The
    worker thread credits a block to generate() through the loop; on a loaded machine it
    may start its next round before the loop has run that credit (issue 12: a second block
    after ``generate(victim, 1)``). Here the loop is held busy right after each block's
    submission returns, so the worker always gets there first; every block is due at once
    on this clock (10 s per reading)."""
    ticks = itertools.count()
    host = Host(tmp_path, clock=lambda: GENESIS_TIME + 100 + 10 * next(ticks))
    miner = Miner(host, config=MinerConfig(seed=5), clock=host.clock)
    loop = asyncio.get_running_loop()

    def hold_the_loop(_header: BlockHeader) -> None:
        # runs two loop iterations later: after the miner thread got its submission's
        # answer, before the credit it then schedules
        loop.call_soon(loop.call_soon, time.sleep, 1.0)

    host.add_tip_listener(hold_the_loop)
    ids: list[str] = []
    try:
        try:
            for _ in range(3):
                ids += await miner.generate(1, timeout=60)
        finally:
            await asyncio.to_thread(miner.stop)  # the loop keeps serving a block in flight
        assert host.chain.height == 3, f"{host.chain.height} blocks for 3 asked"
        assert [host.chain.block_id_at(h).hex()  # type: ignore[union-attr]
                for h in (1, 2, 3)] == ids
    finally:
        host.close()


async def test_generate_includes_what_the_pool_held_when_asked(tmp_path: Path) -> None:
    """A template made before generate() was called (here by the swarm's inference, and
    kept for a long refresh) is not reused for its blocks: a transaction the pool took
    before the call is in the first block (issue 12: a generated block without the
    transaction every node's pool held)."""
    host = Host(tmp_path, clock=lambda: GENESIS_TIME + 0.5)  # block 1 not yet due: paced
    miner = Miner(host, config=MinerConfig(seed=6, template_refresh=600.0), clock=host.clock)
    miner.start(asyncio.get_running_loop(), continuous=False)
    try:
        rng = np.random.default_rng(0)
        a = rng.integers(-64, 64, size=(8, 64), dtype=np.int8)
        b = rng.integers(-64, 64, size=(64, 8), dtype=np.int8)
        await asyncio.to_thread(miner.mine_product, a, b)  # makes (and caches) a template
        tx = transfer(0, 0, 60, 1000, fee=9)
        host.mempool.add(tx, tip=host.chain.tip_view(), now=0)  # type: ignore[arg-type]
        [block_id] = await miner.generate(1, timeout=60)
        block = host.chain.get_block(bytes.fromhex(block_id))
        assert block is not None and block.transactions == (tx,)
    finally:
        await asyncio.to_thread(miner.stop)
        host.close()


async def test_miner_waits_instead_of_mining_blocks_from_the_future(tmp_path: Path) -> None:
    """A clock behind the chain: no block until its timestamp is safely acceptable."""
    now = [GENESIS_TIME - 60]  # a block needs timestamp > genesis: 61 s ahead of this clock
    host = Host(tmp_path, clock=lambda: now[0])
    miner = Miner(host, config=MinerConfig(seed=4), clock=host.clock)
    try:
        with pytest.raises(TimeoutError):
            await miner.generate(1, timeout=1.5)
        assert host.chain.height == 0
        assert miner.stats()["blocks_rejected"] == 0
        now[0] = GENESIS_TIME - 50  # 51 s ahead: inside the bound and the miner's margin
        assert len(await miner.generate(2, timeout=10)) == 2
        assert miner.stats()["blocks_rejected"] == 0
    finally:
        miner.stop()
        host.close()


def test_miner_config_from_node_config(tmp_path: Path) -> None:

    address = public_key(dev_seed(70))
    config = MinerConfig.from_node_config(HostConfig(
        datadir=tmp_path, mining_shape=(16, 64, 8, 16), mining_backend="numpy",
        miner_address="0x" + address.hex(), mining_interval=0.5, mining_block_interval=0))
    assert config == MinerConfig(address=address, shape=(16, 64, 8, 16), backend="numpy",
                                 interval=0.5, trivial_block_interval=0.0)
    assert MinerConfig.from_node_config(HostConfig(datadir=tmp_path)) == MinerConfig()

    with pytest.raises(ParamsError):
        MinerConfig(shape=(10, 64, 8, 16))  # m must be a multiple of 8
    with pytest.raises(ValueError):
        MinerConfig(address=b"short")


def test_set_cpu_threads_sizes_the_calling_threads_pool() -> None:
    """torch's pool for a torch backend, the fused kernel's OpenMP pool for a native one."""
    seen: list[int] = []
    torch_backend = get_backend("torch-cpu")
    native_backend = get_backend("native") if native.available() else None

    def worker() -> None:
        set_cpu_threads(torch_backend, 1)
        seen.append(torch.get_num_threads())
        set_cpu_threads(torch_backend, None)  # None leaves it alone
        seen.append(torch.get_num_threads())
        if native_backend is not None:
            set_cpu_threads(native_backend, 1)
            seen.append(native.threads())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [1, 1] + ([1] if native_backend is not None else [])


def deaf_miner(host: Host, now: list[float]) -> Miner:
    """A miner on ``host`` that hears of no new tip: as if the loop had not yet run its tip
    listener after the miner's own block (the window in which a second win of the same
    template used to be submitted as a sibling)."""
    miner = Miner(host, config=MinerConfig(seed=8, template_refresh=600.0),
                  clock=lambda: now[0])
    host.tip_listeners.remove(miner._on_tip)
    return miner


def product_operands(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(-64, 64, size=(8, 64), dtype=np.int8),
            rng.integers(-64, 64, size=(64, 8), dtype=np.int8))


async def test_a_second_win_on_a_parent_the_miner_offered_a_block_on_is_dropped(
        tmp_path: Path) -> None:
    """One block per parent per miner: once an inference product's ticket won a block on
    the tip, a later product on the same template (its tip not yet heard of) is computed
    plainly and offers no sibling; `inference_blocks` counts the one block."""
    now = [GENESIS_TIME + 100.0]  # block 1 due (a paced dev chain: every ticket wins)
    host = Host(tmp_path, clock=lambda: now[0])
    miner = deaf_miner(host, now)
    miner.start(asyncio.get_running_loop(), continuous=False)
    try:
        first = await asyncio.to_thread(miner.mine_product, *product_operands(1))
        assert not isinstance(first, ExactProduct) and host.chain.height == 1
        second = await asyncio.to_thread(miner.mine_product, *product_operands(2))
        assert isinstance(second, ExactProduct)
        a, b = product_operands(2)
        assert np.array_equal(second.product, a.astype(np.int64) @ b.astype(np.int64))
        assert len(host.received) == 1  # no sibling offered
        stats = miner.stats()
        assert stats["blocks_mined"] == 1 and stats["inference_blocks"] == 1
        assert miner.block_source(host.chain.tip_id) == "inference"
    finally:
        await asyncio.to_thread(miner.stop)
        host.close()


async def test_inference_blocks_counts_only_a_block_that_became_the_tip(
        tmp_path: Path) -> None:
    """An inference win on a template whose parent meanwhile got another child (a peer's
    block, seen first: equal work) is stored beside it, off the chain: it is a mined block
    of this miner but not an inference block."""
    now = [GENESIS_TIME + 0.5]  # not yet due: the product's win is held, not offered
    host = Host(tmp_path, clock=lambda: now[0])
    miner = deaf_miner(host, now)
    miner.start(asyncio.get_running_loop(), continuous=False)
    try:
        # caches a template on genesis
        early = await asyncio.to_thread(miner.mine_product, *product_operands(3))
        assert not isinstance(early, ExactProduct) and host.received == []
        now[0] = GENESIS_TIME + 100.0
        peer = mine_template_block(host, seed=9)
        await host.submit_block(peer)
        assert host.chain.tip_id == peer.header.block_id()
        mined = await asyncio.to_thread(miner.mine_product, *product_operands(4))
        assert not isinstance(mined, ExactProduct)
        assert len(host.received) == 2 and host.chain.tip_id == peer.header.block_id()
        sibling = host.received[1].header.block_id()
        assert host.chain.has_block(sibling) and miner.block_source(sibling) == "inference"
        stats = miner.stats()
        assert stats["blocks_mined"] == 1 and stats["inference_blocks"] == 0
    finally:
        await asyncio.to_thread(miner.stop)
        host.close()


async def test_an_inference_win_before_the_block_is_due_takes_the_block_when_due(
        tmp_path: Path) -> None:
    """On a paced dev chain a product that comes before the block is due is mined; its win
    is held, and when the block falls due the miner offers that block (useful work), not a
    self-generated one. A second early product on the same parent is computed plainly."""
    now = [GENESIS_TIME + 0.5]  # block 1 not yet due (every delay is at least a second)
    host = Host(tmp_path, clock=lambda: now[0])
    miner = Miner(host, config=MinerConfig(seed=11), clock=host.clock)
    miner.start(asyncio.get_running_loop())
    try:
        a, b = product_operands(5)
        early = await asyncio.to_thread(miner.mine_product, a, b)
        assert not isinstance(early, ExactProduct)
        assert np.array_equal(early.product, a.astype(np.int64) @ b.astype(np.int64))
        again = await asyncio.to_thread(miner.mine_product, *product_operands(6))
        assert isinstance(again, ExactProduct)
        assert host.chain.height == 0 and host.received == []  # held: the block is not due
        now[0] = GENESIS_TIME + 100.0
        # the miner records a block's work after the node took it: wait for both
        await wait_for(lambda: miner.stats()["inference_blocks"] == 1)
        first = host.chain.get_block(host.chain.block_id_at(1) or b"")
        assert first is not None
        block = first.header
        assert miner.block_source(block.block_id()) == "inference"
        k, n = block.k, block.n
        padded = np.pad(b, ((0, k - b.shape[0]), (0, n - b.shape[1])))
        assert block.root_b == operand_roots(np.zeros((8, k), np.int8), padded)[1]
        # the held block carries its template's timestamp (before it was due): its child is
        # paced from the offer, not from that timestamp (else it was due at once: two
        # blocks a second); once due, the miner mines it
        offered_at = GENESIS_TIME + 100.0
        assert block.timestamp + 2 < offered_at  # paced from it, the child was long due
        child, _ = await asyncio.to_thread(miner._current_template)
        assert child.parent_id == block.block_id()
        assert miner.paced_due(child) - offered_at == pytest.approx(
            miner._paced_delay(child.parent_id))
        assert miner.paced_due(child) >= offered_at + 1.0
        now[0] = miner.paced_due(child) + 0.01
        await wait_for(lambda: host.chain.height >= 2)
    finally:
        await asyncio.to_thread(miner.stop)
        host.close()
