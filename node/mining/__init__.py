"""Mining: the miner that turns PoUW products (its own, paid matmul jobs, swarm inference) into
blocks, and the matmul job service."""
