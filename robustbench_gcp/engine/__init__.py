"""The engine: shards, the model on its device, seeds, torchrun ranks and stops."""
