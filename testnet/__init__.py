"""testnet package."""
