"""L3, the consensus rules: transactions, blocks, the state transition with its ordered
hooks (`transition`), validation, genesis, difficulty and fork choice.

Pure: no I/O, no clock, no randomness, no floats. Imports core, swarm rules and contracts."""
