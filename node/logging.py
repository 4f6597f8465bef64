"""The node's log: one log per node, ISO-8601 timestamps, text or JSON lines.

Events carry fields instead of prose so tests and tools can grep them:
``log_event(log, "peer.banned", peer=node_id, reason="block.invalid")``.

Where it goes (`configure_logging`), like bitcoind's ``debug.log`` and ``-printtoconsole``:
always ``<datadir>/node.log``; stderr too only when stderr is a terminal (someone watches
it) or when asked (``log_stderr``). A node whose stderr is redirected to a file (the testnet's
``node-N.out``, a test harness) so writes each line once, in ``node.log``; the redirected
file keeps only what comes before logging starts (a bad flag, a crash at import).

Format: human-readable text (``2026-12-05T09:21:45.123Z info    chain.tip height=12 ...``)
or JSON lines (``{"ts": "2026-12-05T09:21:45.123456Z", "level", "logger", "event",
**fields}``); by default text when stderr is a terminal, else JSON (what tools read).
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def iso_time(created: float, *, digits: int = 6) -> str:
    """``created`` (epoch seconds) as ISO-8601 UTC with ``digits`` decimals and a ``Z``."""
    stamp = datetime.datetime.fromtimestamp(created, datetime.UTC)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:len(text) - (6 - digits)] + "Z"


def parse_time(text: str) -> float:
    """Epoch seconds of a log line's ``ts`` (tools: the time between two events)."""
    return datetime.datetime.fromisoformat(text).timestamp()


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", **fields}`` per record (``ts`` ISO-8601 UTC)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value if isinstance(value, (int, float, bool, str, type(None))) \
                    else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Human-readable: ISO-8601 UTC time (milliseconds), level, event, key=value fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in record.__dict__.items()
                          if k not in _RESERVED and not k.startswith("_"))
        text = (f"{iso_time(record.created, digits=3)} {record.levelname.lower():<7} "
                f"{record.getMessage()} {fields}").rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def is_terminal(stream: TextIO) -> bool:
    """True if ``stream`` is an interactive terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


def configure_logging(*, level: str = "info", json_lines: bool | None = None,
                      file: Path | None = None, stderr: bool | None = None,
                      stream: TextIO | None = None) -> None:
    """Route the ``pouwchain`` logger tree to ``file`` and/or stderr (module docstring).

    ``json_lines``: JSON (True), text (False) or None: text on a terminal, else JSON.
    ``stderr``: also to stderr (True), not (False), None: only if it is a terminal (or if
    there is no ``file``). ``stream`` replaces ``sys.stderr`` (tests)."""
    out = stream if stream is not None else sys.stderr
    terminal = is_terminal(out)
    formatter: logging.Formatter = (
        JsonFormatter() if (json_lines if json_lines is not None else not terminal)
        else TextFormatter())
    root = logging.getLogger("pouwchain")
    root.setLevel(level.upper())
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file)
        to_file.setFormatter(formatter)
        root.addHandler(to_file)
    if stderr if stderr is not None else (terminal or file is None):
        to_stream = logging.StreamHandler(out)
        to_stream.setFormatter(formatter)
        root.addHandler(to_stream)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"pouwchain.{name}")


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO,
              **fields: Any) -> None:
    """Log ``event`` with structured ``fields`` (bytes are hex-shortened)."""
    if not logger.isEnabledFor(level):
        return
    clean = {k: (v.hex()[:16] if isinstance(v, bytes) else v) for k, v in fields.items()}
    logger.log(level, event, extra=clean)
