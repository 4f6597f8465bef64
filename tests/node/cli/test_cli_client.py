"""The client side of issue 13 against a real node on 127.0.0.1: client.toml addressing,
``wallet import/list`` and named wallets, ``send`` saying what happens next, the lookups
(``block``, ``tx``, ``account``, ``round``, ``job list``, ``wallet history``) with and without
``--json``, one reason for a refused send, the default datadir of ``node`` and the client,
and a slow-but-reachable node reported as a timeout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.genesis import dev_seed
from consensus.tx import public_key
from testnet.cli import main as pouwchain_main
from testnet.process import REPO_ROOT, stop_process, wait_ready
from tests.framework.nodes import LiveNode
from tests.framework.util import cli_process, wait_for, wait_until


def seed_record(path: Path, index: int) -> Path:
    """A seed file as `testnet up` writes it (keys/account-N.json), for dev account ``index``."""
    seed = dev_seed(index)
    path.write_text(json.dumps({"index": index, "address": public_key(seed).hex(),
                                "seed": seed.hex()}) + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.slow
async def test_wallets_lookups_and_send_through_client_toml(node: LiveNode,
                                                            tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "client.toml").write_text(f'node = "{node.url}"\nwallet = "alice"\n')
    d = ("--datadir", str(data))  # no --node anywhere: client.toml names the node

    seed_file = seed_record(tmp_path / "account-1.json", 1)
    code, out, err = await cli_process("wallet", "import", str(seed_file), "alice", "--kdf",
                                       "fast", *d)
    assert code == 0, err
    alice = public_key(dev_seed(1)).hex()
    assert f"address: {alice}" in out and str(data / "wallets" / "alice.json") in out
    assert dev_seed(1).hex() not in out + err
    code, _, err = await cli_process("wallet", "import", str(seed_file), "alice", *d)
    assert code == 1 and "already exists" in err
    code, out, err = await cli_process("wallet", "new", "bob", "--kdf", "fast", *d)
    assert code == 0, err
    code, out, err = await cli_process("wallet", "list", *d, password=None)
    assert code == 0, err
    rows = out.splitlines()
    assert rows[0].startswith("* alice") and alice in rows[0] and rows[1].startswith("  bob")
    code, out, _ = await cli_process("wallet", "list", "--json", *d, password=None)
    assert [w["name"] for w in json.loads(out)["wallets"]] == ["alice", "bob"]

    dest = public_key(dev_seed(70)).hex()
    code, out, err = await cli_process("wallet", "send", dest, "500", "--fee", "10", *d)
    assert code == 0, err
    tx_id = out.strip()
    assert bytes.fromhex(tx_id) in node.mempool  # stdout is the id alone, for scripts
    assert f"transfer of 500 to {dest}" in err and "next:" in err
    assert f"pouwchain tx {tx_id} --node {node.url}" in err

    code, out, err = await cli_process("tx", tx_id, *d)
    assert code == 0 and "status   pending" in out, err
    await node.mine(node.mempool.transactions())
    height = node.chain.height
    code, out, err = await cli_process("tx", tx_id, *d)
    assert code == 0, err
    assert f"confirmed in block {node.chain.tip_id.hex()} at height {height}" in out
    code, out, _ = await cli_process("tx", tx_id, "--json", *d)
    assert json.loads(out)["tx"]["payload"]["amount"] == 500

    code, out, err = await cli_process("block", str(height), "--txs", *d)
    assert code == 0, err
    assert f"height   {height} (canonical, 1 confirmations)" in out and tx_id in out
    code, out, _ = await cli_process("block", "tip", "--json", *d)
    assert json.loads(out)["id"] == node.chain.tip_id.hex()
    code, out, err = await cli_process("block", "99999", *d)
    assert code == 1 and err.count("block_not_found") == 1, err

    code, out, err = await cli_process("account", dest, *d)
    assert code == 0 and "balance:   500" in out, err
    code, out, _ = await cli_process("account", "--json", *d)  # the default wallet: alice
    assert json.loads(out)["address"] == alice and json.loads(out)["nonce"] == 1

    # a send the account cannot pay: refused at once, its reason printed once
    code, out, err = await cli_process("wallet", "send", dest, str(10**18), "--fee", "10", *d)
    assert code == 1 and out == ""
    reason = err.split("(")[-1].rstrip(")\n")
    assert reason and err.count(reason) == 1 and len(err.strip().splitlines()) == 1, err

    # no swarm node here: a 503 that says when to retry, in one line
    code, out, err = await cli_process("ask", "What is 2+2?", *d)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.count("no_swarm_nodes") == 1 and "the node says to retry in" in err, err

    code, out, err = await cli_process("round", "ab" * 32, *d)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, err = await cli_process("job", "list", *d)
    assert code == 0 and "job(s) on this node" in out, err
    code, out, _ = await cli_process("job", "list", "--json", *d)
    assert "jobs" in json.loads(out)

    code, out, err = await cli_process("wallet", "history", *d)
    assert code == 0, err
    assert f"{alice}: 1 transaction(s)" in out
    assert f"height {height}" in out and "out transfer" in out and tx_id in out
    code, out, _ = await cli_process("wallet", "history", "--json", "--address", dest, *d)
    assert [(t["id"], t["direction"]) for t in json.loads(out)["txs"]] == [(tx_id, "in")]

    # --wait: the command returns once a block holds the transaction
    waiting = asyncio.ensure_future(cli_process("wallet", "stake", "50", "--fee", "10",
                                                "--wait", "--json", *d))
    pending = await wait_for(lambda: node.mempool.pending_of(bytes.fromhex(alice)),
                             message="the stake reaches the mempool")
    assert not waiting.done()
    block = await node.mine(pending)
    code, out, err = await waiting
    assert code == 0, err
    sent = json.loads(out)
    assert (sent["status"], sent["height"], sent["block"]) == \
        ("confirmed", block.header.height, block.header.block_id().hex())
    assert sent["id"] == pending[0].id().hex() and sent["what"] == "stake of 50"


@pytest.fixture
def silent_node() -> Iterator[str]:
    """A node address that accepts connections and never answers (a busy node: the
    kernel completes the handshake from the listen backlog)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_slow_node_is_a_timeout_not_unreachable(silent_node: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POUWCHAIN_DATADIR", str(tmp_path))
    for argv in (["ask", "What is 2+2?", "--timeout", "1", "--node", silent_node],
                 ["status", "--once", "--http-timeout", "1", "--node", silent_node]):
        assert pouwchain_main(argv) == 1
        err = capsys.readouterr().err
        assert "timed out" in err and "within 1 s" in err, err
        assert "cannot reach" not in err
    # and `ask` drew its progress line while it waited (stderr is not a terminal: one line)
    pouwchain_main(["ask", "What is 2+2?", "--timeout", "1.5", "--node", silent_node])
    assert "asking the swarm" in capsys.readouterr().err


@pytest.mark.slow
def test_node_and_client_share_the_default_datadir(tmp_path: Path) -> None:
    """`pouwchain node` without --datadir runs in $POUWCHAIN_DATADIR, and a client command
    with no address finds it there (node.json), as bitcoin-cli finds bitcoind."""
    datadir = tmp_path / "default"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUWCHAIN_")}
    env.update(POUWCHAIN_DATADIR=str(datadir), HOME=str(tmp_path / "home"))
    with open(tmp_path / "node.out", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "node.cli", "node", "--port", "0"],
                                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        info = wait_ready(datadir, proc, timeout=120)
        done = subprocess.run([sys.executable, "-m", "node.cli", "status", "--once", "--json"],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        assert status["height"] == 0 and info["api"].endswith(f":{info['port']}")
    finally:
        assert stop_process(proc) == 0
    assert not (tmp_path / "home" / ".pouwchain").exists()


@pytest.mark.slow
def test_ctrl_c_stops_a_waiting_ask(silent_node: str, tmp_path: Path) -> None:
    """Ctrl-C while `ask` waits on a silent node ends it (exit 130), without waiting for
    the request's own timeout (an hour here) and without a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUWCHAIN_")}
    env["POUWCHAIN_DATADIR"] = str(tmp_path)
    err_path = tmp_path / "ask.err"
    with open(err_path, "wb") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "ask", "What is 2+2?", "--node", silent_node,
             "--timeout", "3600"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
            stderr=err_file)
    try:
        wait_until(lambda: "asking the swarm" in err_path.read_text(), 120,
                   message="ask is waiting")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = err_path.read_text()
    assert "interrupted" in err and "Traceback" not in err
