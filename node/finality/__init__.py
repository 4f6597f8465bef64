"""The node's finality room: validator keys and duty, the vote pool and vote gossip."""
