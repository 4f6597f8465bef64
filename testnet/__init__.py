"""L5, the local testnet: genesis for N nodes, node processes, the launcher and its status table."""
