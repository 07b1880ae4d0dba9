"""The largest values the engine options take, shared by the command line and the library
(torch-free: the command line reads them before any command runs)."""

#: --batch-size and --shard-size: larger ones overflowed SQLite's and islice's integers
MAX_COUNT = 2**31 - 1
#: --seed: torch's seeds are 64-bit
MAX_SEED = 2**64 - 1
#: --workers: loader processes per shard (each a forked copy of the process: 2**40 forked until
#: the machine ran out of memory); a shard never gets more than it has batches
MAX_WORKERS = 64
