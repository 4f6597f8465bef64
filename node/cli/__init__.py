"""The `pouwchain` command line: one module per command group (node, wallet, status, jobs,
ask); `main` builds the parser."""
