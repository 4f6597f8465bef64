"""A testnet started by `pouwchain testnet up` joins the swarm registry by itself: every node
stakes, registers and sends its calibration with no manual transaction; then the openai
client asks, and the round's settlement lands on chain with the same reputations on every
node. Plus the launcher pieces that need no node process (node keys, node.toml, the table)."""

from __future__ import annotations

import io
import json
import time
import tomllib
from pathlib import Path
from typing import Any

import openai
import pytest

from consensus.genesis import load_genesis_config
from consensus.tx import Transaction, public_key
from contracts import Transfer
from node.config import NodeConfig
from testnet import launcher
from testnet.client import request
from testnet.genesis import funded_addresses, load_keys, node_seed
from testnet.launcher import (
    ARITH,
    LLM_VARIANTS,
    SWARM_STAKE,
    format_table,
    load_state,
    prepare,
    swarm_backend,
    swarm_cell,
    write_node_config,
)
from testnet.process import pid_alive
from tests.framework.swarm import beacon_wait, wait_past_inclusion_windows
from tests.framework.util import pouwchain, wait_until

pytestmark = pytest.mark.slow  # real node processes

NODES = 4  # as `make run`: node 0 runs arith-l, which passes calibration every time
# two miners, as `make run`: paced dev miners wait a (miner, parent)-drawn 0.5-1.5x the block
# interval (node.mining.miner), so they rarely fork; a fork would undo a calibration or settlement
MINERS = 2


def _landed(rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The swarm status of every node once each has a calibration on chain, else None."""
    swarm = [r.get("swarm") for r in rows]
    if all(isinstance(s, dict) and s.get("calibration") is not None and
           s.get("phase") in ("calibrated", "calibration_failed", "calibrating") for s in swarm):
        return [s for s in swarm if isinstance(s, dict)]
    return None


def _ask(client: openai.OpenAI, url: str, question: str, *, eligible: int
         ) -> dict[str, Any] | None:
    """One question; the round view at the origin if the round was drawn from the registry
    with at least ``eligible`` candidates (None while fewer registered nodes are eligible:
    a calibration counts from the next candidate table on)."""
    try:
        completion = client.chat.completions.create(
            model="pouwchain-swarm", messages=[{"role": "user", "content": question}])
    except openai.APIStatusError as exc:
        if exc.status_code == 503:
            return None
        raise
    round_id = (completion.model_extra or {})["round_id"]
    view: dict[str, Any] = request(url, "GET", f"/api/v1/rounds/{round_id}")
    if str(view["settlement_status"]).startswith("not on chain") or \
            len(view["candidates"]) < eligible:
        return None
    assert completion.choices[0].message.content == view["answer"]
    return view


def test_testnet_up_registers_calibrates_and_settles(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    started = time.monotonic()
    try:
        done = pouwchain("testnet", "up", "--nodes", str(NODES), "--miners", str(MINERS),
                         "--dir", str(directory), "--detach", "--swarm-model", ARITH)
        assert done.returncode == 0, done.stdout + done.stderr
        up_seconds = time.monotonic() - started
        records = load_state(directory)
        assert len(records) == NODES and all(pid_alive(r.pid) for r in records)

        # no manual transaction: every node stakes, registers and calibrates itself
        statuses = wait_until(lambda: _landed(launcher.status_rows(load_state(directory))),
                              90, interval=0.5, message="every node's calibration on chain")
        calibrated_seconds = time.monotonic() - started
        print(f"testnet up: {up_seconds:.1f} s; every calibration on chain after "
              f"{calibrated_seconds:.1f} s; phases {[s['phase'] for s in statuses]}; "
              f"calibrations {[s['calibration'] for s in statuses]}")
        urls = [r.api for r in records]
        for record, status in zip(records, statuses, strict=True):
            account = request(record.api, "GET",
                                       f"/api/v1/accounts/{_node_id(record)}")
            assert account["stake"]["bonded"] >= SWARM_STAKE, account
            assert account["swarm_node"] is not None, account
            assert status["model"] in account["swarm_node"]["models"]
        # arith-l (node 0) passes: wait for it even if a fork undid its first calibration
        wait_until(lambda: request(urls[0], "GET", "/api/v1/swarm/registration")
                   ["phase"] == "calibrated", 60, interval=0.5, message="node 0 calibrated")
        table = pouwchain("testnet", "status", "--dir", str(directory))
        assert table.returncode == 0 and "calibrated" in table.stdout, table.stdout
        print(table.stdout)

        # a client asks node 0; the round is drawn from the registry and settles on chain
        client = openai.OpenAI(base_url=f"{urls[0]}/v1", api_key="none", max_retries=0,
                               timeout=120)
        capable = sum(1 for s in statuses if s["phase"] == "calibrated")
        view = wait_until(lambda: _ask(client, urls[0], "What is 19+23?",
                                       eligible=min(2, capable)),
                          60, interval=1.0, message="a round drawn from the registry")
        round_id = view["round_id"]

        def settled() -> list[dict[str, Any]] | None:
            views = [request(u, "GET", f"/api/v1/rounds/{round_id}") for u in urls]
            status = [str(v["settlement_status"]) for v in views]
            assert not status[0].startswith("failed"), status  # the origin's own attempt
            return views if all(s.startswith("settled at height") for s in status) else None

        # the settlement waits for the round's beacon block, k blocks above its request
        genesis = load_genesis_config(directory / "genesis.json")
        views = wait_until(settled, 60 + beacon_wait(genesis.params), interval=0.5,
                           message="the settlement on chain, seen by every node")
        result = views[0]["result"]
        assert all(v["result"] == result for v in views)
        print(f"settled after {time.monotonic() - started:.1f} s: "
              f"{views[0]['settlement_status']}; reputations "
              f"{[(a['node'][:8], a['reputation']) for a in result['answers']]}")

        # settlements are held for the testnet's inclusion window: reputations move when it
        # closes (in the first block past it)
        wait_past_inclusion_windows(urls, settled_heights=[views[0]["settled"]["height"]],
                                    window=genesis.params.swarm_inclusion_window)

        def same_reputations() -> bool:
            return all(request(u, "GET", f"/api/v1/accounts/{a['node']}")
                       ["reputation"] == a["reputation"]
                       for a in result["answers"] for u in urls)

        wait_until(same_reputations, 30, interval=0.5,
                   message="the settled reputations in every node's state")
        if len(result["answers"]) >= 2:  # one answer alone is not judged: no change
            assert any(a["reputation"] != 0 for a in result["answers"]), result
        print(f"total {time.monotonic() - started:.1f} s")
    finally:
        launcher.down(directory)


def _node_id(record: launcher.NodeRecord) -> str:
    return public_key(node_seed(Path(record.datadir))).hex()


def test_prepare_funds_node_identities_and_writes_swarm_config(tmp_path: Path) -> None:
    directory = tmp_path / "net"
    genesis = prepare(directory, 3, fresh=False)
    seeds = [node_seed(directory / f"node-{i}") for i in range(3)]
    assert len(set(seeds)) == 3
    for i in range(3):
        key = directory / f"node-{i}" / "node.key"
        assert key.stat().st_mode & 0o077 == 0 and node_seed(key.parent) == seeds[i]
    config = load_genesis_config(genesis)
    assert {public_key(s) for s in seeds} <= set(config.balances)
    assert {public_key(s) for s in seeds} <= funded_addresses(genesis)
    # a node added later is not in the genesis: up funds it by a transfer (fund_nodes)
    assert public_key(node_seed(directory / "node-3")) not in funded_addresses(genesis)

    datadir = directory / "node-1"
    write_node_config(datadir, 1, swarm=True, model=ARITH)
    written = tomllib.loads((datadir / "node.toml").read_text())
    assert written == {"swarm_backend": swarm_backend(1, ARITH), "swarm_register": True,
                       "swarm_stake": SWARM_STAKE}
    # the default model: the language model, with this node's sampling settings
    write_node_config(datadir, 1, swarm=True)
    llm = tomllib.loads((datadir / "node.toml").read_text())
    assert llm["swarm_backend"] == "smollm2" == swarm_backend(1)
    assert (llm["swarm_temperature"], llm["swarm_system_prompt"]) == LLM_VARIANTS[1]
    NodeConfig(datadir=datadir, **llm)  # a valid node config
    # the user's own settings stay; only what is missing is added
    (datadir / "node.toml").write_text("swarm_register = false\nmax_peers = 3\n")
    write_node_config(datadir, 1, swarm=True, model=ARITH)
    edited = tomllib.loads((datadir / "node.toml").read_text())
    assert edited["swarm_register"] is False and edited["max_peers"] == 3
    assert edited["swarm_stake"] == SWARM_STAKE
    write_node_config(directory / "node-2", 2, swarm=False)
    assert tomllib.loads((directory / "node-2" / "node.toml").read_text()) == {}


def test_table_shows_the_registration_phase() -> None:
    assert swarm_cell(None) == "-"
    assert swarm_cell({"phase": "calibrated"}) == "calibrated"
    assert swarm_cell({"phase": "calibration_failed",
                       "calibration": {"passed": False, "correct": 7}}) == "failed 7/16"
    rows: list[dict[str, Any]] = [
        {"node": "node-0", "role": "miner", "address": "127.0.0.1:1", "state": "ok",
         "height": 7, "peers": 2, "tip": "abcdef012345", "tickets_per_s": 1.0,
         "useful_share": 0.0, "swarm": {"phase": "calibrated"}},
        {"node": "node-1", "role": "validator", "address": "127.0.0.1:2", "state": "stopped"}]
    table = format_table(rows)
    assert "swarm" in table.splitlines()[0] and "calibrated" in table.splitlines()[2]
    json.dumps(rows)


def test_fund_nodes_transfers_to_identities_the_genesis_lacks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory whose genesis predates node 3: `up` funds node 3 from account 0 (through
    node 0's API, at account 0's next nonce) and leaves funded nodes alone."""
    directory = tmp_path / "net"
    prepare(directory, 3, fresh=False)
    records = [launcher.NodeRecord(index=i, datadir=str(directory / f"node-{i}"), port=1,
                                   mine=False, api="http://node0" if i == 0 else "")
               for i in range(4)]
    newcomer = public_key(node_seed(directory / "node-3")).hex()
    payer = public_key(load_keys(directory / "keys")[0]).hex()
    calls: list[tuple[str, str, Any]] = []

    def fake(base: str, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        calls.append((method, path, body))
        if path == f"/api/v1/accounts/{payer}":
            return {"next_nonce": 7, "balance": 10**12}
        if path.startswith("/api/v1/accounts/"):
            return {"balance": 0}
        return {"id": "00", "status": "pending"}

    monkeypatch.setattr(launcher, "request", fake)
    out = io.StringIO()
    assert launcher.fund_nodes(directory, records, out=out) == [3]
    posted = [Transaction.decode(bytes.fromhex(body["tx"])) for method, _, body in calls
              if method == "POST"]
    assert len(posted) == 1 and posted[0].nonce == 7 and posted[0].sender.hex() == payer
    assert isinstance(posted[0].payload, Transfer)
    assert posted[0].payload.to.hex() == newcomer
    assert posted[0].payload.amount == launcher.NODE_FUNDS and "node-3: funded" in out.getvalue()
    calls.clear()
    assert launcher.fund_nodes(directory, records[:3], out=out) == [] and not calls
