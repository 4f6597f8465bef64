"""Why a swarm request is refused: the chat API maps each error to its HTTP status."""

from __future__ import annotations


class FeeNotCovered(Exception):
    """A client's escrow does not cover the fee of its request (HTTP 402)."""


class SwarmUnavailable(Exception):
    """The round cannot run (no node announces a backend)."""
