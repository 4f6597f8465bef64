"""Block validation throughput: transactions validated and applied per second, on disk.

Blocks of 1,000 transfers from 1,000 distinct senders go through the node's real path
(``ChainStore.add_block``: header, body and PoUW certificate checks, the state transition
over LevelDB, one synced write batch per block). Measured side by side in one run:

* raw Ed25519 verification (PyNaCl), 1 thread and a 2-thread pool (PyNaCl releases the GIL);
* validate + apply as the consensus API does it today (signatures checked inline, 1 thread);
* validate + apply with signatures pre-verified by a 2-thread pool, pipelined (block i+1's
  signatures are checked while block i applies), and a signature cache consulted by the
  transition (what a ``verified`` hook in the consensus API would allow; here the cache is
  patched into ``Transaction.verify_signature`` for the run only);
* validate + apply with signature checks skipped: the ceiling of the rest of the path;
* replay of the stored chain (disconnect to genesis, reconnect from disk): blocks per second,
  for the 1,000-transfer blocks and for empty blocks (per-block overhead).

    python bench/chain_validate.py [--blocks 5] [--txs 1000] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.block import Block
from consensus.genesis import GenesisConfig, dev_config, dev_seed
from consensus.tx import Transaction, public_key, sign_transaction
from contracts import Transfer
from node.chainstore import ChainStore
from tests.consensus.helpers import new_chain
from tests.node.chainutil import extend

NOW = 2_000_000_000


def genesis_for(senders: int) -> GenesisConfig:
    """The dev network with ``senders`` funded accounts."""
    base = dev_config()
    balances = {public_key(dev_seed(i)).hex(): 10**12 for i in range(senders)}
    raw: dict[str, Any] = {
        "chain_id": base.params.chain_id, "timestamp": base.timestamp,
        "target_block_time": base.params.target_block_time,
        "initial_target": base.params.initial_target,
        "unbonding_delay": base.params.unbonding_delay, "min_difficulty": True,
        "balances": balances, "stakes": {},
    }
    from consensus.genesis import parse_genesis_config

    return parse_genesis_config(raw)


def build_blocks(config: GenesisConfig, *, blocks: int, txs: int,
                 empty: int) -> tuple[list[Block], list[Block]]:
    """``blocks`` blocks of ``txs`` transfers (one per sender), then ``empty`` empty blocks."""
    chain = new_chain(config)
    recipients = [public_key(dev_seed(10_000 + i)) for i in range(txs)]
    full: list[Block] = []
    for height in range(blocks):
        batch = [sign_transaction(dev_seed(i), chain_id=config.params.chain_id, nonce=height,
                                  fee=1, payload=Transfer(to=recipients[i], amount=1 + height))
                 for i in range(txs)]
        full.append(extend(chain, batch, seed=height))
    side = new_chain(config)
    empties = [extend(side, [], seed=10_000 + i) for i in range(empty)]
    return full, empties


def verify_all(items: Sequence[tuple[bytes, bytes, bytes]]) -> None:
    for key, message, signature in items:
        nacl.signing.VerifyKey(key).verify(message, signature)


def raw_verify_rate(txs: Sequence[Transaction], *, threads: int) -> float:
    """Ed25519 verifications per second (messages prepared beforehand)."""
    items = [(tx.sender, tx.signing_bytes(), tx.signature) for tx in txs]
    start = time.perf_counter()
    if threads == 1:
        verify_all(items)
    else:
        chunk = (len(items) + threads - 1) // threads
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(verify_all, [items[i:i + chunk] for i in range(0, len(items), chunk)]))
    return len(items) / (time.perf_counter() - start)


@contextlib.contextmanager
def signature_cache() -> Iterator[set[int]]:
    """Make ``verify_signature`` consult a set of pre-verified transactions (by identity)."""
    verified: set[int] = set()
    original = Transaction.verify_signature

    def cached(self: Transaction) -> None:
        if id(self) not in verified:
            original(self)

    Transaction.verify_signature = cached  # type: ignore[method-assign]
    try:
        yield verified
    finally:
        Transaction.verify_signature = original  # type: ignore[method-assign]


def _verify_ids(part: Sequence[Transaction]) -> list[int]:
    """Ids (object identity) of the transactions in ``part`` whose signature is valid."""
    good = []
    for tx in part:
        try:
            nacl.signing.VerifyKey(tx.sender).verify(tx.signing_bytes(), tx.signature)
        except nacl.exceptions.BadSignatureError:
            continue
        good.append(id(tx))
    return good


def preverify(block: Block, pool: ThreadPoolExecutor, threads: int) -> list[Future[list[int]]]:
    """Start checking every signature of ``block`` in the pool."""
    txs = block.transactions
    chunk = (len(txs) + threads - 1) // threads
    return [pool.submit(_verify_ids, txs[i:i + chunk]) for i in range(0, len(txs), chunk)]


def connect_rate(config: GenesisConfig, blocks: Sequence[Block], datadir: Path, *,
                 threads: int) -> float:
    """Transactions per second through ``add_block`` on a fresh store."""
    shutil.rmtree(datadir, ignore_errors=True)
    store = ChainStore.open(datadir, genesis=config)
    fresh = [Block.decode(b.encode()) for b in blocks]  # no cached state from building
    count = sum(len(b.transactions) for b in fresh)
    try:
        if threads <= 1:
            # threads == 0: signature checks skipped entirely (the transition's ceiling)
            with signature_cache() as verified:
                if threads == 0:
                    verified.update(id(tx) for block in fresh for tx in block.transactions)
                start = time.perf_counter()
                for block in fresh:
                    store.add_block(block, now=NOW)
                elapsed = time.perf_counter() - start
        else:
            with ThreadPoolExecutor(threads) as pool, signature_cache() as verified:
                start = time.perf_counter()
                # pipeline: the pool checks block i+1's signatures while block i applies
                pending = preverify(fresh[0], pool, threads)
                for i, block in enumerate(fresh):
                    for future in pending:
                        verified.update(future.result())
                    if i + 1 < len(fresh):
                        pending = preverify(fresh[i + 1], pool, threads)
                    store.add_block(block, now=NOW)
                elapsed = time.perf_counter() - start
        assert store.tip_id == fresh[-1].header.block_id()
    finally:
        store.close()
    return count / elapsed


def replay_rate(config: GenesisConfig, blocks: Sequence[Block], datadir: Path) -> float:
    """Blocks per second reconnecting stored blocks (after disconnecting them)."""
    shutil.rmtree(datadir, ignore_errors=True)
    store = ChainStore.open(datadir, genesis=config)
    try:
        for block in blocks:
            store.add_block(block, now=NOW)
        tip = store.tip_id
        while store.height > 0:
            store.disconnect_block()
        start = time.perf_counter()
        store.walk_to(tip)
        elapsed = time.perf_counter() - start
        assert store.tip_id == tip
    finally:
        store.close()
    return len(blocks) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=5, help="blocks of transfers")
    parser.add_argument("--txs", type=int, default=1000, help="transfers (senders) per block")
    parser.add_argument("--empty", type=int, default=100, help="empty blocks to replay")
    parser.add_argument("--rounds", type=int, default=3, help="repeat each measurement")
    parser.add_argument("--dir", default=None, help="where to put the LevelDB directories")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()

    config = genesis_for(args.txs)
    t0 = time.perf_counter()
    full, empties = build_blocks(config, blocks=args.blocks, txs=args.txs, empty=args.empty)
    setup_s = time.perf_counter() - t0
    all_txs = [tx for b in full for tx in b.transactions]
    base = Path(args.dir or tempfile.mkdtemp(prefix="pouw-bench-"))
    rows: dict[str, list[float]] = {k: [] for k in (
        "ed25519_1t", "ed25519_2t", "apply_1t", "apply_2t", "apply_nosig", "replay_full",
        "replay_empty")}
    try:
        for _ in range(args.rounds):  # interleaved: the machine is shared and noisy
            rows["ed25519_1t"].append(raw_verify_rate(all_txs, threads=1))
            rows["ed25519_2t"].append(raw_verify_rate(all_txs, threads=2))
            rows["apply_1t"].append(connect_rate(config, full, base / "a", threads=1))
            rows["apply_2t"].append(connect_rate(config, full, base / "b", threads=2))
            rows["apply_nosig"].append(connect_rate(config, full, base / "e", threads=0))
            rows["replay_full"].append(replay_rate(config, full, base / "c"))
            rows["replay_empty"].append(replay_rate(config, empties, base / "d"))
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    best = {k: max(v) for k, v in rows.items()}
    ratio_1t = best["apply_1t"] / best["ed25519_1t"]
    ratio_2t = best["apply_2t"] / best["ed25519_1t"]
    print(f"chain validation: {args.blocks} blocks x {args.txs} transfers from {args.txs} "
          f"senders, LevelDB on disk (setup {setup_s:.1f} s, best of {args.rounds})")
    print(f"{'measure':<48} {'rate':>12}")
    print(f"{'Ed25519 verify, 1 thread':<48} {best['ed25519_1t']:>10,.0f}/s")
    print(f"{'Ed25519 verify, 2 threads':<48} {best['ed25519_2t']:>10,.0f}/s")
    print(f"{'validate+apply tx, inline signatures (1 thread)':<48} {best['apply_1t']:>10,.0f}/s"
          f"   {ratio_1t:.0%} of 1-thread Ed25519")
    print(f"{'validate+apply tx, signatures in 2-thread pool':<48} {best['apply_2t']:>10,.0f}/s"
          f"   {ratio_2t:.0%} of 1-thread Ed25519")
    print(f"{'validate+apply tx, signatures skipped (ceiling)':<48} "
          f"{best['apply_nosig']:>10,.0f}/s")
    print(f"{'replay stored blocks of ' + str(args.txs) + ' transfers':<48} "
          f"{best['replay_full']:>10,.1f}/s")
    print(f"{'replay stored empty blocks':<48} {best['replay_empty']:>10,.1f}/s")
    if args.json:
        print(json.dumps({
            "blocks": args.blocks, "txs_per_block": args.txs, "rounds": args.rounds,
            "ed25519_verify_per_s_1t": round(best["ed25519_1t"]),
            "ed25519_verify_per_s_2t": round(best["ed25519_2t"]),
            "tx_per_s_inline": round(best["apply_1t"]),
            "tx_per_s_pool2": round(best["apply_2t"]),
            "tx_per_s_no_signatures": round(best["apply_nosig"]),
            "ratio_inline_to_ed25519_1t": round(ratio_1t, 3),
            "ratio_pool2_to_ed25519_1t": round(ratio_2t, 3),
            "replay_blocks_per_s_full": round(best["replay_full"], 2),
            "replay_blocks_per_s_empty": round(best["replay_empty"], 2),
        }))


if __name__ == "__main__":
    main()
