"""What the mempool journal costs: admissions per second with and without it, on disk.

Transfers from distinct funded senders go through `Mempool.add` against a tip state in a
real LevelDB directory, as the node admits them (signature, nonce, balance: the transition
on an overlay), three ways, measured side by side in one run with rounds interleaved (the
machine is shared):

* no journal (the pool before issue 12: lost on a crash);
* the journal without any fsync (in the OS before `add` returns: survives a killed process);
* the journal with the group commit (the default, ``mempool_fsync_interval = 0.1``: a
  thread fsyncs what was written every 0.1 s, so each admission survives a power cut too
  once its interval has passed);
* the journal with an fsync per admission (``mempool_fsync_interval = 0``: durable against
  a power cut before the API answers).

Then the start-up load of the journal (read, decode, re-admit against the tip) per entry.

    python bench/mempool_journal.py [--txs 1000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.genesis import GenesisConfig, build_genesis, dev_seed
from consensus.tx import Transaction, public_key, sign_transaction
from contracts import Transfer
from core.interfaces import PrefixedKV
from core.state import State
from node.chain.db import Database
from node.chain.mempool import Mempool, MempoolConfig, MempoolJournal, TipView

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chain_validate import genesis_for

STATE = b"s/"
MODES = {"none": "no journal (lost on SIGKILL)",
         "os": "journal, no fsync (survives SIGKILL)",
         "group": "journal, group commit 0.1 s (default)",
         "fsync": "journal, fsync per tx (power-loss safe)"}
GROUP_INTERVAL = 0.1  # node.config.NodeConfig.mempool_fsync_interval's default


def transfers(count: int) -> list[Transaction]:
    """One transfer from each of ``count`` funded senders (nonce 0, fee 10)."""
    to = public_key(dev_seed(10**6))
    return [sign_transaction(dev_seed(i), chain_id=1337, nonce=0, fee=10,
                             payload=Transfer(to=to, amount=1)) for i in range(count)]


def fresh_db(config: GenesisConfig, path: Path) -> Database:
    shutil.rmtree(path, ignore_errors=True)
    db = Database(path)
    with db.batch() as batch:
        build_genesis(config, State(PrefixedKV(batch, STATE)))
    return db


def admit_rate(config: GenesisConfig, txs: list[Transaction], path: Path,
               mode: str) -> tuple[float, float]:
    """(admissions per second, journal loads per second: 0 without a journal)."""
    db = fresh_db(config, path)
    try:
        journal = None if mode == "none" else MempoolJournal(db, sync=mode == "fsync")
        settings = MempoolConfig(max_total=len(txs) + 1)
        pool = Mempool(params=config.params, config=settings, journal=journal)
        tip = TipView(state_kv=PrefixedKV(db, STATE), height=1)
        done = threading.Event()
        flusher = threading.Thread(target=group_commit, args=(journal, done))
        if mode == "group":
            flusher.start()
        t0 = time.perf_counter()
        for tx in txs:
            pool.add(tx, tip=tip, now=0)
        if journal is not None and mode == "group":
            done.set()
            flusher.join()  # the last group commit is part of the cost
        rate = len(txs) / (time.perf_counter() - t0)
        if journal is None:
            return rate, 0.0
        again = Mempool(params=config.params, config=settings, journal=journal)
        t0 = time.perf_counter()
        loaded = again.load_journal(tip=tip, now=0)
        load_rate = len(txs) / (time.perf_counter() - t0)
        assert loaded.loaded == len(txs), loaded
        return rate, load_rate
    finally:
        db.close()


def group_commit(journal: MempoolJournal | None, done: threading.Event) -> None:
    """What `JournalFlusher` does on the node: an fsync every interval, a last one at the end."""
    assert journal is not None
    while not done.wait(GROUP_INTERVAL):
        journal.flush()
    journal.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=1000, help="transfers (senders)")
    parser.add_argument("--rounds", type=int, default=3, help="repeat each measurement")
    parser.add_argument("--dir", default=None, help="where to put the LevelDB directories")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    config = genesis_for(args.txs)
    txs = transfers(args.txs)
    base = Path(args.dir or tempfile.mkdtemp(prefix="pouw-journal-"))
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    loads: list[float] = []
    try:
        for _ in range(args.rounds):  # interleaved: the machine is shared and noisy
            for mode in MODES:
                rate, load = admit_rate(config, txs, base / mode, mode)
                rates[mode].append(rate)
                if load:
                    loads.append(load)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    best = {m: max(v) for m, v in rates.items()}
    cost = {m: 1e6 / best[m] - 1e6 / best["none"] for m in MODES}
    print(f"mempool admission: {args.txs} transfers from {args.txs} senders, LevelDB on disk "
          f"({args.rounds} rounds, best of each)")
    print(f"{'mode':<46} {'tx/s':>9} {'us/tx':>8} {'journal us/tx':>14} {'range tx/s':>18}")
    for mode, label in MODES.items():
        low, high = min(rates[mode]), max(rates[mode])
        print(f"{label:<46} {best[mode]:>9,.0f} {1e6 / best[mode]:>8,.0f} "
              f"{cost[mode]:>14,.0f} {low:>9,.0f} - {high:,.0f}")
    print(f"journal load at start-up (read, decode, re-admit): {max(loads):,.0f} tx/s")
    if args.json:
        print(json.dumps({
            "txs": args.txs, "rounds": args.rounds,
            "tx_per_s": {m: round(best[m]) for m in MODES},
            "tx_per_s_range": {m: [round(min(v)), round(max(v))] for m, v in rates.items()},
            "journal_us_per_tx": {m: round(cost[m], 1) for m in ("os", "group", "fsync")},
            "ratio_to_none": {m: round(best[m] / best["none"], 3) for m in MODES},
            "load_tx_per_s": round(max(loads)),
        }))


if __name__ == "__main__":
    main()
