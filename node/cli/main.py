"""The `pouwchain` command line of the node: one module per command group.

Each group module has ``register(subparsers)``, which adds its parsers and sets their
``func``. ``python -m node.cli`` runs these groups; the installed ``pouwchain`` command is
`testnet.cli.main`, which adds the ``testnet`` group (a layer above the node).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from node.cli import ask, demo, jobs, status, wallet
from node.cli import node as node_command

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

#: The node's command groups, in the order ``--help`` lists them.
COMMAND_GROUPS: tuple[Registrar, ...] = (
    node_command.register, wallet.register, status.register, jobs.register, ask.register,
    demo.register,
)


def build_parser(groups: Sequence[Registrar] = ()) -> argparse.ArgumentParser:
    """The parser with ``groups`` (listed first) and the node's command groups."""
    parser = argparse.ArgumentParser(prog="pouwchain", description="A proof-of-useful-work node.")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in (*groups, *COMMAND_GROUPS):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, groups: Sequence[Registrar] = ()) -> int:
    args = build_parser(groups).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
