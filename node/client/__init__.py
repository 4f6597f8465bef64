"""Clients of a node: the encrypted wallet and the one HTTP client (used by the CLI and the
testnet launcher)."""
