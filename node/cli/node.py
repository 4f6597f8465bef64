"""``pouwchain node``: run a node until SIGINT/SIGTERM, then shut down cleanly.

Like bitcoind, the node has a default data directory: ``$POUWCHAIN_DATADIR``, else
``~/.pouwchain`` (`node.client.config.default_datadir`), which the client commands read too
(``node.json`` gives them the node's address).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from node.builder import build_node
from node.cli.common import bounded_int
from node.client.config import DATADIR_ENV, resolve_datadir
from node.config import DEFAULT_PORT, ConfigError, NodeConfig
from node.logging import configure_logging, get_logger, log_event
from node.memory import FreeMemoryReleaser, fix_mmap_threshold, limit_malloc_arenas
from pouw.backends import BACKEND_NAMES

log = get_logger("cli")


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    overrides: dict[str, Any] = {
        "network": args.network, "genesis_path": args.genesis, "host": args.host,
        "port": args.port, "peers": args.peers, "mine": True if args.mine else None,
        "max_peers": args.max_peers, "log_level": args.log_level,
        "log_json": True if args.log_json else (False if args.log_text else None),
        "miner_address": args.miner_address, "mining_backend": args.mining_backend,
        "mining_threads": args.mining_threads, "swarm_backend": args.swarm_backend,
    }
    return NodeConfig.resolve(datadir=resolve_datadir(args.datadir), config_file=args.config,
                              **overrides)


async def run_node(config: NodeConfig) -> int:
    node = build_node(config)
    node.services.append(FreeMemoryReleaser(interval=config.malloc_trim_interval))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
        await stop.wait()
        log_event(log, "node.signal_stop")
    finally:
        await node.stop()
    return 0


def _main(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        config.datadir.mkdir(parents=True, exist_ok=True)
    except (ConfigError, OSError) as exc:
        print(f"pouwchain node: {exc}", file=sys.stderr)
        return 2
    configure_logging(level=config.log_level, json_lines=config.log_json,
                      file=config.datadir / "node.log", stderr=config.log_stderr)
    limit_malloc_arenas(config.malloc_arenas)  # before the node starts any thread
    fix_mmap_threshold(config.malloc_mmap_threshold_kb)
    try:
        return asyncio.run(run_node(config))
    except (ConfigError, OSError, ValueError) as exc:  # a bad genesis file, a port in use...
        print(f"pouwchain node: cannot start: {exc}", file=sys.stderr)
        return 1


LOG_LEVELS = ("debug", "info", "warning", "error")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pouwchain node``."""
    p = subparsers.add_parser("node", help="run a full node (validates, relays, serves the API)")
    p.add_argument("--datadir", type=Path, default=None, metavar="DIR",
                   help=f"chain data, node.key, node.toml, node.log (default: ${DATADIR_ENV}, "
                        "else ~/.pouwchain)")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="TOML/JSON config (default: DATADIR/node.toml if present; "
                        "DATADIR/node.json is the running node's runtime file)")
    p.add_argument("--network", default=None, metavar="NAME",
                   help="network name; peers must share it (default: node.toml's, else dev)")
    p.add_argument("--genesis", type=Path, default=None, metavar="FILE",
                   help="genesis config, TOML/JSON (default: the built-in dev genesis)")
    p.add_argument("--host", default=None,
                   help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=bounded_int(0, 65535), default=None,
                   help=f"p2p, API and metrics port (default: {DEFAULT_PORT}; 0 = any free "
                        "port, written to DATADIR/node.json)")
    p.add_argument("--peers", nargs="*", default=None, metavar="HOST:PORT",
                   help="peers to dial at start (default: none; node.toml's `peers`)")
    p.add_argument("--mine", action="store_true",
                   help="mine useful-work blocks (default: off, validate only)")
    p.add_argument("--miner-address", default=None, metavar="HEX",
                   help="coinbase public key (default: the node identity's)")
    p.add_argument("--mining-backend", choices=BACKEND_NAMES, default=None,
                   help="pouw backend of the miner and the job worker (default: auto: a GPU "
                        "if any, else torch-cpu)")
    p.add_argument("--mining-threads", type=bounded_int(0, 1024), default=None, metavar="N",
                   help="torch CPU threads of mining GEMMs (default: 1; 0 = one per core)")
    p.add_argument("--swarm-backend", default=None, metavar="SPEC",
                   help="inference backend of the swarm: smollm2 (the shipped "
                        "SmolLM2-135M-Instruct, int8: short general questions in English; "
                        "cache in DATADIR/llm-cache), builtin:arith-m (integer arithmetic "
                        "only), openai:URL?model=NAME, hf:DIR (default: none, coordinate only)")
    p.add_argument("--max-peers", type=bounded_int(1, 10_000), default=None, metavar="N",
                   help="most connected peers (default: 16)")
    p.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default=None,
                   help="least severe log level shown (default: info)")
    logs = p.add_mutually_exclusive_group()
    logs.add_argument("--log-json", action="store_true",
                      help="log JSON lines (to DATADIR/node.log, and to stderr when it is a "
                           "terminal) (default: node.toml's log_json, else text on a terminal "
                           "and JSON otherwise)")
    logs.add_argument("--log-text", action="store_true",
                      help="log readable text lines (default: see --log-json)")
    p.set_defaults(func=_main)
