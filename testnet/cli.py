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

from node.cli.common import bounded_int, seconds
from node.cli.main import main as node_cli_main
from testnet.launcher import (
    LLM,
    SWARM_MODELS,
    TestnetError,
    down,
    format_table,
    funded_wallet_hint,
    load_state,
    run_foreground,
    save_state,
    status_rows,
    up,
)
from testnet.process import NodeStartError

DEFAULT_DIR = ".testnet"
DEFAULT_NODES = 4
MAX_NODES = 64
DEFAULT_DOWN_TIMEOUT = 15.0


def _log_json(args: argparse.Namespace) -> bool | None:
    return True if args.log_json else (False if args.log_text else None)


def _up(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    try:
        if not args.detach:
            return run_foreground(directory, args.nodes, miners=args.miners, fresh=args.fresh,
                                  swarm_model=args.swarm_model, log_json=_log_json(args))
        records = up(directory, args.nodes, miners=args.miners, fresh=args.fresh,
                     swarm_model=args.swarm_model, log_json=_log_json(args))
        save_state(directory.resolve(), records, detached=True)
    except (TestnetError, NodeStartError, OSError) as exc:
        print(f"testnet: {exc}", file=sys.stderr)
        return 1
    print(f"testnet running in {directory.resolve()}: "
          f"`pouwchain testnet status --dir {args.dir}`, `pouwchain testnet down --dir {args.dir}`")
    hint = funded_wallet_hint(directory.resolve())
    if hint and records:
        print(hint.replace("{api}", records[0].api))
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
    stopped = down(directory, timeout=args.timeout)
    print(f"testnet: {stopped} node(s) stopped; every process has exited")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `testnet` with its `up`, `status` and `down` subcommands."""
    testnet = subparsers.add_parser("testnet", help="run a local multi-node dev network")
    sub = testnet.add_subparsers(dest="testnet_command", required=True, metavar="SUBCOMMAND")
    dir_help = f"testnet directory (default: {DEFAULT_DIR}, relative to the current directory)"

    p = sub.add_parser("up", help="start N nodes on 127.0.0.1 with a fresh dev genesis")
    p.add_argument("--nodes", type=bounded_int(1, MAX_NODES), default=DEFAULT_NODES,
                   help=f"node processes to start, 1 to {MAX_NODES} (default: {DEFAULT_NODES}; "
                        "the language model takes ~2 GB of memory per node)")
    p.add_argument("--dir", default=DEFAULT_DIR,
                   help=dir_help + "; reused (same genesis and chains) if present")
    p.add_argument("--miners", type=bounded_int(0, MAX_NODES), default=None,
                   help="how many nodes mine (default: half of --nodes, at least one)")
    p.add_argument("--detach", action="store_true",
                   help="return once the nodes run; stop them with `testnet down` (default: "
                        "off, show a live table until Ctrl-C)")
    p.add_argument("--fresh", action="store_true",
                   help="wipe the directory first: a new genesis and new keys (default: off)")
    p.add_argument("--swarm-model", choices=SWARM_MODELS, default=LLM,
                   help="what the swarm nodes serve: smollm2, the shipped SmolLM2-135M-Instruct "
                        "int8 (short general questions in English), or arith, the built-in "
                        "arithmetic variants (integer arithmetic only) (default: smollm2)")
    logs = p.add_mutually_exclusive_group()
    logs.add_argument("--log-json", action="store_true",
                      help="every node logs JSON lines (default: the node's own default)")
    logs.add_argument("--log-text", action="store_true",
                      help="every node logs readable text (default: the node's own default)")
    p.set_defaults(func=_up)

    p = sub.add_parser("status", help="print the status table of a running testnet")
    p.add_argument("--dir", default=DEFAULT_DIR, help=dir_help)
    p.add_argument("--json", action="store_true",
                   help="rows as one JSON array (default: off, a table)")
    p.set_defaults(func=_status)

    p = sub.add_parser("down", help="stop a testnet; returns once every node process exited")
    p.add_argument("--dir", default=DEFAULT_DIR, help=dir_help)
    p.add_argument("--timeout", type=seconds, default=DEFAULT_DOWN_TIMEOUT, metavar="SECONDS",
                   help=f"seconds a node gets to shut down cleanly before it is killed "
                        f"(default: {DEFAULT_DOWN_TIMEOUT:g} s)")
    p.set_defaults(func=_down)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``pouwchain`` command line: `node.cli.main` with the ``testnet`` group."""
    return node_cli_main(argv, groups=(register,))


if __name__ == "__main__":
    sys.exit(main())
