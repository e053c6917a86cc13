"""The corpus layer: one utterance record, importers, the sharded store, balancing, synthetic speech."""
