"""A validator's BLS key, as the node loads it from its data directory.

Two forms, tried in this order:

* ``validator.json``: the key sealed like a wallet (`node.client.wallet.encrypt_seed`:
  Argon2id + XSalsa20-Poly1305) with the validator's account address beside it, written by
  ``pouwchain validator register --datadir``; the node unlocks it with the password in
  ``POUWCHAIN_PASSWORD`` (the variable the CLI reads for wallets).
* ``validator.key``: the 32-byte seed in clear (mode 0600, like ``node.key``), for dev and
  test networks whose keys are public anyway; the validator's account is the node identity.

The 32-byte seed is the BLS key material (``KeyGen`` input); the secret never leaves this
object's signing method and is never logged.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.client.wallet import (
    FAST,
    MODERATE,
    KdfLimits,
    WalletError,
    decrypt_seed,
    encrypt_seed,
)

KEYSTORE_FILE = "validator.json"
RAW_KEY_FILE = "validator.key"
KEYSTORE_FORMAT = "pouwchain-validator"
PASSWORD_ENV = "POUWCHAIN_PASSWORD"
SEED_BYTES = 32


class ValidatorKeyError(WalletError):
    """The validator key cannot be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class ValidatorSeed:
    """A validator's account address and its BLS seed (kept private to this object)."""

    address: bytes
    _seed: bytes = field(repr=False)

    @property
    def seed(self) -> bytes:
        return self._seed


def keystore_document(*, address: bytes, seed: bytes, password: str,
                      limits: KdfLimits = MODERATE) -> dict[str, Any]:
    """The ``validator.json`` document: account address, BLS public key, sealed seed."""
    return {"format": KEYSTORE_FORMAT, "validator": address.hex(),
            "keystore": encrypt_seed(seed, password, limits=limits)}


def write_keystore(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` to ``path`` with mode 0600 (refuses to overwrite a key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(document, indent=2) + "\n")


def open_keystore(path: Path, password: str) -> ValidatorSeed:
    """Unlock a ``validator.json``; raises `ValidatorKeyError` (or the wallet's errors)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValidatorKeyError(f"cannot read validator keystore {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != KEYSTORE_FORMAT:
        raise ValidatorKeyError(f"{path} is not a pouwchain validator keystore")
    try:
        address = bytes.fromhex(str(document["validator"]))
    except (KeyError, ValueError) as exc:
        raise ValidatorKeyError(f"{path}: bad validator address") from exc
    if len(address) != 32:
        raise ValidatorKeyError(f"{path}: bad validator address")
    return ValidatorSeed(address, decrypt_seed(document["keystore"], password))


def load_validator_seed(datadir: Path, *, identity: bytes,
                        environ: dict[str, str] | None = None) -> ValidatorSeed | None:
    """The node's validator seed, or None when the node is not a validator."""
    env = os.environ if environ is None else environ
    keystore = datadir / KEYSTORE_FILE
    if keystore.exists():
        password = env.get(PASSWORD_ENV)
        if not password:
            raise ValidatorKeyError(f"{keystore} is sealed: set {PASSWORD_ENV} to unlock it")
        return open_keystore(keystore, password)
    raw = datadir / RAW_KEY_FILE
    if raw.exists():
        seed = raw.read_bytes()
        if len(seed) != SEED_BYTES:
            raise ValidatorKeyError(f"{raw} is not a {SEED_BYTES}-byte key")
        return ValidatorSeed(identity, seed)
    return None


def write_raw_key(datadir: Path, seed: bytes) -> None:
    """Dev networks: store a validator seed in clear as ``validator.key`` (0600)."""
    datadir.mkdir(parents=True, exist_ok=True)
    path = datadir / RAW_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(seed)


__all__ = ["FAST", "KEYSTORE_FILE", "RAW_KEY_FILE", "ValidatorKeyError", "ValidatorSeed",
           "keystore_document", "load_validator_seed", "open_keystore", "write_keystore",
           "write_raw_key"]
