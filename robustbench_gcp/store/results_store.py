"""The :class:`Store`: runs, cells, shards, baselines and shard leases in one SQLite file."""

from __future__ import annotations

import functools
import hashlib
import math
import numbers
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from robustbench_gcp.errors import StoreError, check_path, real_path
from robustbench_gcp.store import leases
from robustbench_gcp.store.leases import LEASE_SECONDS, Claim, Heartbeat
from robustbench_gcp.store.records import (
    CellKey,
    CellResult,
    DamagedRow,
    RunInfo,
    ShardResult,
    canonical_json,
    combine_shards,
    encode_shard,
    json_object,
    positive_counts,
)
from robustbench_gcp.store.sqlite_file import (
    OPENED_FOR_READING,
    check_unchanged,
    checkpoint,
    open_store_file,
    store_error,
    tidy_after_reading,
)

DEFAULT_STORE = "gcp-robust.db"
CHECKPOINT_SECONDS = 120.0  # at most this long between WAL checkpoints while shards are committed


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def _level(text: object) -> bool:
    """Whether ``text`` is a cell's level as the suites write it: empty (the clean cell, a
    landscape's clean point) or a finite number (a severity, difficulty or epsilon)."""
    if text == "":
        return True
    try:
        return isinstance(text, str) and math.isfinite(float(text))
    except ValueError:
        return False


def _reads(method):
    """A method that reads the store: an SQLite error there (a damaged file, a table gone) is a
    StoreError naming the store, as the writes' are."""
    @functools.wraps(method)
    def reading(self, *args, **kwargs):
        try:
            read = method(self, *args, **kwargs)
            check_unchanged(self._file, self._frozen)  # read without locks: valid while the file is
            return read
        except sqlite3.Error as error:
            raise store_error(error, self.path, self.read_only_reason) from None
        except DamagedRow as error:
            raise StoreError(f"store {self.path}: {error}: the row is damaged (edited by hand?); use "
                             "another --store") from None

    return reading


class _Closed:
    """The connection of a closed store: any use says so (it was an AttributeError of None)."""

    def __init__(self, path: Path):
        self.path = path

    def __getattr__(self, name: str):
        raise StoreError(f"store {self.path} is closed: open it again (Store(path)) to use it")


def _run_key(identity_json: str) -> str:
    """A run's key: the first 32 hex digits of its canonical identity's sha256."""
    return hashlib.sha256(identity_json.encode()).hexdigest()[:32]


class Store:
    """The results store in one SQLite file (created on first use where the folder is writable).

    Args:
        path: the store file.
        timeout: seconds to wait for another process's write transaction.
        read_only: never write (``report`` needs no more). A store whose file or folder is not
            writable is opened read-only anyway; a write then raises a :class:`StoreError` saying why.
        checkpoint_seconds: the longest time between two WAL checkpoints while shards are committed.
        lease_seconds: how long a shard leased by this store stays reserved without renewal
            (see :mod:`robustbench_gcp.store.leases`).

    Raises:
        StoreError: the file cannot be opened or is not a gcp-robust store (and, once closed, any
            use of it).
        TypeError: ``path`` is neither text nor a path; a number or ``read_only`` of another type.
        ValueError: a negative number of seconds (``lease_seconds``: 0 too), or an infinite one.

    Example:
        >>> with Store("gcp-robust.db", read_only=True) as store:  # doctest: +SKIP
        ...     [run.model for run in store.runs()]
    """

    #: Test-only hook: functions called with each new connection, once the store is set up (the tests
    #: set ``PRAGMA max_page_count`` through it to fill the store like a full disk).
    connection_hooks: ClassVar[tuple[Callable[[sqlite3.Connection], object], ...]] = ()

    def __init__(self, path: str | Path = DEFAULT_STORE, *, timeout: float = 60.0, read_only: bool = False,
                 checkpoint_seconds: float = CHECKPOINT_SECONDS, lease_seconds: float = LEASE_SECONDS):
        check_path(path, "a store file")
        # a "5" failed at the first wait, -1 was taken (0: no wait, a checkpoint at every commit)
        for option, value, zero in (("timeout", timeout, True), ("lease_seconds", lease_seconds, False),
                                    ("checkpoint_seconds", checkpoint_seconds, True)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"`{option}` should be a number of seconds. Got {value!r}")
            if not (0 <= value if zero else 0 < value) or not math.isfinite(value):
                raise ValueError(f"`{option}` should be a finite number of seconds "
                                 f"{'>= 0' if zero else '> 0'}. Got {value!r}")
        if not isinstance(read_only, bool):  # "yes" was True, and "no" too
            raise TypeError(f"`read_only` should be True or False. Got {read_only!r}")
        self.path = Path(path)
        # the file itself, whatever the working folder later (the lease heartbeat's connection opened
        # a relative path in the folder a library user had changed to: a new empty store)
        self._file = real_path(self.path)
        self.db, self.read_only_reason, self._frozen = open_store_file(self.path, timeout=timeout,
                                                                       read_only=read_only)
        self.checkpoint_seconds = checkpoint_seconds
        self.lease_seconds = lease_seconds
        self.owner = leases.new_owner()
        self._last_checkpoint = time.monotonic()
        self._heartbeat: Heartbeat | None = None
        self._leasing = False  # a claim began: close releases what it may have leased
        for hook in self.connection_hooks:
            hook(self.db)

    @property
    def read_only(self) -> bool:
        return self.read_only_reason is not None

    def read_only_error(self, what: str) -> StoreError:
        """``store X is read-only (why): <what>; copy it somewhere writable or use --store``."""
        return StoreError(f"store {self.path} is read-only ({self.read_only_reason}): {what}; "
                          "copy it somewhere writable or use --store")

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``); ``what`` it does names it in errors.

        Raises:
            StoreError: the store is read-only, full, or SQLite failed (rolled back).
        """
        if self.read_only:
            raise self.read_only_error(f"cannot {what}")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("COMMIT")
            except BaseException:
                self._roll_back()
                raise
        except sqlite3.Error as error:
            raise store_error(error, self.path, self.read_only_reason) from None

    def _roll_back(self) -> None:
        """End a failed transaction (SQLite may have rolled it back itself, e.g. on a full disk)."""
        try:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the connection is closed or rolled back: nothing of the transaction stays

    def checkpoint(self) -> None:
        """Copy the WAL into the ``.db`` file (best effort; see :func:`~.sqlite_file.checkpoint`)."""
        if not self.read_only:
            checkpoint(self.db)
        self._last_checkpoint = time.monotonic()

    def close(self) -> None:
        """Release this store's leases, checkpoint the WAL and close (errors here lose nothing)."""
        if isinstance(self.db, _Closed):
            return
        try:
            if self._heartbeat is not None:
                self._heartbeat.stop()
            if self._leasing:  # also where a claim committed and then failed (a stop, no thread)
                try:
                    self.release()
                except StoreError:
                    pass  # they expire
            self.checkpoint()
        finally:
            self.db.close()
            self.db = _Closed(self.path)
        if self.read_only_reason == OPENED_FOR_READING:
            tidy_after_reading(self._file)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- runs and cells -----------------------------------------------------
    @_reads
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
        rename: bool = True,
        former: dict | None = None,
    ) -> RunInfo:
        """Find the run with this identity, or create it. Its model label becomes ``model`` (the
        name it was last evaluated under; :meth:`stored_label` tells the one it had before), unless
        not ``rename`` (a run found keeps its label). Where none has it, a run stored under
        ``former`` (the identity an earlier version gave the same run) takes it, with its cells
        (a read-only store reads that run as it is).

        Raises:
            ValueError: ``n_images`` or ``shard_size`` below 1 (such a row is refused on reading:
                written, it stopped every ``report`` of the store).
        """
        if not positive_counts(n_images, shard_size):
            raise ValueError(f"a run needs images and shards: n_images {n_images!r} and shard_size "
                             f"{shard_size!r} should be positive integers")
        text = canonical_json(identity)
        key = _run_key(text)
        row = self.db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        old = None if row is not None or former is None else _run_key(canonical_json(former))
        if old is not None and self.read_only:
            row = self.db.execute("SELECT * FROM runs WHERE key = ?", (old,)).fetchone() or row
        if row is not None and (row[2] == model or self.read_only or not rename):
            return RunInfo.from_row(row)
        with self._write("add a run for this model and these settings") as db:
            if old is not None:  # (no-op where another process took it over first, or there is none)
                db.execute("UPDATE runs SET key = ?, identity = ? WHERE key = ? AND NOT EXISTS "
                           "(SELECT 1 FROM runs WHERE key = ?)", (key, text, old, key))
            db.execute(
                "INSERT OR IGNORE INTO runs (key, model, arch, checkpoint, data, n_images, shard_size,"
                " identity, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, model, arch, checkpoint, data, n_images, shard_size, text, _now()),
            )
            db.execute("UPDATE runs SET model = ?, arch = ? WHERE key = ?", (model, arch, key))
        return RunInfo.from_row(self.db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone())

    @_reads
    def stored_label(self, identity: dict) -> str | None:
        """The model label of the stored run with this identity (None: there is none yet)."""
        row = self.db.execute("SELECT model FROM runs WHERE key = ?",
                              (_run_key(canonical_json(identity)),)).fetchone()
        return None if row is None else row[0]

    @_reads
    def run_by_key(self, key: str) -> RunInfo:
        row = self.db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise StoreError(f"store {self.path} has no run {key}")
        return RunInfo.from_row(row)

    @_reads
    def runs(self) -> list[RunInfo]:
        return [RunInfo.from_row(r) for r in self.db.execute("SELECT * FROM runs ORDER BY id")]

    @_reads
    def find_cell(self, run_id: int, key: CellKey) -> int | None:
        """The id of a stored cell, or None."""
        row = self.db.execute(
            "SELECT id FROM cells WHERE run_id=? AND kind=? AND name=? AND level=? AND variant=?",
            (run_id, key.kind, key.name, key.level, key.variant),
        ).fetchone()
        return None if row is None else int(row[0])

    def cell_id(self, run_id: int, key: CellKey) -> int:
        """The id of a cell, created if it is new."""
        found = self.find_cell(run_id, key)
        if found is not None:
            return found
        with self._write(f"add the cell {key.label}") as db:
            db.execute(
                "INSERT OR IGNORE INTO cells (run_id, kind, name, level, variant) VALUES (?, ?, ?, ?, ?)",
                (run_id, key.kind, key.name, key.level, key.variant),
            )
        return self.find_cell(run_id, key)

    @_reads
    def cells(self, run_id: int) -> list[tuple[int, CellKey]]:
        rows = self.db.execute(
            "SELECT id, kind, name, level, variant FROM cells WHERE run_id = ? ORDER BY id", (run_id,)
        )
        cells = [(r[0], CellKey(r[1], r[2], r[3], r[4])) for r in rows]
        for _, key in cells:  # a damaged one: one line here, not a traceback where it is read
            json_object(key.variant, f"cell {key.label}: its variant")
            if not _level(key.level):
                raise DamagedRow(f"cell {key.label}: its level {key.level!r} is not a number")
        return cells

    # -- notes --------------------------------------------------------------
    def set_notes(self, run_id: int, kind: str, notes: Sequence[str]) -> None:
        """Keep the notes that an evaluation gave a run's report, so that ``report`` gives them too:
        ``kind`` "" for what holds for every suite of the run (labels taken from sorted folders), a
        suite kind for that suite's own (an exact matrix root under gradients). They replace that
        kind's earlier notes. Nothing is written when they are already stored, or on a
        read-only store (the notes are a courtesy: results never wait for them)."""
        notes = list(dict.fromkeys(notes))
        if self.read_only or self.notes(run_id).get(kind, []) == notes:
            return
        try:
            with self._write(f"store the notes of run {run_id}") as db:
                db.execute("DELETE FROM notes WHERE run_id = ? AND kind = ?", (run_id, kind))
                db.executemany("INSERT INTO notes (run_id, kind, note) VALUES (?, ?, ?)",
                               [(run_id, kind, note) for note in notes])
        except StoreError:
            pass  # full, or a store without the notes table it could not add: reports lack them

    @_reads
    def notes(self, run_id: int) -> dict[str, list[str]]:
        """A run's notes by suite kind, in the order they were given (none from a store written before
        notes were kept)."""
        rows = self._rows_of_added_table("SELECT kind, note FROM notes WHERE run_id = ? ORDER BY rowid",
                                         (run_id,))
        found: dict[str, list[str]] = {}
        for kind, note in rows:
            found.setdefault(kind, []).append(note)
        return found

    def _rows_of_added_table(self, query: str, args: tuple) -> list[tuple]:
        """The rows of ``query`` on a table added to the schema since the first stores (notes,
        leases): none from an older store opened read-only, which lacks it."""
        try:
            return self.db.execute(query, args).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return []
            raise

    # -- baselines ----------------------------------------------------------
    def set_baseline(self, name: str, run_id: int, *, replace: bool = True) -> RunInfo | None:
        """Name a run as a baseline, replacing an earlier run of that name, or (not ``replace``)
        leaving that one the name and returning it: read and written in one transaction, so that
        of two processes naming two runs at once one is told (both were, and the last one won)."""
        with self._write(f"store the baseline '{name}'") as db:
            if not replace:
                row = db.execute("SELECT runs.* FROM baselines JOIN runs ON runs.id = baselines.run_id "
                                 "WHERE baselines.name = ?", (name,)).fetchone()
                if row is not None and RunInfo.from_row(row).id != run_id:
                    return RunInfo.from_row(row)
            db.execute("INSERT OR REPLACE INTO baselines (name, run_id, created) VALUES (?, ?, ?)",
                       (name, run_id, _now()))
        return None

    @_reads
    def baseline(self, name: str) -> RunInfo | None:
        row = self.db.execute(
            "SELECT runs.* FROM baselines JOIN runs ON runs.id = baselines.run_id WHERE baselines.name = ?",
            (name,),
        ).fetchone()
        return RunInfo.from_row(row) if row else None

    @_reads
    def baselines(self) -> list[tuple[str, str, RunInfo]]:
        """Every stored baseline: its name, when the name was given to its run, and the run."""
        rows = self.db.execute(
            "SELECT baselines.name, baselines.created, runs.* FROM baselines "
            "JOIN runs ON runs.id = baselines.run_id ORDER BY baselines.name"
        ).fetchall()
        return [(row[0], row[1], RunInfo.from_row(row[2:])) for row in rows]

    # -- shards -------------------------------------------------------------
    @_reads
    def done_shards(self, cell_id: int | None) -> set[int]:
        """The stored shards of a cell (none for a cell not stored: ``cell_id`` None)."""
        rows = self.db.execute("SELECT shard FROM shards WHERE cell_id = ?", (cell_id,))
        return {r[0] for r in rows}

    def shards_of_all(self, cell_ids: Sequence[int | None]) -> set[int]:
        """The shards every one of ``cell_ids`` has stored: a task's finished units (a task of
        several cells, an attack's epsilons, is done on a shard when each of its cells is)."""
        return set.intersection(*(self.done_shards(cell_id) for cell_id in cell_ids))

    def commit_shard(
        self, cell_id: int, shard: int, result: ShardResult, seconds: float | None = None
    ) -> bool:
        """Store one shard; returns False if it was already stored (first write wins)."""
        return self.commit_shards([cell_id], shard, [result], seconds) == 1

    def commit_shards(
        self, cell_ids: Sequence[int], shard: int, results: Sequence[ShardResult],
        seconds: float | None = None,
    ) -> int:
        """Store shard ``shard`` of several cells in one transaction, dropping their leases; returns how
        many were new. The WAL is checkpointed when the last checkpoint is ``checkpoint_seconds`` old."""
        rows = [(cell_id, shard, *encode_shard(shard, result), seconds, _now())
                for cell_id, result in zip(cell_ids, results, strict=True)]
        with self._write("store shards") as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO shards (cell_id, shard, n, counts, bitmap, extra, seconds, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            new = db.total_changes - before
            leases.finish(db, cell_ids, shard)
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds:
            self.checkpoint()
        return new

    @_reads
    def cell_result(self, cell_id: int, key: CellKey, n_shards: int | None = None,
                    shards: Iterable[int] | None = None) -> CellResult:
        """Combine the stored shards of a cell (in shard order; only ``shards`` when given)."""
        query = "SELECT shard, n, counts, bitmap, extra, seconds FROM shards WHERE cell_id = ?"
        wanted = sorted(set(shards)) if shards is not None else None
        if wanted is not None and len(wanted) <= 500:  # within SQLite's limit on bound parameters
            query += f" AND shard IN ({','.join('?' * len(wanted))})"
            rows = self.db.execute(query + " ORDER BY shard", (cell_id, *wanted)).fetchall()
        else:
            rows = self.db.execute(query + " ORDER BY shard", (cell_id,)).fetchall()
            if wanted is not None:
                keep = set(wanted)
                rows = [row for row in rows if row[0] in keep]
        try:
            return combine_shards(key, rows, n_shards)
        except (ValueError, TypeError) as error:  # a row that was edited by hand: no traceback
            raise StoreError(f"store {self.path}: a stored shard of cell {key.label} is damaged "
                             f"({error}); use another --store, or delete that cell's shards to compute "
                             "them again") from None

    @_reads
    def results(self, run: RunInfo, kinds: Iterable[str] | None = None, *,
                keys: Iterable[CellKey] | None = None,
                shards: Iterable[int] | None = None) -> list[CellResult]:
        """Every cell of a run (optionally of some kinds, or the cells ``keys``), combined (from
        ``shards`` only, when given)."""
        wanted = set(kinds) if kinds is not None else None
        chosen = set(keys) if keys is not None else None
        return [
            self.cell_result(cell_id, key, run.n_shards, shards)
            for cell_id, key in self.cells(run.id)
            if (wanted is None or key.kind in wanted) and (chosen is None or key in chosen)
        ]

    # -- leases -------------------------------------------------------------
    def claim(self, shard: int, groups: Sequence[Sequence[int]]) -> list[Claim]:
        """Lease shard ``shard`` of each group of cell ids (one group per task) to this store, in one
        transaction: one :class:`Claim` per group. Leases are renewed while the store is open and
        dropped when the shard is committed or the store closed."""
        self._leasing = True
        with self._write("lease shards") as db:
            claims = leases.claim(db, self.owner, shard, groups, self.lease_seconds)
        if self._heartbeat is None and Claim.MINE in claims:
            self._heartbeat = Heartbeat(self._file, self.owner, self.lease_seconds)
        return claims

    @_reads
    def computing(self, run_id: int) -> list[int]:
        """The process ids (of any host) that hold unexpired leases on the run ``run_id``'s cells,
        less this host's processes that are gone: the processes computing it now (a torchrun job's
        rank 0, which leases for its ranks)."""
        rows = self._rows_of_added_table("SELECT DISTINCT owner FROM leases JOIN cells ON cells.id = "
                                         "leases.cell_id WHERE cells.run_id = ? AND leases.expires > ?",
                                         (run_id, time.time()))
        # a process of this host that is gone (killed: its leases outlive it until they expire) is not
        pids = {owner: leases.owner_pid(owner) for (owner,) in rows}
        return sorted({pid for owner, pid in pids.items() if pid is not None and leases.is_alive(owner)})

    def release(self) -> None:
        """Drop every lease of this store, so that other processes take those shards at once."""
        with self._write("release leases") as db:
            leases.release(db, self.owner)
