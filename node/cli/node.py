"""``pouwchain node``: run a node until SIGINT/SIGTERM, then shut down cleanly."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from node.builder import build_node
from node.config import DEFAULT_PORT, ConfigError, NodeConfig
from node.logging import configure_logging, get_logger, log_event

log = get_logger("cli")


def config_from_args(args: argparse.Namespace) -> NodeConfig:
    overrides: dict[str, Any] = {
        "network": args.network, "genesis_path": args.genesis, "host": args.host,
        "port": args.port, "peers": args.peers, "mine": True if args.mine else None,
        "max_peers": args.max_peers, "log_level": args.log_level,
        "log_json": False if args.log_text else None,
        "miner_address": args.miner_address, "mining_backend": args.mining_backend,
        "mining_threads": args.mining_threads, "swarm_backend": args.swarm_backend,
    }
    return NodeConfig.resolve(datadir=args.datadir, config_file=args.config, **overrides)


async def run_node(config: NodeConfig) -> int:
    node = build_node(config)
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
    except ConfigError as exc:
        print(f"pouwchain node: {exc}")
        return 2
    configure_logging(level=config.log_level, json_lines=config.log_json,
                      file=config.datadir / "node.log")
    return asyncio.run(run_node(config))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pouwchain node``."""
    p = subparsers.add_parser("node", help="run a full node (validates, relays, serves the API)")
    p.add_argument("--datadir", type=Path, required=True)
    p.add_argument("--config", type=Path, default=None,
                   help="TOML/JSON config (default: datadir/node.toml if present; "
                        "datadir/node.json is the running node's runtime file)")
    p.add_argument("--network", default=None)
    p.add_argument("--genesis", type=Path, default=None, help="genesis config (TOML/JSON)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None,
                   help=f"p2p, API and metrics port (default {DEFAULT_PORT}; 0 = any free port)")
    p.add_argument("--peers", nargs="*", default=None, metavar="HOST:PORT")
    p.add_argument("--mine", action="store_true")
    p.add_argument("--miner-address", default=None, metavar="HEX",
                   help="coinbase public key (default: the node identity's)")
    p.add_argument("--mining-backend", default=None,
                   help="pouw backend: auto, numpy, torch-cpu, torch-cuda, cupy, ...")
    p.add_argument("--mining-threads", type=int, default=None, metavar="N",
                   help="torch CPU threads of mining GEMMs (default 1; 0 = one per core)")
    p.add_argument("--swarm-backend", default=None, metavar="SPEC",
                   help="inference backend of the swarm: smollm2 (the shipped language "
                        "model, cache in DATADIR/llm-cache), builtin:arith-m, "
                        "openai:URL?model=NAME, hf:DIR (default: none, coordinate only)")
    p.add_argument("--max-peers", type=int, default=None)
    p.add_argument("--log-level", default=None)
    p.add_argument("--log-text", action="store_true", help="human-readable logs on stderr")
    p.set_defaults(func=_main)
