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
from typing import Any, TextIO

from node.cli.common import add_json_option, add_node_options, api_client, guarded, seconds
from node.client.http import ApiClient

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
    finalized = status.get("finalized_height")
    if isinstance(finalized, int):  # a node with finality (issue 14)
        rows.insert(2, ("finalized", str(finalized)))
    swarm = status.get("swarm")
    if isinstance(swarm, dict):
        rows += swarm_lines(swarm)
    return "\n".join(f"{name:<9} {value}" for name, value in rows)


def swarm_lines(swarm: dict[str, Any]) -> list[tuple[str, str]]:
    """The swarm section of /api/v1/status (docs/api.md) as status rows: model and
    registration, rounds served and failed, abstentions, settlement lag."""
    if not swarm.get("enabled"):
        return [("swarm", "off (no inference backend: coordinates rounds only)")]
    registration = swarm.get("registration") or {}
    phase = registration.get("phase") if isinstance(registration, dict) else None
    state = "registered" if swarm.get("registered") else "not registered"
    if swarm.get("registered"):
        state += ", calibrated" if swarm.get("capable") else ", not calibrated"
    rows = [("swarm", f"{swarm.get('model')}: {state}"
                      + (f" (registration {phase})" if phase else ""))]
    rounds = swarm.get("rounds") or {}
    failed = rounds.get("failed") or {}
    failures = ", ".join(f"{n} {code}" for code, n in sorted(failed.items())) or "none failed"
    rows.append(("rounds", f"{rounds.get('originated', 0)} asked here, "
                           f"{rounds.get('answered', 0)} answered ({failures}); "
                           f"{rounds.get('answers_sent', 0)} answers and "
                           f"{rounds.get('judgments_sent', 0)} judgments sent, "
                           f"{rounds.get('abstained', 0)} abstentions"))
    settlement = swarm.get("settlement") or {}
    lag = settlement.get("last_lag_blocks")
    mean = settlement.get("mean_lag_blocks")
    rows.append(("settled", f"{settlement.get('settled', 0)} rounds, lag "
                            f"{'-' if lag is None else lag} blocks (mean "
                            f"{'-' if mean is None else f'{float(mean):.1f}'}); "
                            f"{settlement.get('unsettled', 0)} unsettled"))
    return rows


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
    client = api_client(args)
    if args.once:
        status = client.get("/api/v1/status")
    else:
        status = follow_sync(client, interval=args.interval, out=sys.stdout)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pouwchain status``."""
    p = subparsers.add_parser("status", help="a node's status; a progress bar while syncing")
    add_node_options(p)
    p.add_argument("--once", action="store_true",
                   help="one snapshot, do not follow a sync (default: off, follow it)")
    p.add_argument("--interval", type=seconds, default=1.0, metavar="SECONDS",
                   help="seconds between polls while following a sync (default: 1 s)")
    add_json_option(p, "the raw status")
    p.set_defaults(func=guarded(_cmd_status))
