"""What every client command shares: its options (node, datadir, wallet, timeouts), their
resolution through `node.client.config`, argument types that reject bad values with one line
(never a traceback), and the guard that turns client failures into ``error: ...`` and exit 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from node.client.config import (
    DATADIR_ENV,
    DEFAULT_HTTP_TIMEOUT,
    DEFAULT_WALLET,
    NODE_ENV,
    WALLET_ENV,
    ClientConfig,
    ClientConfigError,
    load_client_config,
    normalize_node_url,
    resolve_datadir,
    wallet_path,
)
from node.client.http import DEFAULT_NODE_URL, ApiClient, ApiClientError, node_url
from node.client.wallet import WalletError

Command = Callable[[argparse.Namespace], int]
Parser = argparse.ArgumentParser
U64_LIMIT = 2**64
PASSWORD_ENV = "POUWCHAIN_PASSWORD"


class CliError(Exception):
    """A command cannot go on; the message says why (printed as ``error: <message>``)."""


# -- argument types: each rejects with one argparse line ----------------------------------------

def seconds(text: str) -> float:
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def nonneg_seconds(text: str) -> float:
    """Zero or a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def u64(text: str) -> int:
    """A non-negative integer below 2^64 (fees, nonces, escrow, heights)."""
    if not (text.isascii() and text.isdigit()) or int(text) >= U64_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def positive_u64(text: str) -> int:
    """A positive integer below 2^64 (amounts)."""
    value = u64(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An integer in [low, high]."""
    def parse(text: str) -> int:
        body = text[1:] if text.startswith("-") else text
        if not (body.isascii() and body.isdigit()) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(
                f"expected an integer from {low} to {high}, got {text!r}")
        return int(text)
    parse.__name__ = "integer"  # argparse names the type in its message
    return parse


def hex32(what: str) -> Callable[[str], str]:
    """64 hex digits (optional 0x), returned lower-case without the prefix."""
    def parse(text: str) -> str:
        body = text.lower().removeprefix("0x")
        if len(body) != 64 or any(c not in "0123456789abcdef" for c in body):
            raise argparse.ArgumentTypeError(f"{what} is 64 hex digits, got {text!r}")
        return body
    parse.__name__ = what
    return parse


def node_url_arg(text: str) -> str:
    try:
        return normalize_node_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


# -- the shared options ---------------------------------------------------------------------

def add_datadir_option(p: Parser) -> None:
    p.add_argument("--datadir", type=Path, default=None, metavar="DIR",
                   help=f"data directory: wallets, client.toml, a local node's node.json "
                        f"(default: ${DATADIR_ENV}, else ~/.pouwchain)")


def add_node_options(p: Parser, *, http_timeout: float | None = DEFAULT_HTTP_TIMEOUT) -> None:
    """``--node``, ``--datadir`` and ``--http-timeout`` (None: the command has its own
    timeout option), the same on every command that talks to a node."""
    p.add_argument("--node", type=node_url_arg, default=None, metavar="URL",
                   help=f"the node's API URL, http://HOST:PORT or HOST:PORT (default: "
                        f"${NODE_ENV}, else `node` in DATADIR/client.toml, else the node "
                        f"running in DATADIR, else {DEFAULT_NODE_URL})")
    add_datadir_option(p)
    if http_timeout is None:
        return
    p.add_argument("--http-timeout", type=seconds, default=None,
                   metavar="SECONDS",
                   help=f"seconds one request to the node may take (default: `http_timeout` "
                        f"in client.toml, else {http_timeout:g} s)")


def add_wallet_option(p: Parser) -> None:
    p.add_argument("--wallet", default=None, metavar="NAME|PATH",
                   help=f"a wallet name (DATADIR/wallets/NAME.json) or a file path "
                        f"(default: ${WALLET_ENV}, else `wallet` in client.toml, else "
                        f"'{DEFAULT_WALLET}')")


def add_json_option(p: Parser, what: str = "the node's answer") -> None:
    p.add_argument("--json", action="store_true",
                   help=f"print {what} as JSON (default: off, a readable summary)")


# -- resolution -----------------------------------------------------------------------------

def client_config(args: argparse.Namespace) -> ClientConfig:
    """The datadir's client.toml (`load_client_config`), raising `CliError` if malformed."""
    datadir = resolve_datadir(getattr(args, "datadir", None))
    try:
        return load_client_config(datadir)
    except ClientConfigError as exc:
        raise CliError(str(exc)) from exc


def api_client(args: argparse.Namespace, *, timeout: float | None = None) -> ApiClient:
    """The client of the node these arguments address (`node_url`'s precedence)."""
    config = client_config(args)
    url = node_url(node=getattr(args, "node", None), datadir=getattr(args, "datadir", None),
                   configured=config.node, default_datadir=config.datadir)
    wait = timeout if timeout is not None else getattr(args, "http_timeout", None)
    return ApiClient(url, timeout=wait if wait is not None else config.http_timeout)


def resolve_wallet(args: argparse.Namespace) -> Path:
    """The wallet file: ``--wallet``, ``$POUWCHAIN_WALLET``, client.toml, ``default``."""
    config = client_config(args)
    chosen = getattr(args, "wallet", None) or os.environ.get(WALLET_ENV) or config.wallet \
        or DEFAULT_WALLET
    return wallet_path(config.datadir, str(chosen))


def read_password(*, confirm: bool = False) -> str:
    """From ``$POUWCHAIN_PASSWORD``, else prompted (twice when creating)."""
    env = os.environ.get(PASSWORD_ENV)
    if env is not None:
        return env
    try:
        password = getpass.getpass("wallet password: ")
        if confirm and getpass.getpass("repeat password: ") != password:
            raise WalletError("the passwords do not match")
    except EOFError as exc:
        raise WalletError(f"no password: set {PASSWORD_ENV} or run in a terminal") from exc
    return password


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def guarded(func: Command) -> Command:
    """Client, wallet and file failures as one ``error: ...`` line on stderr, exit 1."""
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except (CliError, WalletError, ApiClientError) as exc:
            print(f"error: {exc}", file=sys.stderr)
        except OSError as exc:
            name = f" {exc.filename}" if getattr(exc, "filename", None) else ""
            print(f"error: {exc.strerror or exc}{':' if name else ''}{name}", file=sys.stderr)
        return 1
    run.__wrapped__ = func  # type: ignore[attr-defined]
    return run


class Progress:
    """One progress line on stderr: redrawn in place on a terminal, else one line per change
    of ``phase`` (logs and pipes get a short record, not a stream of carriage returns).
    ``quiet`` prints nothing."""

    def __init__(self, *, quiet: bool = False, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stderr
        self.quiet = quiet
        self.tty = self.out.isatty()
        self.started = time.monotonic()
        self.phase: str | None = None
        self.drawn = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, phase: str, detail: str = "") -> None:
        if self.quiet:
            return
        text = f"{phase}{f'  {detail}' if detail else ''}  ({self.elapsed():.0f} s)"
        if self.tty:
            self.out.write(f"\r{text}\x1b[K")
            self.drawn = True
        elif phase != self.phase:
            self.out.write(f"{text}\n")
        self.phase = phase
        self.out.flush()

    def done(self) -> None:
        """End the line (a terminal's cursor moves past the redrawn line)."""
        if self.tty and self.drawn and not self.quiet:
            self.out.write("\n")
            self.out.flush()
        self.drawn = False
