"""``pouwchain validator register|status`` as real subprocesses against a real node."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from consensus.finality import validator_record
from consensus.genesis import dev_seed
from consensus.tx import public_key
from contracts.finality import RegisterValidator
from core.bls import BACKEND, derive_secret
from core.state import State
from node.client.wallet import FAST, create_wallet
from node.finality.keys import KEYSTORE_FILE, PASSWORD_ENV, load_validator_seed
from tests.framework.nodes import LiveNode
from tests.framework.util import PASSWORD, cli_process


@pytest.mark.slow
async def test_register_seals_the_key_then_registers_it(node: LiveNode, tmp_path: Path) -> None:
    wallet = tmp_path / "w" / "wallet.json"
    create_wallet(wallet, PASSWORD, limits=FAST, seed=dev_seed(0))  # bonded in the dev genesis
    address = public_key(dev_seed(0))
    voter = tmp_path / "voter"
    args = ("validator", "register", "--wallet", str(wallet), "--node", node.url,
            "--node-datadir", str(voter), "--kdf", "fast", "--fee", "10")
    code, out, err = await cli_process(*args)
    assert code == 0, err
    tx_id = bytes.fromhex(out.strip())
    [tx] = [t for t in node.mempool.transactions() if t.id() == tx_id]
    assert isinstance(tx.payload, RegisterValidator) and tx.sender == address
    # the key is sealed beside the wallet and in the node's datadir, never in clear
    for keystore in (wallet.with_name("wallet.validator.json"), voter / KEYSTORE_FILE):
        assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    seed = load_validator_seed(voter, identity=bytes(32), environ={PASSWORD_ENV: PASSWORD})
    assert seed is not None and seed.address == address
    assert seed.seed.hex() not in out + err + (voter / KEYSTORE_FILE).read_text()
    assert BACKEND.secret_to_pubkey(derive_secret(seed.seed)) == tx.payload.pubkey
    # on chain once mined
    await node.mine([tx])
    record = validator_record(State(node.chain.state_view()), address)
    assert record is not None and record.pubkey == tx.payload.pubkey
    # a second key for the same account is refused before anything is sent
    code, out, err = await cli_process(*args)
    assert code == 1 and "exists" in err and not out
    code, out, err = await cli_process("validator", "status", "--node", node.url, password=None)
    assert code == 0 and "finality" in out, err
