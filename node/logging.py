"""Structured logs: one JSON object per line (stderr and ``datadir/node.log``).

Events carry fields instead of prose so tests and tools can grep them:
``log_event(log, "peer.banned", peer=node_id, reason="block.invalid")``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", **fields}`` per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
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
    """Human-readable: time, level, event, then key=value fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in record.__dict__.items()
                          if k not in _RESERVED and not k.startswith("_"))
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        text = f"{stamp} {record.levelname.lower():<7} {record.getMessage()} {fields}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(*, level: str = "info", json_lines: bool = True,
                      file: Path | None = None) -> None:
    """Route the ``pouwchain`` logger tree to stderr and optionally a file (always JSON)."""
    root = logging.getLogger("pouwchain")
    root.setLevel(level.upper())
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root.addHandler(stream)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file)
        to_file.setFormatter(JsonFormatter())
        root.addHandler(to_file)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"pouwchain.{name}")


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO,
              **fields: Any) -> None:
    """Log ``event`` with structured ``fields`` (bytes are hex-shortened)."""
    if not logger.isEnabledFor(level):
        return
    clean = {k: (v.hex()[:16] if isinstance(v, bytes) else v) for k, v in fields.items()}
    logger.log(level, event, extra=clean)
