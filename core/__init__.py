"""L0, the pure core every layer stands on: canonical encoding, errors, chain parameters,
LtHash, state records, the key-value interface and the `State` store with its undo data.

No I/O, no clock, no randomness; imports only `pouw` besides the standard library."""
