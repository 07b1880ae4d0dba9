"""The largest values the engine options take, shared by the command line and the library
(torch-free: the command line reads them before any command runs)."""

#: --batch-size and --shard-size: larger ones overflowed SQLite's and islice's integers
MAX_COUNT = 2**31 - 1
#: --seed: torch's seeds are 64-bit
MAX_SEED = 2**64 - 1
#: --workers: loader processes per shard (each a forked copy of the process: 2**40 forked until
#: the machine ran out of memory); a shard never gets more than it has batches
MAX_WORKERS = 64
#: --ns-iters: Newton-Schulz iterations of an iSQRT-COV root. Its coupled iteration diverges past
#: about 25 where the covariance is rank-deficient (fewer feature positions than channels: 7x7 or
#: 14x14 maps of 256 channels, every published iSQRT-COV model) and carries rounding noise (float32;
#: SVD-Pade's float64 covariance of float32 features alike): relative error 4e-4 at 20, 5e-3 at 25,
#: 1e30 at 28 and NaN from 30 (the logits stored as results up to the NaN)
MAX_NS_ITERS = 20
