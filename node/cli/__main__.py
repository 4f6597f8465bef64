"""``python -m node.cli``: the same entry point as the ``pouwchain`` command."""

from node.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
