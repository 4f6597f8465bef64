"""Starting, watching and stopping node processes on 127.0.0.1.

Shared by the launcher and the functional-test framework, so both start nodes the same way
(the same command line the user runs) and both stop them the same way: SIGTERM, a bounded
wait for the clean shutdown, then SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from testnet.client import request

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def node_command(
    datadir: Path,
    port: int,
    *,
    mine: bool = False,
    peers: Sequence[str] = (),
    genesis: Path | None = None,
    network: str = "dev",
    extra: Sequence[str] = (),
) -> list[str]:
    """The `pouwchain node` command line for one node."""
    cmd = [sys.executable, "-m", "node.cli", "node", "--datadir", str(datadir),
           "--port", str(port), "--network", network]
    if genesis is not None:
        cmd += ["--genesis", str(genesis)]
    if mine:
        cmd.append("--mine")
    if peers:
        cmd += ["--peers", *peers]
    cmd += list(extra)
    return cmd


def spawn(cmd: Sequence[str], log_path: Path, *, detach: bool = False) -> subprocess.Popen[bytes]:
    """Start a node with stdout/stderr appended to ``log_path``.

    ``detach`` puts it in its own session so it outlives the launcher and a terminal's
    Ctrl-C does not reach it (the launcher stops it itself, cleanly).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT, start_new_session=detach,
        )


def read_node_json(datadir: Path) -> dict[str, Any] | None:
    """The node's ``node.json`` (pid, port, node_id, api), or None if absent or partial."""
    try:
        data = json.loads((datadir / "node.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_token(datadir: Path) -> str | None:
    """The node's API token, if it has written one."""
    try:
        return (datadir / "api.token").read_text().strip() or None
    except OSError:
        return None


class NodeStartError(RuntimeError):
    """A node exited or did not become ready in time."""


def wait_ready(datadir: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0
               ) -> dict[str, Any]:
    """Wait until the node wrote *its own* node.json (pid match) and its API answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise NodeStartError(f"node {datadir} exited with code {code} during startup")
        info = read_node_json(datadir)
        if info is not None and info.get("pid") == proc.pid and info.get("api"):
            try:
                request(str(info["api"]), "GET", "/api/v1/status", timeout=2.0)
                return info
            except OSError:
                pass
        time.sleep(0.05)
    raise NodeStartError(f"node {datadir} not ready after {timeout:.0f} s")


def _task_state(path: Path) -> str | None:
    try:
        return path.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """True if any thread of ``pid`` still runs. A zombie counts as gone, but only once all
    its threads are: the thread-group leader shows ``Z`` as soon as it has exited while the
    process's other threads (its executors, LevelDB's) may still be winding down and holding
    its sockets and files."""
    if _task_state(Path(f"/proc/{pid}/stat")) is None:
        return False
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        tasks = []
    states = [_task_state(task / "stat") for task in tasks] or \
        [_task_state(Path(f"/proc/{pid}/stat"))]
    return any(state not in (None, "Z", "X") for state in states)


def pid_is_node(pid: int, datadir: Path) -> bool:
    """True if ``pid`` is a node process for ``datadir`` (guards against pid reuse)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"node.cli" in argv and str(datadir).encode() in argv


def stop_pid(pid: int, timeout: float = 15.0) -> bool:
    """SIGTERM, wait up to ``timeout`` for a clean exit, then SIGKILL; True if it was clean."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(100):
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    return False


def stop_pids(pids: list[int], timeout: float = 15.0) -> dict[int, bool]:
    """`stop_pid` for many processes at once: SIGTERM to all, then one shared deadline
    (shutdowns overlap instead of adding up); pid -> stopped cleanly."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    return {pid: stop_pid(pid, 0.0) if pid_alive(pid) else True for pid in pids}


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
    """Stop a child we spawned (SIGTERM, wait, SIGKILL) and reap it; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
