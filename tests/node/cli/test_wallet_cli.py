"""``pouwchain wallet`` as real subprocesses against a real node serving on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consensus.genesis import dev_seed
from consensus.tx import public_key, sign_transaction
from contracts import BeginUnstake, Stake, Transfer
from contracts.escrow import ESCROW_RELEASE_DELAY
from core.state import State
from node.client.wallet import open_wallet
from tests.framework.nodes import LiveNode
from tests.framework.util import PASSWORD, cli_process


@pytest.mark.slow
async def test_wallet_lifecycle(node: LiveNode, tmp_path: Path) -> None:
    wfile = str(tmp_path / "w" / "wallet.json")
    code, out, err = await cli_process("wallet", "new", "--wallet", wfile, "--kdf", "fast")
    assert code == 0, err
    address = bytes.fromhex(out.split("address: ")[1].strip())
    seed_hex = open_wallet(Path(wfile), PASSWORD)._Wallet__seed.hex()  # type: ignore[attr-defined]
    assert seed_hex not in out + err
    assert oct(os.stat(wfile).st_mode & 0o777) == "0o600"
    code, out, _ = await cli_process("wallet", "address", "--wallet", wfile, password=None)
    assert code == 0 and out.strip() == address.hex()
    code, _, err = await cli_process("wallet", "new", "--wallet", wfile, "--kdf", "fast")
    assert code == 1 and "already exists" in err

    await node.mine([sign_transaction(dev_seed(1), chain_id=1337, nonce=0, fee=10,
                                payload=Transfer(to=address, amount=1_000_000))])
    code, out, err = await cli_process("wallet", "balance", "--wallet", wfile, "--node", node.url)
    assert code == 0, err
    assert "balance:   1000000" in out and "bonded:    0" in out

    dest = public_key(dev_seed(60))
    code, out, err = await cli_process("wallet", "send", dest.hex(), "500", "--fee", "10",
                               "--wallet", wfile, "--node", node.url)
    assert code == 0, err
    send_id = bytes.fromhex(out.strip())
    code, out, err = await cli_process("wallet", "stake", "2000", "--fee", "10",
                               "--wallet", wfile, "--node", node.url)
    assert code == 0, err
    pending = node.mempool.pending_of(address)
    assert pending[0].id() == send_id
    assert [tx.payload for tx in pending] == [Transfer(to=dest, amount=500), Stake(amount=2000)]
    assert [tx.nonce for tx in pending] == [0, 1]
    await node.mine(node.mempool.transactions())
    code, out, err = await cli_process("wallet", "unstake", "300", "--fee", "10",
                               "--wallet", wfile, "--node", node.url)
    assert code == 0, err
    assert [tx.payload for tx in node.mempool.pending_of(address)] == [BeginUnstake(amount=300)]
    await node.mine(node.mempool.transactions())
    state = State(node.chain.state_view())
    assert state.account(dest).balance == 500
    assert state.account(address).balance == 1_000_000 - 500 - 2000 - 30
    assert state.stake(address).bonded == 1700
    assert [u.amount for u in state.stake(address).unbonding] == [300]
    code, out, err = await cli_process("wallet", "balance", "--wallet", wfile, "--node", node.url)
    assert "unbonding: 300" in out and "nonce:     3" in out
    assert "escrow:    0 locked" in out

    # swarm escrow: lock, begin a release, and see both in the balance
    for command, amount in (("escrow-deposit", "5000"), ("escrow-release", "1200")):
        code, out, err = await cli_process("wallet", command, amount, "--fee", "10",
                                   "--wallet", wfile, "--node", node.url)
        assert code == 0, err
        await node.mine(node.mempool.transactions())
    code, out, err = await cli_process("wallet", "balance", "--wallet", wfile, "--node", node.url)
    height = node.chain.height
    assert f"escrow:    3800 locked for swarm fees, 1200 releasing (claimable at height " \
           f"{height + ESCROW_RELEASE_DELAY})" in out, out
    code, out, err = await cli_process("wallet", "escrow-claim", "--fee", "10",
                               "--wallet", wfile, "--node", node.url)
    assert code == 1 and "escrow.not_matured" in err


@pytest.mark.slow
async def test_wallet_errors(node: LiveNode, tmp_path: Path) -> None:
    wfile = str(tmp_path / "wallet.json")
    assert (await cli_process("wallet", "new", "--wallet", wfile, "--kdf", "fast"))[0] == 0
    dest = public_key(dev_seed(60)).hex()
    code, _, err = await cli_process("wallet", "send", dest, "5", "--wallet", wfile,
                             "--node", node.url, password="nope")
    assert code == 1 and "wrong password" in err
    code, _, err = await cli_process("wallet", "send", dest, "5", "--wallet", wfile,
                             "--node", node.url, password=None)
    assert code == 1 and "POUWCHAIN_PASSWORD" in err
    # no funds: the node's reason comes back
    code, _, err = await cli_process("wallet", "send", dest, "5", "--wallet", wfile,
                             "--node", node.url)
    assert code == 1 and "invalid:tx.insufficient_fee_balance" in err
    assert len(node.mempool) == 0
    code, _, err = await cli_process("wallet", "balance", "--wallet", wfile, "--node",
                             "http://127.0.0.1:9")
    assert code == 1 and "cannot reach the node" in err
    code, _, err = await cli_process("wallet", "send", "zz", "5", "--wallet", wfile)
    assert code == 2 and "64 hex digits" in err
    for bad in (("--nonce", "-1"), ("--fee", "1.5"), ("--fee", str(2**64))):
        code, _, err = await cli_process("wallet", "stake", "5", *bad, "--wallet", wfile)
        assert code == 2 and "non-negative integer" in err
    code, _, err = await cli_process("wallet", "stake", "0", "--wallet", wfile)
    assert code == 2 and "positive integer" in err
    data = Path(wfile).read_text().replace('"ciphertext": "', '"ciphertext": "00')
    Path(wfile).write_text(data)
    code, _, err = await cli_process("wallet", "stake", "5", "--wallet", wfile, "--node", node.url)
    assert code == 1 and "checksum mismatch" in err
    code, _, err = await cli_process("wallet", "address", "--wallet", str(tmp_path / "none.json"))
    assert code == 1 and "no wallet" in err


@pytest.mark.slow
async def test_dev_key_wallet_spends_genesis_funds(node: LiveNode,
                                                   tmp_path: Path) -> None:
    wfile = str(tmp_path / "dev.json")
    code, out, err = await cli_process("wallet", "new", "--dev", "3", "--wallet", wfile,
                                       "--kdf", "fast")
    assert code == 0, err
    assert out.split("address: ")[1].strip() == public_key(dev_seed(3)).hex()
    code, out, err = await cli_process("wallet", "unstake", "1", "--wallet", wfile,
                               "--node", node.url)
    assert code == 1 and "invalid:unstake.insufficient_stake" in err
    code, out, err = await cli_process("wallet", "stake", "10", "--wallet", wfile,
                               "--node", node.url)
    assert code == 0, err
    (pending,) = node.mempool.pending_of(public_key(dev_seed(3)))
    assert pending.payload == Stake(amount=10) and pending.id().hex() == out.strip()
