"""Where the client's files live and what every command reads from them.

Like bitcoind's datadir and ``bitcoin.conf``: one directory (``~/.pouwchain``, or
``$POUWCHAIN_DATADIR``, or ``--datadir``) holds the node's data, the wallets
(``wallets/<name>.json``) and ``client.toml``, the client's settings::

    node = "http://127.0.0.1:7645"   # the node's API URL
    wallet = "alice"                 # a wallet name (DATADIR/wallets/alice.json) or a path
    http_timeout = 30                # seconds one HTTP request may take
    wait_timeout = 300               # seconds `--wait` waits (a settled job, a confirmed tx)

Precedence, the same for every command: a flag, then the environment (``POUWCHAIN_NODE``,
``POUWCHAIN_WALLET``), then ``client.toml``, then the built-in default. Unknown keys and
values of the wrong type are errors (a typo never falls back to a default silently).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

DATADIR_ENV = "POUWCHAIN_DATADIR"
NODE_ENV = "POUWCHAIN_NODE"
WALLET_ENV = "POUWCHAIN_WALLET"
CLIENT_CONFIG = "client.toml"
WALLETS_DIR = "wallets"
DEFAULT_WALLET = "default"
LEGACY_WALLET = "wallet.json"  # the single wallet of earlier versions, DATADIR/wallet.json
DEFAULT_HTTP_TIMEOUT = 30.0  # seconds
DEFAULT_WAIT_TIMEOUT = 300.0  # seconds


class ClientConfigError(ValueError):
    """``client.toml`` is malformed or names a setting that does not exist."""


def default_datadir() -> Path:
    """``$POUWCHAIN_DATADIR``, else ``~/.pouwchain``."""
    env = os.environ.get(DATADIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".pouwchain"


def resolve_datadir(flag: Path | None) -> Path:
    """``--datadir`` if given, else `default_datadir`."""
    return Path(flag).expanduser() if flag is not None else default_datadir()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """The client's settings from ``DATADIR/client.toml`` (None: not set there)."""

    datadir: Path
    node: str | None = None
    wallet: str | None = None
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT

    @property
    def path(self) -> Path:
        return self.datadir / CLIENT_CONFIG


def _seconds(name: str, value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise ClientConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def load_client_config(datadir: Path) -> ClientConfig:
    """Read ``DATADIR/client.toml`` (absent: all defaults)."""
    path = datadir / CLIENT_CONFIG
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ClientConfig(datadir=datadir)
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientConfigError(f"cannot read {path}: {exc}") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ClientConfigError(f"{path} is not valid TOML: {exc}") from exc
    known = {f.name for f in dataclasses.fields(ClientConfig)} - {"datadir"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ClientConfigError(f"{path}: unknown settings {unknown}; "
                                f"known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for name in ("node", "wallet"):
        if name in raw:
            if not isinstance(raw[name], str) or not raw[name]:
                raise ClientConfigError(f"{path}: {name} must be a non-empty string")
            values[name] = raw[name]
    if "node" in values:
        try:
            values["node"] = normalize_node_url(values["node"])
        except ValueError as exc:
            raise ClientConfigError(f"{path}: node: {exc}") from exc
    for name in ("http_timeout", "wait_timeout"):
        if name in raw:
            values[name] = _seconds(f"{path}: {name}", raw[name])
    return ClientConfig(datadir=datadir, **values)


def normalize_node_url(text: str) -> str:
    """``http://host:port`` from a URL or a bare ``host:port`` (as `testnet status` prints
    it); ValueError for anything else."""
    url = text.strip()
    if "://" not in url:
        url = f"http://{url}"
    bad = ValueError(f"expected http://HOST:PORT or HOST:PORT, got {text!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError when not a number or out of range
    except ValueError as exc:
        raise bad from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in url or \
            port == 0:
        raise bad
    return url.rstrip("/")


def wallet_path(datadir: Path, wallet: str) -> Path:
    """The file of wallet ``wallet``: a path (it has a ``/`` or ends in ``.json``) as given,
    else a name in ``DATADIR/wallets/``. The name ``default`` falls back to the legacy
    ``DATADIR/wallet.json`` when only that exists."""
    if os.sep in wallet or "/" in wallet or wallet.endswith(".json"):
        return Path(wallet).expanduser()
    named = datadir / WALLETS_DIR / f"{wallet}.json"
    legacy = datadir / LEGACY_WALLET
    if wallet == DEFAULT_WALLET and not named.exists() and legacy.exists():
        return legacy
    return named


def check_wallet_name(name: str) -> str:
    """A wallet name: letters, digits, ``-``, ``_``, ``.`` (not leading), at most 64."""
    ok = 0 < len(name) <= 64 and name[0] != "." and all(
        c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    if not ok:
        raise ValueError(f"a wallet name is 1-64 letters, digits, '-', '_' or '.', got {name!r}")
    return name


def list_wallets(datadir: Path) -> list[tuple[str, Path]]:
    """(name, file) of every wallet in the datadir, the legacy one as ``default``."""
    found: dict[str, Path] = {}
    legacy = datadir / LEGACY_WALLET
    if legacy.is_file():
        found[DEFAULT_WALLET] = legacy
    directory = datadir / WALLETS_DIR
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            found[path.stem] = path
    return sorted(found.items())
