"""Encrypted keystore: one Ed25519 seed in a JSON file, sealed under a password.

The password is stretched with Argon2id (``nacl.pwhash.argon2id``; the limits are stored in
the file, so tests can use fast ones while real wallets default to libsodium's MODERATE)
into a key for ``nacl.secret.SecretBox`` (XSalsa20-Poly1305), which encrypts the seed.
The file is written with mode 0600 and never holds the seed in clear; nothing in this
module prints or logs it.

Two failures are told apart on purpose: a checksum over every field detects a damaged or
edited file (``WalletCorruptError``) before decryption, so a failed decryption of an intact
file means the password is wrong (``WrongPasswordError``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils
from nacl.pwhash import argon2id

from consensus.tx import Transaction, public_key, sign_transaction
from contracts import Payload
from swarm.messages import RequestAnnouncement, sign_request

FORMAT = "pouwchain-wallet"
VERSION = 1
SEED_BYTES = 32


class WalletError(Exception):
    """A wallet cannot be used; the message says why and what to do."""


class WrongPasswordError(WalletError):
    pass


class WalletCorruptError(WalletError):
    pass


class WalletExistsError(WalletError):
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class KdfLimits:
    """Argon2id cost: passes (opslimit) and memory in bytes (memlimit)."""

    opslimit: int
    memlimit: int

    def check(self) -> None:
        if not argon2id.OPSLIMIT_MIN <= self.opslimit <= argon2id.OPSLIMIT_MAX:
            raise WalletCorruptError(f"argon2id opslimit {self.opslimit} out of range")
        # bounded above by SENSITIVE so a crafted file cannot make us allocate terabytes
        if not argon2id.MEMLIMIT_MIN <= self.memlimit <= argon2id.MEMLIMIT_SENSITIVE:
            raise WalletCorruptError(f"argon2id memlimit {self.memlimit} out of range")


MODERATE = KdfLimits(opslimit=argon2id.OPSLIMIT_MODERATE, memlimit=argon2id.MEMLIMIT_MODERATE)
INTERACTIVE = KdfLimits(opslimit=argon2id.OPSLIMIT_INTERACTIVE,
                        memlimit=argon2id.MEMLIMIT_INTERACTIVE)
# insecure: for tests and throwaway dev wallets only
FAST = KdfLimits(opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN)
KDF_PRESETS = {"moderate": MODERATE, "interactive": INTERACTIVE, "fast": FAST}


class Wallet:
    """An unlocked wallet: signs transactions; the seed stays private to this object."""

    def __init__(self, seed: bytes, *, path: Path | None = None) -> None:
        if len(seed) != SEED_BYTES:
            raise WalletError("a wallet seed is 32 bytes")
        self.__seed = seed
        self.path = path
        self.address = public_key(seed)

    def __repr__(self) -> str:  # never show the seed, even in a traceback
        return f"Wallet(address={self.address.hex()})"

    def sign(self, *, chain_id: int, nonce: int, fee: int, payload: Payload) -> Transaction:
        return sign_transaction(self.__seed, chain_id=chain_id, nonce=nonce, fee=fee,
                                payload=payload)

    def sign_swarm_request(self, *, chain_id: int, prompt: bytes, fee: int, answers: int,
                           judges: int, nonce: bytes, beacon_height: int
                           ) -> RequestAnnouncement:
        """A swarm request signed by this wallet: its fee comes from the wallet's escrow;
        ``beacon_height`` is the node's tip height (docs/swarm.md §5.2a "Ties")."""
        return sign_request(self.__seed, chain_id=chain_id, prompt=prompt, fee=fee,
                            answers=answers, judges=judges, nonce=nonce,
                            beacon_height=beacon_height)


def _password_bytes(password: str | bytes) -> bytes:
    raw = password.encode() if isinstance(password, str) else bytes(password)
    if not raw:
        raise WalletError("the password must not be empty")
    return raw


def _derive(password: bytes, salt: bytes, limits: KdfLimits) -> bytes:
    return bytes(argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, password, salt,
                              opslimit=limits.opslimit, memlimit=limits.memlimit))


def _checksum(fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(canonical, digest_size=32, person=b"pouw/wallet").hexdigest()


def encrypt_seed(seed: bytes, password: str | bytes, *,
                 limits: KdfLimits = MODERATE) -> dict[str, Any]:
    """The wallet document (JSON-ready) holding ``seed`` sealed under ``password``."""
    limits.check()
    salt = nacl.utils.random(argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(_password_bytes(password), salt, limits))
    fields: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "address": public_key(seed).hex(),
        "kdf": {"name": "argon2id", "opslimit": limits.opslimit,
                "memlimit": limits.memlimit, "salt": salt.hex()},
        "cipher": "xsalsa20poly1305",
        "ciphertext": bytes(box.encrypt(seed)).hex(),
    }
    return {**fields, "checksum": _checksum(fields)}


def _parse(document: object) -> tuple[dict[str, Any], KdfLimits, bytes, bytes, bytes]:
    """Validate a wallet document's shape; returns fields, limits, salt, ciphertext, address."""
    if not isinstance(document, dict):
        raise WalletCorruptError("not a wallet file (expected a JSON object)")
    fields = {k: v for k, v in document.items() if k != "checksum"}
    if document.get("format") != FORMAT or document.get("version") != VERSION:
        raise WalletCorruptError("not a pouwchain wallet file (format/version)")
    if document.get("checksum") != _checksum(fields):
        raise WalletCorruptError("checksum mismatch: the wallet file was modified or damaged")
    try:
        kdf = fields["kdf"]
        if kdf["name"] != "argon2id" or fields["cipher"] != "xsalsa20poly1305":
            raise WalletCorruptError("unsupported kdf or cipher")
        limits = KdfLimits(opslimit=int(kdf["opslimit"]), memlimit=int(kdf["memlimit"]))
        salt = bytes.fromhex(kdf["salt"])
        ciphertext = bytes.fromhex(fields["ciphertext"])
        address = bytes.fromhex(fields["address"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WalletCorruptError(f"wallet file is missing or has bad fields: {exc}") from exc
    limits.check()
    if len(salt) != argon2id.SALTBYTES or len(address) != 32:
        raise WalletCorruptError("bad salt or address length")
    return fields, limits, salt, ciphertext, address


def decrypt_seed(document: object, password: str | bytes) -> bytes:
    """The seed sealed in ``document``; raises WrongPasswordError or WalletCorruptError."""
    _, limits, salt, ciphertext, address = _parse(document)
    box = nacl.secret.SecretBox(_derive(_password_bytes(password), salt, limits))
    try:
        seed = bytes(box.decrypt(ciphertext))
    except nacl.exceptions.CryptoError as exc:
        raise WrongPasswordError("wrong password for this wallet") from exc
    if len(seed) != SEED_BYTES or public_key(seed) != address:
        raise WalletCorruptError("the decrypted key does not match the wallet's address")
    return seed


def _read_document(path: Path) -> object:
    try:
        text = Path(path).read_text()
    except FileNotFoundError as exc:
        raise WalletError(f"no wallet at {path} (create one with 'pouwchain wallet new')") \
            from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise WalletCorruptError(f"cannot read wallet {path}: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise WalletCorruptError(f"wallet {path} is not valid JSON: {exc}") from exc


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 holding ``data``; never overwrite an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic and fails if the wallet exists: never clobber keys
    except FileExistsError as exc:
        raise WalletExistsError(f"a wallet already exists at {path}") from exc
    finally:
        tmp.unlink()


def create_wallet(path: Path, password: str | bytes, *, limits: KdfLimits = MODERATE,
                  seed: bytes | None = None) -> Wallet:
    """Make a new wallet file (random seed unless given) and return it unlocked."""
    path = Path(path)
    if path.exists():
        raise WalletExistsError(f"a wallet already exists at {path}")
    seed = seed if seed is not None else secrets.token_bytes(SEED_BYTES)
    document = encrypt_seed(seed, password, limits=limits)
    _write_private(path, (json.dumps(document, indent=2) + "\n").encode())
    return Wallet(seed, path=path)


def open_wallet(path: Path, password: str | bytes) -> Wallet:
    """Unlock the wallet at ``path``."""
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    if mode & 0o077:
        raise WalletError(f"wallet {path} is readable by others (mode {mode:o}); "
                          f"run: chmod 600 {path}")
    return Wallet(decrypt_seed(_read_document(path), password), path=path)


def wallet_address(path: Path) -> bytes:
    """The address recorded in a wallet file (no password needed: it is public)."""
    return _parse(_read_document(Path(path)))[4]
