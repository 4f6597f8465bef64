"""Waiting on conditions, the repository root, and running the CLI in a child process.

Two waits, one for each kind of test (Bitcoin Core's ``wait_until``):

* `wait_until`: blocking, for real node processes (functional tests) polled over HTTP.
* `wait_for`: awaitable, for in-process nodes; it yields to the event loop between checks, so
  the node under test keeps running. The predicate may be a plain or an async function.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from testnet.client import ApiError

ROOT = Path(__file__).resolve().parents[2]  # the repository (cwd of every child process)
DEFAULT_TIMEOUT = 60.0
PASSWORD = "pw for tests"  # the wallet password `cli_process` hands the CLI


def load_script(path: Path, name: str) -> ModuleType:
    """Import a script that is not in a package (a vector generator) as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_until(predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, *,
               interval: float = 0.05, message: str = "") -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned); fail after ``timeout``.

    Connection errors while polling count as "not yet" (nodes restart under our feet), but
    the last one is reported if time runs out.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ApiError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise AssertionError(f"wait_until timed out after {timeout:.0f} s: "
                                 f"{message or predicate}{detail}")
        time.sleep(interval)


async def wait_for(predicate: Callable[[], Any | Awaitable[Any]],
                   timeout: float = DEFAULT_TIMEOUT, *, interval: float = 0.01,
                   message: str = "condition") -> Any:
    """Check ``predicate`` (awaiting it if it is async) until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
        await asyncio.sleep(interval)


async def cli_process(*args: str, password: str | None = PASSWORD,
                  timeout: float = 120.0) -> tuple[int, str, str]:
    """Run ``pouwchain ARGS`` (``python -m node.cli``) in a child process while this event
    loop keeps serving; (exit code, stdout, stderr). ``POUWCHAIN_*`` variables of this
    process are dropped; ``password`` (None: none) goes in ``POUWCHAIN_PASSWORD``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POUWCHAIN_")}
    if password is not None:
        env["POUWCHAIN_PASSWORD"] = password
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node.cli", *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # no controlling terminal: getpass cannot wait on /dev/tty
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def pouwchain(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    """Run ``pouwchain ARGS`` (the console script, ``testnet.cli``) to completion in a child
    process (text output captured)."""
    return subprocess.run([sys.executable, "-m", "testnet.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)
