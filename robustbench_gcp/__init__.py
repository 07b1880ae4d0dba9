"""gcp-robust: robustness benchmarks for GAP and global covariance pooling networks."""

__version__ = "0.1.0"
