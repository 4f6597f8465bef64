"""The encrypted keystore: round trip, file mode, wrong password, damaged and edited files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from consensus.genesis import dev_seed
from consensus.tx import public_key
from contracts import Stake
from node.client.wallet import (
    FAST,
    KdfLimits,
    WalletCorruptError,
    WalletError,
    WalletExistsError,
    WrongPasswordError,
    _checksum,
    create_wallet,
    decrypt_seed,
    encrypt_seed,
    open_wallet,
    wallet_address,
)

SEED = dev_seed(7)


def make(tmp_path: Path, password: str = "correct horse") -> Path:
    path = tmp_path / "keys" / "wallet.json"
    create_wallet(path, password, limits=FAST, seed=SEED)
    return path


def rewrite(path: Path, edit: dict[str, object], *, fix_checksum: bool) -> None:
    doc = json.loads(path.read_text())
    doc.update(edit)
    if fix_checksum:
        doc["checksum"] = _checksum({k: v for k, v in doc.items() if k != "checksum"})
    path.write_text(json.dumps(doc))


def test_round_trip_mode_and_no_secret_on_disk(tmp_path: Path) -> None:
    path = make(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert SEED.hex() not in text and SEED not in path.read_bytes()
    wallet = open_wallet(path, "correct horse")
    assert wallet.address == public_key(SEED) == wallet_address(path)
    assert SEED.hex() not in repr(wallet)
    tx = wallet.sign(chain_id=1337, nonce=3, fee=5, payload=Stake(amount=9))
    tx.verify_signature()
    assert tx.sender == public_key(SEED) and tx.nonce == 3
    # a fresh salt every time: two files of the same seed and password differ
    doc = encrypt_seed(SEED, "correct horse", limits=FAST)
    assert doc["ciphertext"] != json.loads(text)["ciphertext"]
    assert decrypt_seed(doc, "correct horse") == SEED
    # the stored limits are the ones asked for
    assert json.loads(text)["kdf"]["opslimit"] == FAST.opslimit


def test_random_seed_and_refuse_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    first = create_wallet(path, "pw", limits=FAST)
    before = path.read_bytes()
    with pytest.raises(WalletExistsError):
        create_wallet(path, "pw", limits=FAST)
    assert path.read_bytes() == before
    second = create_wallet(tmp_path / "w2.json", "pw", limits=FAST)
    assert first.address != second.address
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(WalletError, match="empty"):
        create_wallet(tmp_path / "w3.json", "", limits=FAST)


def test_wrong_password(tmp_path: Path) -> None:
    path = make(tmp_path)
    with pytest.raises(WrongPasswordError, match="wrong password"):
        open_wallet(path, "Correct horse")


@pytest.mark.parametrize("edit", [
    {"ciphertext": "00" * 72},
    {"address": public_key(dev_seed(8)).hex()},
    {"kdf": {"name": "argon2id", "opslimit": 1, "memlimit": 8192, "salt": "00" * 16}},
])
def test_edited_field_breaks_checksum(tmp_path: Path, edit: dict[str, object]) -> None:
    path = make(tmp_path)
    rewrite(path, edit, fix_checksum=False)
    with pytest.raises(WalletCorruptError, match="checksum"):
        open_wallet(path, "correct horse")


def test_consistent_edits_are_still_caught(tmp_path: Path) -> None:
    path = make(tmp_path)
    # another address with a recomputed checksum: the decrypted key does not match it
    rewrite(path, {"address": public_key(dev_seed(8)).hex()}, fix_checksum=True)
    with pytest.raises(WalletCorruptError, match="does not match"):
        open_wallet(path, "correct horse")
    path.unlink()
    path = make(tmp_path)
    # an absurd memory cost is refused before any key derivation
    doc = json.loads(path.read_text())
    doc["kdf"]["memlimit"] = 1 << 50
    path.write_text(json.dumps(doc))
    rewrite(path, {}, fix_checksum=True)
    with pytest.raises(WalletCorruptError, match="memlimit"):
        open_wallet(path, "correct horse")


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'{"format": "x"}',
                                     b"\xff\xfe"])
def test_damaged_file(tmp_path: Path, content: bytes) -> None:
    path = make(tmp_path)
    path.write_bytes(content)
    with pytest.raises(WalletCorruptError):
        open_wallet(path, "correct horse")
    with pytest.raises(WalletCorruptError):
        wallet_address(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = make(tmp_path)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(WalletCorruptError):
        open_wallet(path, "correct horse")


def test_missing_and_world_readable(tmp_path: Path) -> None:
    with pytest.raises(WalletError, match="no wallet"):
        open_wallet(tmp_path / "nope.json", "pw")
    path = make(tmp_path)
    path.chmod(0o644)
    with pytest.raises(WalletError, match="chmod 600"):
        open_wallet(path, "correct horse")


def test_limits_are_configurable_and_checked() -> None:
    with pytest.raises(WalletCorruptError):
        KdfLimits(opslimit=0, memlimit=FAST.memlimit).check()
    doc = encrypt_seed(SEED, b"pw", limits=KdfLimits(opslimit=2, memlimit=1 << 16))
    assert doc["kdf"]["opslimit"] == 2 and doc["kdf"]["memlimit"] == 1 << 16
    assert decrypt_seed(doc, "pw") == SEED
