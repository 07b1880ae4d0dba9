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

Every shard is committed in its own transaction, so a killed process loses at
most the shard in flight; WAL mode and ``BEGIN IMMEDIATE`` let several
processes write to one file. Metrics are computed from these counts at report
time, so changing a baseline needs no re-run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustbench_gcp.errors import StoreError

SCHEMA_VERSION = 1
DEFAULT_STORE = "gcp-robust.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    arch TEXT NOT NULL,
    checkpoint TEXT,
    data TEXT,
    n_images INTEGER NOT NULL,
    shard_size INTEGER NOT NULL,
    identity TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cells (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    level TEXT NOT NULL,
    variant TEXT NOT NULL,
    UNIQUE (run_id, kind, name, level, variant)
);
CREATE TABLE IF NOT EXISTS baselines (
    name TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shards (
    cell_id INTEGER NOT NULL REFERENCES cells(id),
    shard INTEGER NOT NULL,
    n INTEGER NOT NULL,
    counts TEXT NOT NULL,
    bitmap BLOB,
    extra BLOB,
    seconds REAL,
    created TEXT NOT NULL,
    PRIMARY KEY (cell_id, shard)
);
"""


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class CellKey:
    """The identity of a cell within a run.

    ``level`` is a severity, difficulty or epsilon written as text (``"3"``,
    ``"0.00392156862745098"``), empty for the clean cell; ``variant`` is the
    canonical JSON of the cell's settings (backend, storage round trip,
    released files, attack budget ...).
    """

    kind: str
    name: str = ""
    level: str = ""
    variant: str = "{}"

    @property
    def label(self) -> str:
        return "/".join(part for part in (self.kind, self.name, self.level) if part)


@dataclass(frozen=True)
class RunInfo:
    id: int
    key: str
    model: str
    arch: str
    checkpoint: str | None
    data: str | None
    n_images: int
    shard_size: int
    identity: dict
    created: str

    @property
    def n_shards(self) -> int:
        return -(-self.n_images // self.shard_size)


@dataclass
class ShardResult:
    """What one shard of one cell produced."""

    n: int
    counts: dict[str, float]
    correct: np.ndarray | None = None  # bool (n,), top-1 correctness
    extra: np.ndarray | None = None  # float32 (n,) or (n, k) per-image values


@dataclass
class CellResult:
    """All stored shards of a cell, combined in shard order."""

    key: CellKey
    n: int
    counts: dict[str, float]
    shards: list[int]
    complete: bool
    correct: np.ndarray | None = None
    extra: np.ndarray | None = None
    seconds: float = 0.0


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


class Store:
    """The results store in one SQLite file (created on first use).

    Raises:
        StoreError: the file cannot be opened or is not a gcp-robust store.
    """

    def __init__(self, path: str | Path = DEFAULT_STORE, *, timeout: float = 60.0):
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"store path {self.path} is a folder; give a file name such as {DEFAULT_STORE}")
        if not self.path.parent.exists():
            raise StoreError(f"folder {self.path.parent} of the store {self.path} does not exist")
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.db = None
                self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
                self._set_up()
                break
            except sqlite3.OperationalError as error:
                # Switching a new file to WAL needs an exclusive lock, and SQLite reports "database is
                # locked" at once (without its busy handler) while another process does the same.
                self._close_quietly()
                if not _is_busy(error) or time.monotonic() > deadline:
                    raise StoreError(f"cannot use {self.path} as a results store: {error}") from None
                time.sleep(0.05)
            except sqlite3.DatabaseError as error:
                self._close_quietly()
                raise StoreError(f"cannot use {self.path} as a results store: {error}") from None
            except StoreError:  # another schema version
                self._close_quietly()
                raise

    def _close_quietly(self) -> None:
        if self.db is not None:
            self.db.close()

    def _set_up(self) -> None:
        if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        with self._write():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.path} has schema version {row[0]}, this gcp-robust uses "
                    f"{SCHEMA_VERSION}; use another --store file"
                )

    # -- transactions -------------------------------------------------------
    class _Transaction:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, exc_type, exc, tb):
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
            return False

    def _write(self) -> Store._Transaction:
        return Store._Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs and cells -----------------------------------------------------
    def run(
        self,
        identity: dict,
        *,
        model: str,
        arch: str,
        checkpoint: str | None,
        data: str | None,
        n_images: int,
        shard_size: int,
    ) -> RunInfo:
        """Find the run with this identity, or create it."""
        text = canonical_json(identity)
        key = hashlib.sha256(text.encode()).hexdigest()[:32]
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (key, model, arch, checkpoint, data, n_images, shard_size,"
                " identity, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, model, arch, checkpoint, data, n_images, shard_size, text, _now()),
            )
            db.execute("UPDATE runs SET model = ? WHERE key = ?", (model, key))
        return self._run_info(self.db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone())

    @staticmethod
    def _run_info(row: Sequence) -> RunInfo:
        return RunInfo(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                       json.loads(row[8]), row[9])

    def run_by_key(self, key: str) -> RunInfo:
        row = self.db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise StoreError(f"store {self.path} has no run {key}")
        return self._run_info(row)

    def runs(self) -> list[RunInfo]:
        return [self._run_info(r) for r in self.db.execute("SELECT * FROM runs ORDER BY id")]

    def cell_id(self, run_id: int, key: CellKey) -> int:
        params = (run_id, key.kind, key.name, key.level, key.variant)
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO cells (run_id, kind, name, level, variant) VALUES (?, ?, ?, ?, ?)",
                params,
            )
        row = self.db.execute(
            "SELECT id FROM cells WHERE run_id=? AND kind=? AND name=? AND level=? AND variant=?", params
        ).fetchone()
        return int(row[0])

    def cells(self, run_id: int) -> list[tuple[int, CellKey]]:
        rows = self.db.execute(
            "SELECT id, kind, name, level, variant FROM cells WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [(r[0], CellKey(r[1], r[2], r[3], r[4])) for r in rows]

    # -- baselines ----------------------------------------------------------
    def set_baseline(self, name: str, run_id: int) -> None:
        """Name a run as a baseline (replacing an earlier run of that name)."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO baselines (name, run_id, created) VALUES (?, ?, ?)",
                       (name, run_id, _now()))

    def baseline(self, name: str) -> RunInfo | None:
        row = self.db.execute(
            "SELECT runs.* FROM baselines JOIN runs ON runs.id = baselines.run_id WHERE baselines.name = ?",
            (name,),
        ).fetchone()
        return self._run_info(row) if row else None

    def baselines(self) -> list[tuple[str, RunInfo]]:
        rows = self.db.execute(
            "SELECT baselines.name, runs.* FROM baselines JOIN runs ON runs.id = baselines.run_id "
            "ORDER BY baselines.name"
        ).fetchall()
        return [(row[0], self._run_info(row[1:])) for row in rows]

    # -- shards -------------------------------------------------------------
    def done_shards(self, cell_id: int) -> set[int]:
        rows = self.db.execute("SELECT shard FROM shards WHERE cell_id = ?", (cell_id,))
        return {r[0] for r in rows}

    def commit_shard(
        self, cell_id: int, shard: int, result: ShardResult, seconds: float | None = None
    ) -> bool:
        """Store one shard; returns False if it was already stored (first write wins)."""
        return self.commit_shards([cell_id], shard, [result], seconds) == 1

    def commit_shards(
        self, cell_ids: Sequence[int], shard: int, results: Sequence[ShardResult],
        seconds: float | None = None,
    ) -> int:
        """Store shard ``shard`` of several cells in one transaction; returns how many were new."""
        rows = [(cell_id, shard, *self._encode(shard, result), seconds, _now())
                for cell_id, result in zip(cell_ids, results, strict=True)]
        with self._write() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO shards (cell_id, shard, n, counts, bitmap, extra, seconds, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            return db.total_changes - before

    @staticmethod
    def _encode(shard: int, result: ShardResult) -> tuple[int, str, bytes | None, bytes | None]:
        bitmap = None
        if result.correct is not None:
            correct = np.asarray(result.correct, dtype=bool)
            if correct.shape != (result.n,):
                raise StoreError(
                    f"correctness of shard {shard} has shape {correct.shape}, expected ({result.n},)"
                )
            bitmap = np.packbits(correct).tobytes()
        extra = None
        if result.extra is not None:
            values = np.ascontiguousarray(result.extra, dtype=np.float32)
            if values.shape[:1] != (result.n,):
                raise StoreError(
                    f"per-image values of shard {shard} have {values.shape[0]} rows, expected {result.n}"
                )
            extra = canonical_json(list(values.shape[1:])).encode() + b"\n" + values.tobytes()
        counts = canonical_json({k: _plain_number(v) for k, v in result.counts.items()})
        return result.n, counts, bitmap, extra

    def cell_result(self, cell_id: int, key: CellKey, n_shards: int | None = None) -> CellResult:
        """Combine the stored shards of a cell (in shard order)."""
        rows = self.db.execute(
            "SELECT shard, n, counts, bitmap, extra, seconds FROM shards WHERE cell_id = ? ORDER BY shard",
            (cell_id,),
        ).fetchall()
        counts: dict[str, float] = {}
        correct, extra, n, seconds = [], [], 0, 0.0
        for _, shard_n, shard_counts, bitmap, shard_extra, shard_seconds in rows:
            n += shard_n
            seconds += shard_seconds or 0.0
            for name, value in json.loads(shard_counts).items():
                counts[name] = counts.get(name, 0) + value
            if bitmap is not None:
                bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), count=shard_n)
                correct.append(bits.astype(bool))
            if shard_extra is not None:
                header, _, payload = shard_extra.partition(b"\n")
                tail = tuple(json.loads(header))
                extra.append(np.frombuffer(payload, dtype=np.float32).reshape((shard_n, *tail)))
        shards = [r[0] for r in rows]
        complete = n_shards is not None and shards == list(range(n_shards))
        return CellResult(
            key=key,
            n=n,
            counts=counts,
            shards=shards,
            complete=complete,
            correct=np.concatenate(correct) if correct and len(correct) == len(rows) else None,
            extra=np.concatenate(extra) if extra and len(extra) == len(rows) else None,
            seconds=seconds,
        )

    def results(self, run: RunInfo, kinds: Iterable[str] | None = None) -> list[CellResult]:
        """Every cell of a run (optionally of some kinds), combined."""
        wanted = set(kinds) if kinds is not None else None
        return [
            self.cell_result(cell_id, key, run.n_shards)
            for cell_id, key in self.cells(run.id)
            if wanted is None or key.kind in wanted
        ]


def _plain_number(value: Any) -> float | int:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StoreError(f"counts must be numbers, got {value!r}")
    return value
