"""One SQLite file as a gcp-robust store: opening it (writable or read-only), marking it, checkpointing
its WAL, and what its errors mean to a user.

- **The mark.** A store carries ``PRAGMA application_id`` = :data:`APPLICATION_ID` ("GCPR") and
  ``PRAGMA user_version`` = :data:`SCHEMA_VERSION`. A file is classified by reading alone, before
  anything is written: an empty file becomes a store; a marked one is used if its version fits; a
  store of gcp-robust 0.x (a ``meta`` table with ``schema_version`` 1, no mark) is marked and used;
  anything else (another application's database) is refused, its bytes untouched.
- **Read-only.** A store is opened read-only when asked to, when the file is not writable, or when
  its folder is not (WAL needs a ``-wal`` and a ``-shm`` file beside it): SQLite's ``mode=ro``, plus
  ``immutable=1`` where the folder is read-only and no ``-wal`` file exists, since then nobody can be
  writing. Writes then fail with a one-line message saying why.
- **Checkpoints.** While a process writes, new pages live in the ``-wal`` file; :func:`checkpoint`
  copies them into the ``.db`` file (right after the schema is created, every few minutes of
  commits, and at the end of a run), so that the ``.db`` file alone is a usable store.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import struct
import time
from pathlib import Path

from robustbench_gcp.errors import StoreError, absent, link_loop, real_path

APPLICATION_ID = 0x47435052  # "GCPR": PRAGMA application_id of every gcp-robust store
SCHEMA_VERSION = 1  # PRAGMA user_version, and meta.schema_version
STORE_TABLES = frozenset({"meta", "runs", "cells", "baselines", "shards"})  # those of 0.x stores too
#: why a store that a command only reads is read-only (:func:`read_only_reason`)
OPENED_FOR_READING = "opened for reading"

# Tables added within schema version 1 (older versions ignore them): a writable open adds those
# missing; read from a store opened read-only that lacks them, they are empty.
ADDED_TABLES = frozenset({"leases", "notes"})

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS notes (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (run_id, kind, note)
);
CREATE TABLE IF NOT EXISTS leases (
    cell_id INTEGER NOT NULL REFERENCES cells(id),
    shard INTEGER NOT NULL,
    owner TEXT NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (cell_id, shard)
);
"""


#: the files SQLite keeps beside a database: the write-ahead log and its index, a rollback journal
COMPANIONS = ("-wal", "-shm", "-journal")


def companion_of(path: str | Path) -> tuple[Path, str] | None:
    """The database file and the suffix where ``path`` names a file SQLite keeps beside an SQLite
    database (``s.db`` and ``-wal`` for ``s.db-wal``), else None: not where ``path`` is a database
    itself (a store named ``exp-wal``), nor beside another kind of file."""
    name = os.fspath(path)
    for suffix in COMPANIONS:
        if name.endswith(suffix) and is_database(name[:-len(suffix)]) and not is_database(name):
            return Path(name[:-len(suffix)]), suffix
    return None


def is_database(path: str | Path) -> bool:
    """Whether ``path`` is a regular file that starts as an SQLite database does."""
    try:
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def open_store_file(path: Path, *, timeout: float,
                    read_only: bool) -> tuple[sqlite3.Connection, str | None, tuple | None]:
    """Open (creating, marking or upgrading where writable) the store at ``path``.

    Returns:
        The connection (autocommit; transactions are explicit), why it is read-only (None when
        it is writable): ``"opened for reading"``, ``"the file is read-only"``, ``"its folder is
        read-only"`` or ``"its file system is read-only"``, and for a connection that reads without
        locks (``immutable``) the file's :func:`file_state` when it was opened (else None): reads
        are consistent only while it stays so (:func:`check_unchanged`).

    Raises:
        StoreError: a folder, a device or pipe, a missing folder, a database's -wal / -shm / -journal
            file, another application's database,
            another schema version, a store that cannot be created here, or a file SQLite cannot read.
    """
    if path.is_dir():
        raise StoreError(f"store path {path} is a folder; give a file name such as gcp-robust.db")
    if link_loop(path):
        raise StoreError(f"store {path} {absent(path)}")
    if not path.parent.exists():
        raise StoreError(f"folder {path.parent} of the store {path} {absent(path.parent)}")
    for suffix in COMPANIONS:  # a store named s.db-wal, beside s.db: SQLite would take it for s.db's own
        if is_database(f"{path}{suffix}"):
            raise StoreError(f"beside the store {path} is a database {path.name}{suffix}, which SQLite would "
                             f"take for {path.name}'s {suffix} file and delete: rename it, or give another "
                             "store file")
    if (companion := companion_of(path)) is not None:  # reset or deleted by SQLite
        database, suffix = companion
        raise StoreError(f"store path {path} is the {suffix} file that SQLite keeps beside the database "
                         f"{database}: results stored there would be deleted when {database.name} is next "
                         f"opened; give {database} itself or another file name")
    target = Path(os.path.realpath(path))
    if path.is_symlink() and not target.parent.exists():  # (SQLite: "unable to open database file")
        raise StoreError(f"store {path} is a symbolic link to {os.readlink(path)}, whose folder "
                         f"{target.parent} does not exist")
    if path.exists() and not path.is_file():  # SQLite would leave <path>-journal beside a device
        raise StoreError(f"store path {path} is not a regular file (a device, a pipe ...); give a file "
                         "name such as gcp-robust.db")
    reason = read_only_reason(path, read_only)
    if reason is not None and not path.exists():
        if read_only:
            raise StoreError(f"store {path} {absent(path)}")
        raise StoreError(f"cannot create store {path}: {reason}")
    if reason is not None:
        _classify_untouched(path)
    deadline = time.monotonic() + timeout
    while True:
        db = frozen = None
        try:
            if reason is None:
                # absolute: SQLite reads a name starting "file:" as a URI and ":memory:" as no file
                db = sqlite3.connect(os.path.abspath(path), timeout=timeout, isolation_level=None)
            else:
                uri = _read_only_uri(path)
                frozen = file_state(path) if uri.endswith("&immutable=1") else None  # before it is read
                db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
            state = _classify_now(db, path)  # reads only: a refused file stays as it was
            if reason is None:
                _set_up(db, path, state)
            elif state == "new":  # a command that reads: what fills it (one that computes)
                fills = (": nothing has been stored in it (eval, compare and baseline store results)"
                         if reason == OPENED_FOR_READING else "")
                raise StoreError(f"store {path} is empty and {reason}{fills}")
            return db, reason, frozen
        except sqlite3.OperationalError as error:
            # Switching a new file to WAL needs an exclusive lock, and SQLite reports "database is locked"
            # at once (without its busy handler) while another process does the same.
            _close(db)
            if not _is_busy(error) or time.monotonic() > deadline:
                raise store_error(error, path, reason) from None
            time.sleep(0.05)
        except sqlite3.DatabaseError as error:  # not a database at all, or a damaged one
            _close(db)
            raise store_error(error, path, reason) from None
        except BaseException:
            _close(db)
            raise


def _classify_untouched(path: Path) -> None:
    """Refuse a file that is no store of ours before a read-only connection opens it: on a file in
    WAL mode that connection creates ``-wal`` and ``-shm`` beside it and, being read-only, leaves
    them there. Without a ``-wal`` the file holds all its content, and an immutable connection
    reads it without creating anything (with one, opening creates nothing new either)."""
    if _holds_wal(path):
        return
    db = None
    try:
        db = sqlite3.connect(f"{real_path(path).as_uri()}?mode=ro&immutable=1", uri=True,
                             isolation_level=None)
        _classify_now(db, path)
    except sqlite3.DatabaseError as error:
        raise store_error(error, path, None) from None
    finally:
        _close(db)


def read_only_reason(path: Path, read_only: bool) -> str | None:
    """Why the store at ``path`` must be opened read-only, or None."""
    if read_only:
        return OPENED_FOR_READING
    if path.exists() and not _may_write(path, os.W_OK):
        return "its file system is read-only" if _read_only_mount(path) else "the file is read-only"
    if not _may_write(path.parent, os.W_OK | os.X_OK):
        if path.parent.exists() and not path.parent.is_dir():
            return f"{path.parent} is a file, not a folder"
        return "its file system is read-only" if _read_only_mount(path.parent) else "its folder is read-only"
    return None


def _may_write(path: Path, mode: int) -> bool:
    """``os.access(path, mode)``, and a mode that lets someone write it: root may write anything,
    and wrote a store made read-only (``chmod 444``, a folder ``chmod 555``: an archive) that a
    user is refused."""
    if not os.access(path, mode):
        return False
    try:
        return bool(path.stat().st_mode & 0o222)
    except OSError:  # gone meanwhile: SQLite says what it finds
        return True


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False


def _read_only_uri(path: Path) -> str:
    uri = f"{real_path(path).as_uri()}?mode=ro"
    # a read-only folder, or a file that no user may write (its owner could, where only this user
    # may not: then a writer may be at work, and the locks are needed)
    unwritable = not _may_write(path.parent, os.W_OK) or not path.stat().st_mode & 0o222
    if unwritable and not _holds_wal(path):
        # No -wal file with pages (an empty one holds nothing: the .db file is whole), and none can
        # be created here: SQLite may skip the locks and their -shm file, which it could not create,
        # or would create read-only, blocking writes once the file is made writable again. A writer
        # through another path (a read-only mount of a folder the host writes) is not seen so:
        # the Store checks that the file did not change while it read it (check_unchanged).
        uri += "&immutable=1"
    return uri


def tidy_after_reading(path: Path) -> None:
    """Remove the empty ``-wal`` and ``-shm`` files that reading ``path`` left beside it.

    A read-only connection to a store in WAL mode creates them where the folder is writable and,
    being read-only, cannot delete them on closing: ``report`` left two empty files beside a store
    that a finished run had tidied. A writable connection that writes nothing (``query_only``)
    deletes them as it closes if it is the last one; SQLite's locks leave a writer at work alone.
    Skipped where the store cannot be written, or where its ``-wal`` holds pages (the closing
    connection would copy them into the ``.db`` file: a writer's to do, not a reader's).
    """
    if (read_only_reason(path, False) is not None or _holds_wal(path)
            or not all(os.path.exists(f"{path}{suffix}") for suffix in ("-wal", "-shm"))):
        return
    db = None
    try:
        db = sqlite3.connect(os.path.abspath(path), timeout=0, isolation_level=None)
        db.execute("PRAGMA query_only=1")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        pass  # busy, or anything else: the files stay, as before
    finally:
        _close(db)


def _holds_wal(path: Path) -> bool:
    """Whether a ``-wal`` file with something in it is beside the store ``path``."""
    try:
        return os.stat(f"{path}-wal").st_size > 0
    except OSError:
        return False


def file_state(path: Path) -> tuple:
    """What changes when a file is written: (device, inode, size, modification time in ns)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def check_unchanged(path: Path, frozen: tuple | None) -> None:
    """Raise a StoreError when the store ``path``, read without locks since it was in state
    ``frozen`` (:func:`file_state`), changed since: what was read may mix two states."""
    if frozen is None:
        return
    try:
        now = file_state(path)
    except OSError:
        now = None
    if now != frozen:
        raise StoreError(f"store {path} changed while it was read: another process writes it (through a "
                         "path this one cannot write to, so it was read without SQLite's locks); run the "
                         "command again once that process is done, or read a copy of the store")


def _classify_now(db: sqlite3.Connection, path: Path) -> str:
    """:func:`classify` in one read transaction (one snapshot, whatever other processes commit)."""
    db.execute("BEGIN")
    try:
        return classify(db, path)
    finally:
        if db.in_transaction:
            db.execute("COMMIT")


def classify(db: sqlite3.Connection, path: Path) -> str:
    """``"new"`` (empty), ``"ours"`` (marked, this schema version) or ``"legacy"`` (a 0.x store).
    Call it inside a transaction.

    Raises:
        StoreError: another application's database, or a store of another schema version.
    """
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    tables = tables_of(db)
    if application_id not in (0, APPLICATION_ID):
        raise StoreError(f"{path} is not a gcp-robust results store (it belongs to another application, "
                         f"id {application_id:#x}); give another --store file")
    # a store is an input too: a view in a table's place ran a query without end (report could not
    # be stopped), and a trigger would run SQL on a write; gcp-robust makes neither
    made = db.execute("SELECT type, name FROM sqlite_master WHERE type IN ('view', 'trigger')").fetchone()
    if made is not None:
        raise StoreError(f"{path} is not a results store gcp-robust wrote (it holds a {made[0]}, "
                         f"{made[1]}); give another --store file")
    if application_id == 0:
        if not db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
            return "new"
        if not STORE_TABLES <= tables:
            raise StoreError(f"{path} is not a gcp-robust results store (it holds other SQLite tables: "
                             f"{', '.join(sorted(tables)) or 'none'}); give another --store file")
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if application_id == 0 and row is None:
        raise StoreError(f"{path} is not a gcp-robust results store (no schema version); "
                         "give another --store file")
    if row is not None and not str(row[0]).isdigit():
        raise StoreError(f"store {path} is damaged: its schema version is {row[0]!r}; use another --store "
                         "file")
    versions = [int(row[0])] if row is not None else []
    if application_id == APPLICATION_ID:
        versions.append(db.execute("PRAGMA user_version").fetchone()[0])
    for version in versions:
        if version != SCHEMA_VERSION:
            newer = ("it was written by a newer gcp-robust: upgrade this one, or use another --store file"
                     if version > SCHEMA_VERSION else "use another --store file")
            raise StoreError(f"store {path} has schema version {version}, this gcp-robust uses "
                             f"{SCHEMA_VERSION}; {newer}")
    return "ours" if application_id == APPLICATION_ID else "legacy"


def _set_up(db: sqlite3.Connection, path: Path, state: str) -> None:
    """WAL mode, and (for a new or a 0.x store) the schema and the mark, in one transaction."""
    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    # keep the -wal small (SQLite's default lets it reach 4 MB, 25 times a finished ImageNet-C store
    # on 20 images, so a nearly full disk failed early): copy it back every 1 MB of pages, and
    # truncate it to 1 MB after each copy that resets it
    db.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
    db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
    if state == "ours":  # marked in the transaction that made its schema
        if not ADDED_TABLES <= tables_of(db):
            _add_tables(db)
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        state = classify(db, path)  # again: another process may have created it meanwhile
        if state != "ours":
            _create_schema(db)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    checkpoint(db)  # the schema into the .db file: a copy of it alone is a store


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in SCHEMA.split(";"):  # each IF NOT EXISTS: only what is missing
        if statement.strip():
            db.execute(statement)


def _add_tables(db: sqlite3.Connection) -> None:
    """Add the tables of :data:`ADDED_TABLES` a store lacks. Best effort: a store that cannot take
    them now (full, busy, read-only media) is used as it is; they read as empty, and a write that
    needs one fails with its own message."""
    try:
        db.execute("BEGIN IMMEDIATE")
        _create_schema(db)
        db.execute("COMMIT")
    except sqlite3.Error:
        try:
            if db.in_transaction:
                db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        return
    checkpoint(db)


def tables_of(db: sqlite3.Connection) -> set[str]:
    """The names of the tables in the store."""
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def checkpoint(db: sqlite3.Connection) -> None:
    """Copy what the ``-wal`` file holds into the ``.db`` file, as far as readers allow (PASSIVE:
    never waits). Best effort: what is not copied stays in the ``-wal`` file, nothing is lost."""
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error:
        pass


def store_error(error: sqlite3.Error, path: Path, reason: str | None) -> StoreError:
    """The one-line message for an SQLite error on the store at ``path``."""
    code = getattr(error, "sqlite_errorcode", None)
    text = str(error)
    folder = real_path(path).parent
    try:
        free_bytes = shutil.disk_usage(folder).free
    except OSError:
        free_bytes = None
    free = "unknown space" if free_bytes is None else _human_bytes(free_bytes)
    # SQLite says "disk I/O error" when it cannot even make the -shm file of a full disk
    io_error = code is not None and code & 0xFF == sqlite3.SQLITE_IOERR
    if code == sqlite3.SQLITE_FULL or "is full" in text or (io_error and free_bytes is not None
                                                            and free_bytes < FULL_BYTES):
        return StoreError(f"store {path} is full ({text}; {free} free in {folder}): the shards stored so far "
                          "are kept; free space, then re-run the same command")
    if code == sqlite3.SQLITE_READONLY or "readonly" in text:
        return StoreError(f"store {path} is read-only ({reason or text}): copy it somewhere writable "
                          "or use --store")
    if _is_busy(error):
        return StoreError(f"store {path} is busy: another process held its write lock for longer than the "
                          "wait (60 s by default); run again once it is done")
    if code == sqlite3.SQLITE_CANTOPEN and reason is not None and Path(f"{path}-wal").exists() \
            and not Path(f"{path}-shm").exists():
        return StoreError(f"cannot read store {path}: {reason}, and SQLite needs a {path.name}-shm file "
                          f"beside its {path.name}-wal to read it; copy the .db and -wal files to a "
                          "writable folder (SQLite makes the -shm there)")
    if code == sqlite3.SQLITE_CORRUPT or "malformed" in text or "no such table" in text:
        # .recover writes SQL (.dump gives up at the first damaged page); it needs the shell's page reader
        names = (path.with_name(f"{path.stem}-saved{n or ''}{path.suffix or '.db'}") for n in range(1000))
        saved = next((name for name in names if not name.exists()), path.with_name("saved.db"))  # a new one
        return StoreError(f"store {path} is damaged ({text}): what it holds cannot be read; `sqlite3 "
                          f"{shlex.quote(str(path))} .recover | sqlite3 {shlex.quote(str(saved))}` may save "
                          "the rows it can read in a new store (where the sqlite3 shell has .recover), or "
                          "give another --store")
    wal = Path(f"{path}-wal")
    if io_error and _indexed_frames(Path(f"{path}-shm")) and (not wal.exists() or wal.stat().st_size == 0):
        # the -shm indexes pages of a -wal someone deleted: SQLite only says "disk I/O error" (an
        # -shm indexing none is any I/O error's: one that SQLite could not grow under `ulimit -f`)
        return StoreError(f"store {path}: its {wal.name} file was removed or moved while a process was "
                          "writing the store (the shards it stored since its last checkpoint are in "
                          "that file): let that process finish, or stop it, then re-run the same "
                          "command; what the .db file holds is kept")
    if io_error:  # not a full disk: the disk, the file system, a limit on file sizes (ulimit -f)
        return StoreError(f"store {path}: the system failed to read or write it ({text}: the disk, the "
                          "file system, or a limit on file sizes); the shards stored so far are kept: "
                          "mend the cause, then re-run the same command")
    if code == sqlite3.SQLITE_NOTADB or "not a database" in text:  # another kind of file: left as it is
        return StoreError(f"cannot use {path} as a results store: {text} (another kind of file, left "
                          "as it is): give another --store")
    return StoreError(f"cannot use {path} as a results store: {text}")


def _indexed_frames(shm: Path) -> int:
    """The frames of the -wal that the -shm file ``shm`` indexes (its header's ``mxFrame``, in the
    machine's byte order, after SQLite's version, an unused word, a counter, two flags and the page
    size); 0 where there is no such file or it is too short to say."""
    try:
        with open(shm, "rb") as file:
            header = file.read(20)
    except OSError:
        return 0
    return struct.unpack("=16xI", header)[0] if len(header) == 20 else 0


FULL_BYTES = 1 << 20  # an I/O error with less free space than this is a full disk
WAL_PAGES = 256  # the -wal is copied into the .db file after this many pages (1 MB of 4 KB pages)
WAL_LIMIT_BYTES = 1 << 20  # and truncated to this size after a copy that resets it


def _human_bytes(n: int) -> str:
    if n < 1000:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KB", "MB", "GB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} TB"


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


def _close(db: sqlite3.Connection | None) -> None:
    if db is not None:
        db.close()
