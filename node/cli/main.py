"""The `pouwchain` command line of the node: one module per command group.

Each group module has ``register(subparsers)``, which adds its parsers and sets their
``func``. ``python -m node.cli`` runs these groups; the installed ``pouwchain`` command is
`testnet.cli.main`, which adds the ``testnet`` group (a layer above the node).

No command ends in a traceback: bad arguments are argparse's one-line usage error (exit 2),
client failures are ``error: ...`` (exit 1, `node.cli.common.guarded`), Ctrl-C is exit 130,
and anything else is one ``internal error`` line (exit 70) unless ``POUWCHAIN_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
from collections.abc import Callable, Sequence

from node.cli import ask, demo, jobs, lookup, status, validator, wallet
from node.cli import node as node_command

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]
DEBUG_ENV = "POUWCHAIN_DEBUG"
EXIT_INTERNAL = 70  # EX_SOFTWARE

#: The node's command groups, in the order ``--help`` lists them.
COMMAND_GROUPS: tuple[Registrar, ...] = (
    node_command.register, status.register, wallet.register, lookup.register, jobs.register,
    ask.register, demo.register, validator.register,
)


def version_text() -> str:
    """``pouwchain 0.1.0 (Python 3.11.9)``: the installed package's version."""
    try:
        version = importlib.metadata.version("pouwchain")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    return f"pouwchain {version} (Python {platform.python_version()})"


def build_parser(groups: Sequence[Registrar] = ()) -> argparse.ArgumentParser:
    """The parser with ``groups`` (listed first) and the node's command groups."""
    parser = argparse.ArgumentParser(
        prog="pouwchain", description="A proof-of-useful-work node and its client.",
        epilog="Every command reads DATADIR/client.toml (DATADIR: --datadir, else "
               "$POUWCHAIN_DATADIR, else ~/.pouwchain); `pouwchain COMMAND --help` lists "
               "its options with their defaults. See docs/cli.md.")
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (*groups, *COMMAND_GROUPS):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, groups: Sequence[Registrar] = ()) -> int:
    args = build_parser(groups).parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last resort: one line, not a traceback
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"pouwchain: internal error: {type(exc).__name__}: {exc} "
              f"(run with {DEBUG_ENV}=1 for the traceback, and please report it)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
