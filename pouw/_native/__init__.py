"""C sources of pouw's optional native parts (fused.c, shake.c), built by setup.py into
`_fused` and `_shake`; pouw.native and pouw.hashing load them with `built_library`."""

from __future__ import annotations

import ctypes
import importlib.util


def built_library(name: str) -> ctypes.CDLL | None:
    """The built extension ``pouw._native.<name>`` opened with ctypes, or None where it was
    not built (the extensions are optional) or cannot be loaded."""
    spec = importlib.util.find_spec(f"pouw._native.{name}")
    if spec is None or spec.origin is None:
        return None
    try:
        return ctypes.CDLL(spec.origin)
    except OSError:
        return None
