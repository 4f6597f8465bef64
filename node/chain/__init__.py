"""The node's chain storage: LevelDB with atomic batches, the chain store (connect, reorg,
undo), the mempool and the transaction index."""
