"""The API token: a bearer secret in the data directory for routes that act as the node.

Anything that spends the node's own keys or administers it (peers, miner control) requires
``Authorization: Bearer <token>``. The token is 32 random bytes in hex, written to
``<datadir>/api.token`` with mode 0600 when the node starts, so only the node's OS user (and
tools it runs, like the functional tests) can read it. It is rotated at every start: a token
that leaked from an earlier run is useless.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from aiohttp import web

from node.api.errors import ApiError

TOKEN_FILE = "api.token"
TOKEN_BYTES = 32


def token_path(datadir: Path) -> Path:
    return Path(datadir) / TOKEN_FILE


def create_token(datadir: Path) -> str:
    """Write a fresh token to ``datadir/api.token`` (mode 0600, atomic rename) and return it."""
    datadir = Path(datadir)
    datadir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(TOKEN_BYTES)
    tmp = datadir / f".{TOKEN_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask; be explicit
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, token_path(datadir))
    return token


def read_token(datadir: Path) -> str:
    """The current token of a node's data directory (for CLI tools and tests)."""
    return token_path(datadir).read_text().strip()


class TokenAuth:
    """Checks bearer tokens in constant time; 401 when missing, 403 when wrong."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def check(self, request: web.Request) -> None:
        """Raise an HTTP error unless ``request`` carries the node's token."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not value.strip():
            raise ApiError(
                401, "token_required",
                "this route requires 'Authorization: Bearer <token>' "
                f"(the token is in the node's data directory, {TOKEN_FILE})",
                headers={"WWW-Authenticate": 'Bearer realm="pouwchain"'},
            )
        if not hmac.compare_digest(value.strip().encode(), self._token):
            raise ApiError(403, "bad_token", "the token is not this node's")
