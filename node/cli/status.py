"""``pouwchain status``: what a node is doing, from its API; a progress bar while it syncs.

While the node reports ``syncing`` the command redraws a bar (in place on a terminal, one
line per update otherwise) until the node has caught up, then prints the full status.
``--once`` prints a single snapshot and returns, syncing or not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from node.client.http import DEFAULT_NODE_URL, ApiClient, ApiClientError, node_url

BAR_WIDTH = 30


def progress_bar(fraction: float, *, width: int = BAR_WIDTH) -> str:
    """``[#######.......]  45.0%`` for a fraction in [0, 1] (clamped)."""
    fraction = min(1.0, max(0.0, fraction))
    filled = int(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}%"


def format_status(status: dict[str, Any]) -> str:
    mining = status.get("mining") or {}
    if mining.get("enabled"):
        mined = (f"on: {mining.get('blocks_mined', 0)} blocks mined, "
                 f"{float(mining.get('tickets_per_s', 0.0)):.0f} tickets/s")
    else:
        mined = "off"
    rows = [
        ("network", f"{status['network']} (chain id {status['chain_id']})"),
        ("height", str(status["height"])),
        ("tip", status["tip"]),
        ("peers", str(status["peers"])),
        ("syncing", f"yes {progress_bar(float(status['sync_progress']))}"
         if status["syncing"] else "no"),
        ("mempool", f"{status['mempool']} transactions"),
        ("mining", mined),
    ]
    return "\n".join(f"{name:<9} {value}" for name, value in rows)


def follow_sync(client: ApiClient, *, interval: float, out: TextIO,
                max_polls: int | None = None) -> dict[str, Any]:
    """Poll until the node stops syncing, drawing the bar; returns the last status."""
    tty = out.isatty()
    polls = 0
    status: dict[str, Any] = client.get("/api/v1/status")
    while status["syncing"] and (max_polls is None or polls < max_polls):
        best = status.get("best_peer_height")
        target = f"/{best}" if isinstance(best, int) and best > status["height"] else ""
        line = (f"syncing {progress_bar(float(status['sync_progress']))}  "
                f"height {status['height']}{target}")
        out.write(f"\r{line}" if tty else f"{line}\n")
        out.flush()
        time.sleep(interval)
        polls += 1
        status = client.get("/api/v1/status")
    if tty and polls:
        out.write("\n")
    return status


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        client = ApiClient(node_url(node=args.node, datadir=args.datadir))
        if args.once:
            status = client.get("/api/v1/status")
        else:
            status = follow_sync(client, interval=args.interval, out=sys.stdout)
    except ApiClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pouwchain status``."""
    p = subparsers.add_parser("status", help="a node's status; a progress bar while syncing")
    p.add_argument("--node", default=None,
                   help=f"node API URL (default: from --datadir, else $POUWCHAIN_NODE or "
                        f"{DEFAULT_NODE_URL})")
    p.add_argument("--datadir", type=Path, default=None,
                   help="a running node's data directory (its node.json gives the URL)")
    p.add_argument("--once", action="store_true", help="one snapshot, do not follow a sync")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--json", action="store_true", help="print the raw JSON status")
    p.set_defaults(func=_cmd_status)
