"""`pouwchain testnet up|status|down`: a local multi-node network for development.

`main` is the ``pouwchain`` command: node.cli's command groups plus ``testnet`` (which sits a
layer above the node, so the node's CLI cannot add it itself).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from node.cli.main import main as node_cli_main
from testnet.launcher import (
    LLM,
    SWARM_MODELS,
    TestnetError,
    down,
    format_table,
    load_state,
    run_foreground,
    save_state,
    status_rows,
    up,
)
from testnet.process import NodeStartError

DEFAULT_DIR = ".testnet"


def _up(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    try:
        if not args.detach:
            return run_foreground(directory, args.nodes, miners=args.miners, fresh=args.fresh,
                                  swarm_model=args.swarm_model)
        records = up(directory, args.nodes, miners=args.miners, fresh=args.fresh,
                     swarm_model=args.swarm_model)
        save_state(directory.resolve(), records, detached=True)
    except (TestnetError, NodeStartError) as exc:
        print(f"testnet: {exc}", file=sys.stderr)
        return 1
    print(f"testnet running in {directory.resolve()}: "
          f"`pouwchain testnet status --dir {args.dir}`, `pouwchain testnet down --dir {args.dir}`")
    return 0


def _status(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    records = load_state(directory)
    if not records:
        print(f"testnet: no testnet in {directory}", file=sys.stderr)
        return 1
    rows = status_rows(records)
    if args.json:
        print(json.dumps(rows))
    else:
        print(format_table(rows))
    return 0 if all(r.get("state") in ("ok", "syncing") for r in rows) else 2


def _down(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    stopped = down(directory)
    print(f"testnet: {stopped} node(s) stopped")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `testnet` with its `up`, `status` and `down` subcommands."""
    testnet = subparsers.add_parser("testnet", help="run a local multi-node dev network")
    sub = testnet.add_subparsers(dest="testnet_command", required=True)

    p = sub.add_parser("up", help="start N nodes on 127.0.0.1 with a fresh dev genesis")
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--dir", default=DEFAULT_DIR, help="testnet directory (reused if present)")
    p.add_argument("--miners", type=int, default=None,
                   help="how many nodes mine (default: half, at least one)")
    p.add_argument("--detach", action="store_true",
                   help="return once the nodes run (stop them with `testnet down`)")
    p.add_argument("--fresh", action="store_true", help="wipe the directory first")
    p.add_argument("--swarm-model", choices=SWARM_MODELS, default=LLM,
                   help="what the swarm nodes serve: smollm2 (the shipped language model, "
                        "default) or arith (the built-in arithmetic variants)")
    p.set_defaults(func=_up)

    p = sub.add_parser("status", help="print the status table of a running testnet")
    p.add_argument("--dir", default=DEFAULT_DIR)
    p.add_argument("--json", action="store_true", help="rows as one JSON array")
    p.set_defaults(func=_status)

    p = sub.add_parser("down", help="stop a detached testnet")
    p.add_argument("--dir", default=DEFAULT_DIR)
    p.set_defaults(func=_down)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``pouwchain`` command line: `node.cli.main` with the ``testnet`` group."""
    return node_cli_main(argv, groups=(register,))


if __name__ == "__main__":
    sys.exit(main())
