"""SQLite results store: raw counts per (run, cell, shard), never derived metrics.

Layout:

- ``runs``: one row per set of conditions that determine the numbers (model
  architecture, checkpoint hash, matrix-function overrides, data fingerprint,
  seed, precision, device type, shard size). Its ``key`` is a hash of that
  identity, so re-running a command finds its run again.
- ``cells``: one row per (run, kind, name, level, variant), e.g.
  (run 1, imagenet-c, fog, 3, {"source": "torch", "roundtrip": true}).
- ``shards``: the counts of one contiguous slice of the run's images for one
  cell: ``n``, a JSON object of raw counts (top-1 errors, flips, ...), the
  per-image top-1 correctness as a bitmap, and optional per-image float32 values.
- ``baselines``: a name for a run; ``notes``: what eval said of a run, per suite kind,
  for its reports; ``leases``: which process computes which shard now
  (:mod:`~robustbench_gcp.store.leases`); ``meta``: the schema version.

Every shard is committed in its own transaction, so a killed process loses at
most the shard in flight; WAL mode and ``BEGIN IMMEDIATE`` let several
processes write to one file, and leases let them share the work of a run.
Metrics are computed from these counts at report time, so changing a baseline
needs no re-run.

Modules: :mod:`~robustbench_gcp.store.results_store` (the :class:`Store`),
:mod:`~robustbench_gcp.store.sqlite_file` (opening, marking, read-only access,
checkpoints, error messages), :mod:`~robustbench_gcp.store.leases`,
:mod:`~robustbench_gcp.store.records` (the values and their encoding).
"""

from robustbench_gcp.store.leases import LEASE_SECONDS, Claim
from robustbench_gcp.store.records import CellKey, CellResult, RunInfo, ShardResult, canonical_json
from robustbench_gcp.store.results_store import CHECKPOINT_SECONDS, DEFAULT_STORE, Store
from robustbench_gcp.store.sqlite_file import APPLICATION_ID, SCHEMA_VERSION

__all__ = ["APPLICATION_ID", "CHECKPOINT_SECONDS", "DEFAULT_STORE", "LEASE_SECONDS", "SCHEMA_VERSION",
           "CellKey", "CellResult", "Claim", "RunInfo", "ShardResult", "Store", "canonical_json"]
