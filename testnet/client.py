"""The node's HTTP client as the testnet uses it (`node.client.http`: one client for the CLI
and the testnet), and a reader of the node's Prometheus metrics."""

from __future__ import annotations

from node.client.http import HttpError, request

ApiError = HttpError  # the name the launcher, the functional tests and the benches use

__all__ = ["ApiError", "parse_metrics", "request"]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {name: value}, summing samples that differ only by labels."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        # "name{labels} value [timestamp]"; labels may contain spaces, so split around them
        if "}" in line:
            name = line[: line.index("{")]
            tail = line[line.rindex("}") + 1 :].split()
        else:
            name, *tail = line.split()
        if not tail:
            continue
        try:
            value = float(tail[0])
        except ValueError:
            continue
        out[name] = out.get(name, 0.0) + value
    return out
