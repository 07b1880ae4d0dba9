"""The store against the world: other SQLite files, read-only media, copies of the file alone after a
crash, a full disk, and several processes sharing the work of one run."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from robustbench_gcp.cli import main
from robustbench_gcp.errors import StoreError
from robustbench_gcp.store import APPLICATION_ID, SCHEMA_VERSION, CellKey, Claim, ShardResult, Store

IDENTITY = {"arch": "demo-gap", "weights": "abc", "seed": 0}


def open_run(store, n_images=20, shard_size=2):
    return store.run(IDENTITY, model="m", arch="demo-gap", checkpoint=None, data="d",
                     n_images=n_images, shard_size=shard_size)


def shard(n=2, errors=1):
    return ShardResult(n, {"top1_errors": errors}, np.arange(n) % 2 == 0)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def eval_args(val, store, *extra, corruptions="gaussian_noise,fog"):
    return ["eval", "--model", "demo-gap", "--data", val, "--class-order", "sorted", "--store", store,
            "--workers", 0,
            "--format", "json", "--suite", "imagenet-c", "--corruptions", corruptions,
            "--severities", "1,4", "--limit", 40, "--shard-size", 4, *extra]


def one_line_error(result) -> str:
    """The CLI's error: exit 1, one ``Error:`` line last on stderr, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and sum("Error:" in line for line in lines) == 1
    return lines[-1]


def table_rows(path: Path) -> dict:
    """Every shard row of a store file read with plain sqlite3 (cells by their names)."""
    with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
        return {row[:5]: row[5:] for row in db.execute(
            "SELECT kind, name, level, variant, shard, n, counts, bitmap, extra FROM shards "
            "JOIN cells ON cells.id = shards.cell_id")}


def without_computed(stdout: str) -> dict:
    report = json.loads(stdout)
    report.pop("computed")
    return report


# -- 6. another application's SQLite database -----------------------------------------

def foreign_database(path: Path, *, application_id: int = 0, wal: bool = False) -> None:
    with sqlite3.connect(path) as db:
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, athlete TEXT, km REAL)")
        db.execute("CREATE TABLE shoes (name TEXT)")
        db.execute("INSERT INTO runs (athlete, km) VALUES ('ana', 12.5)")
        db.execute(f"PRAGMA application_id = {application_id}")
    db.close()
    assert not Path(f"{path}-wal").exists()


@pytest.mark.parametrize("read_only", [False, True])
def test_a_refused_file_in_wal_mode_gets_no_files_beside_it(tmp_path, store_path, read_only):
    """A read-only SQLite connection to a file in WAL mode creates -wal and -shm and leaves them."""
    foreign = tmp_path / "foreign.db"
    foreign_database(foreign, wal=True)
    with pytest.raises(StoreError, match="is not a gcp-robust results store"):
        Store(foreign, read_only=read_only)
    Store(store_path).close()
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(store_path.read_bytes()[:1000])
    with pytest.raises(StoreError, match=r"store .*truncated.db is damaged \(database disk image is"):
        Store(truncated, read_only=read_only)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.db", store_path.name, "truncated.db"]


@pytest.mark.parametrize("application_id", [0, 0x12345678])
def test_another_applications_database_is_refused_untouched(tmp_path, application_id):
    path = tmp_path / "foreign.db"
    foreign_database(path, application_id=application_id)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"foreign.db is not a gcp-robust results store") as error:
        Store(path)
    assert "\n" not in str(error.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.db"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_another_applications_database_through_the_cli(tmp_path, demo_val):
    path = tmp_path / "foreign.db"
    foreign_database(path)
    before = path.read_bytes()
    for args in (eval_args(demo_val, path), ["report", "--store", path]):
        line = one_line_error(cli(*args))
        assert "is not a gcp-robust results store" in line
    assert path.read_bytes() == before


def test_new_stores_are_marked(store_path):
    Store(store_path).close()
    with sqlite3.connect(store_path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_empty_file_becomes_a_store(store_path):
    store_path.touch()
    with Store(store_path) as store:
        assert open_run(store).n_shards == 10


# The schema of gcp-robust 0.x stores: a `meta` table with schema_version 1, no application_id.
LEGACY_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, model TEXT NOT NULL,
    arch TEXT NOT NULL, checkpoint TEXT, data TEXT, n_images INTEGER NOT NULL,
    shard_size INTEGER NOT NULL, identity TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE cells (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL, name TEXT NOT NULL, level TEXT NOT NULL, variant TEXT NOT NULL,
    UNIQUE (run_id, kind, name, level, variant));
CREATE TABLE baselines (name TEXT PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
    created TEXT NOT NULL);
CREATE TABLE shards (cell_id INTEGER NOT NULL REFERENCES cells(id), shard INTEGER NOT NULL,
    n INTEGER NOT NULL, counts TEXT NOT NULL, bitmap BLOB, extra BLOB, seconds REAL,
    created TEXT NOT NULL, PRIMARY KEY (cell_id, shard));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO runs VALUES (1, 'k1', 'old-model', 'demo-gap', NULL, 'd', 4, 2,
    '{"arch":"demo-gap"}', '2024-01-01T00:00:00');
INSERT INTO cells VALUES (1, 1, 'imagenet-c', 'fog', '3', '{}');
INSERT INTO shards VALUES (1, 0, 2, '{"top1_errors":1}', x'80', NULL, 0.5, '2024-01-01T00:00:00');
INSERT INTO shards VALUES (1, 1, 2, '{"top1_errors":2}', x'00', NULL, 0.5, '2024-01-01T00:00:00');
INSERT INTO baselines VALUES ('old', 1, '2024-01-01T00:00:00');
"""


def legacy_store(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(LEGACY_SCHEMA)
    db.commit()
    db.close()


def test_a_store_of_the_previous_version_opens_and_is_marked(store_path):
    legacy_store(store_path)
    with Store(store_path, read_only=True) as store:  # reading leaves it as it is
        assert store.runs()[0].model == "old-model"
        # tables added since (leases, notes) read as empty: "no such table: leases" was "damaged"
        assert store.computing(1) == [] and store.notes(1) == {}
    with sqlite3.connect(store_path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0
    with Store(store_path) as store:
        (run,) = store.runs()
        ((cell_id, key),) = store.cells(run.id)
        result = store.cell_result(cell_id, key, run.n_shards)
        assert key == CellKey("imagenet-c", "fog", "3") and result.complete
        assert result.counts == {"top1_errors": 3} and result.correct.tolist() == [True, False, False, False]
        assert store.baseline("old").id == run.id
        new = store.cell_id(run.id, CellKey("clean"))
        assert store.commit_shard(new, 0, shard())
    with sqlite3.connect(store_path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_partial_run_of_the_previous_version_is_reported(store_path):
    """report read the leases table to say whether the run was being computed: an older store
    has none, and was called damaged ("sqlite3 ... .recover may save its rows")."""
    legacy_store(store_path)
    with sqlite3.connect(store_path) as db:
        db.execute("DELETE FROM shards WHERE shard = 1")
    result = cli("report", "--store", store_path, "--format", "json")
    assert result.exit_code == 0, result.output
    assert "partial run of old-model: 0 of 1 cells complete (1 of 2 shards stored)" in result.stdout
    with sqlite3.connect(store_path) as db:  # read, not upgraded
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0


# -- 7. read-only stores and read-only media ----------------------------------------------

def test_a_store_opened_read_only_reads_and_never_writes(store_path):
    with Store(store_path) as store:
        cell = store.cell_id(open_run(store).id, CellKey("clean"))
        store.commit_shard(cell, 0, shard())
    before = store_path.read_bytes()
    with Store(store_path, read_only=True) as store:
        run = open_run(store)  # found: nothing to write
        assert store.read_only and store.done_shards(cell) == {0}
        assert store.cell_id(run.id, CellKey("clean")) == cell
        with pytest.raises(StoreError, match=r"results.db is read-only \(opened for reading\): cannot store "
                                             r"shards; copy it somewhere writable or use --store"):
            store.commit_shard(cell, 1, shard())
        with pytest.raises(StoreError, match="is read-only"):
            store.cell_id(run.id, CellKey("imagenet-c", "fog", "1"))
        with pytest.raises(StoreError, match="is read-only"):
            store.run({"other": 1}, model="m", arch="a", checkpoint=None, data=None, n_images=1, shard_size=1)
    assert store_path.read_bytes() == before
    with pytest.raises(StoreError, match="does not exist"):
        Store(store_path.with_name("missing.db"), read_only=True)


@contextmanager
def read_only(path: Path, mode: int):
    old = stat.S_IMODE(path.stat().st_mode)
    path.chmod(mode)
    try:
        yield
    finally:
        path.chmod(old)


@pytest.fixture
def stored_eval(tmp_path, demo_val):
    """A store in its own folder holding one finished eval, and that eval's JSON report."""
    folder = tmp_path / "media"
    folder.mkdir()
    store = folder / "results.db"
    first = cli(*eval_args(demo_val, store))
    assert first.exit_code == 0, first.output
    return store, without_computed(first.stdout)


@pytest.mark.parametrize("what", ["file", "folder"])
def test_report_and_cached_eval_on_read_only_media(stored_eval, demo_val, what):
    store, report = stored_eval
    target, mode = (store, 0o444) if what == "file" else (store.parent, 0o555)
    before = store.read_bytes()
    with read_only(target, mode):
        shown = cli("report", "--store", store, "--format", "json", "--no-intervals")
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["reports"][0]["cells"] == report["cells"]
        again = cli(*eval_args(demo_val, store))
        assert again.exit_code == 0, again.output
        assert without_computed(again.stdout) == report
        assert json.loads(again.stdout)["computed"]["computed"] == 0
        more = cli(*eval_args(demo_val, store, corruptions="gaussian_noise,fog,contrast"))
        line = one_line_error(more)
        reason = "the file is read-only" if what == "file" else "its folder is read-only"
        assert line == (f"Error: store {store} is read-only ({reason}): 20 shards still to compute; "
                        "copy it somewhere writable or use --store")
    assert store.read_bytes() == before
    # read without locks (immutable): no -shm or -wal made, by root either (helper-288)
    assert sorted(p.name for p in store.parent.iterdir()) == [store.name]


def test_a_read_only_store_says_it_keeps_a_runs_stored_name(stored_eval, demo_val, tmp_path, monkeypatch):
    """The same weights under a new name: a writable store relabels the run and says so; a read-only
    one keeps its name, which it now says too (helper-262: nothing was said, and reports kept the old
    name). Read-only as a file system would make it (root ignores file modes)."""
    import robustbench_gcp.store.sqlite_file as sqlite_file

    store, _ = stored_eval
    config = tmp_path / "mine.yaml"
    config.write_text("models:\n  mygap: {arch: demo-gap, checkpoint: 'package:demo/demo-gap.pth'}\n"
                      "suites:\n  imagenet-c: {kind: imagenet-c}\n")
    monkeypatch.setattr(sqlite_file, "read_only_reason",
                        lambda path, read_only: "its file system is read-only" if path.exists() else None)
    again = cli(*("mygap" if a == "demo-gap" else a for a in eval_args(demo_val, store, "--config", config)))
    assert again.exit_code == 0, again.output
    assert ("the store holds a run of these weights and settings as demo-gap: its results are reused, and "
            "reports show it as demo-gap, not mygap (the store is read-only)") in json.loads(again.stdout)[
        "notes"]


def test_a_new_store_in_a_read_only_folder(tmp_path, demo_val):
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder, 0o555):
        line = one_line_error(cli(*eval_args(demo_val, folder / "new.db")))
    assert line == f"Error: cannot create store {folder / 'new.db'}: its folder is read-only"


# -- 8. the .db file alone after a crash ----------------------------------------------------

def test_the_db_file_alone_holds_the_schema_of_a_new_store(store_path, tmp_path):
    with Store(store_path):
        copy = tmp_path / "copy.db"
        shutil.copyfile(store_path, copy)  # the -wal file is left behind
    with Store(copy, read_only=True) as store:
        assert store.runs() == []


def _commit_then_die(path, n, checkpoint_seconds):
    store = Store(path, checkpoint_seconds=checkpoint_seconds)
    cell = store.cell_id(open_run(store).id, CellKey("clean"))
    for i in range(n):
        store.commit_shard(cell, i, shard())
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("checkpoint_seconds, kept", [(0.0, 5), (3600.0, 0)])
def test_checkpoints_during_a_run_reach_the_db_file(tmp_path, checkpoint_seconds, kept):
    path = tmp_path / "killed.db"
    process = mp.get_context("spawn").Process(target=_commit_then_die, args=(path, 5, checkpoint_seconds))
    process.start()
    process.join(120)
    assert process.exitcode == -signal.SIGKILL
    assert len(table_rows(path)) == 5  # with its -wal file: everything
    alone = tmp_path / "alone" / "killed.db"
    alone.parent.mkdir()
    shutil.copyfile(path, alone)
    assert len(table_rows(alone)) == kept


def test_after_a_run_the_db_file_alone_holds_everything(tmp_path, demo_val):
    store = tmp_path / "results.db"
    Store(store).close()
    reader = sqlite3.connect(store)  # another process's connection: the run's end is not the last close
    try:
        reader.execute("SELECT COUNT(*) FROM shards").fetchone()
        done = cli(*eval_args(demo_val, store))
        assert done.exit_code == 0, done.output
        alone = tmp_path / "alone.db"
        shutil.copyfile(store, alone)
        rows = table_rows(store)
        assert len(rows) == 5 * 10 and table_rows(alone) == rows
    finally:
        reader.close()


# -- 9. a full disk ------------------------------------------------------------------------

def test_a_full_disk_while_creating_cells_and_committing_shards(store_path):
    with Store(store_path) as store:
        run = open_run(store)
        first = store.cell_id(run.id, CellKey("clean"))
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError) as error:
            for i in range(1000):
                store.cell_id(run.id, CellKey("imagenet-c", f"corruption-{i:04d}", "3", "{}" + "x" * 200))
        message = str(error.value)
        assert message.startswith(f"store {store_path} is full (database or disk is full; ")
        assert "free in " in message and "\n" not in message
        assert message.endswith("the shards stored so far are kept; free space, then re-run the same command")
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count = {pages + 2}")
        stored = 0
        with pytest.raises(StoreError, match="is full"):
            for i in range(1000):
                store.commit_shard(first, i, ShardResult(2, {"x": 1}, None, np.ones((2, 100))))
                stored += 1
        assert 0 < stored < 1000 and store.done_shards(first) == set(range(stored))


def test_a_full_disk_mid_run_through_the_cli(tmp_path, demo_val, monkeypatch):
    store, args = tmp_path / "full.db", ("--shard-size", 1, "--limit", 100)

    def almost_full(db):
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages + 1}")

    monkeypatch.setattr(Store, "connection_hooks", (almost_full,))
    line = one_line_error(cli(*eval_args(demo_val, store, *args)))
    assert line.startswith(f"Error: store {store} is full (database or disk is full; ")
    assert line.endswith("free space, then re-run the same command")
    kept = table_rows(store)
    assert 0 < len(kept) < 5 * 100

    monkeypatch.setattr(Store, "connection_hooks", ())
    resumed = cli(*eval_args(demo_val, store, *args))
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["computed"]["computed"] == 5 * 100 - len(kept)
    fresh = cli(*eval_args(demo_val, tmp_path / "fresh.db", *args))
    assert fresh.exit_code == 0, fresh.output
    assert without_computed(resumed.stdout) == without_computed(fresh.stdout) | {"store": str(store)}
    rows, fresh_rows = table_rows(store), table_rows(tmp_path / "fresh.db")
    assert {k: v[:3] for k, v in rows.items()} == {k: v[:3] for k, v in fresh_rows.items()}
    assert all(rows[k] == v for k, v in kept.items())


# -- 12. several processes share the work of one run ---------------------------------------

def test_leases_split_the_shards_of_a_run(store_path):
    with Store(store_path) as a, Store(store_path) as b:
        run = open_run(a)
        c1, c2 = (a.cell_id(run.id, CellKey("imagenet-c", "fog", level)) for level in ("1", "2"))
        assert a.claim(0, [[c1], [c2]]) == [Claim.MINE, Claim.MINE]
        assert a.claim(0, [[c1]]) == [Claim.MINE]  # renewing its own lease
        assert b.claim(0, [[c1], [c2], [c1, c2]]) == [Claim.BUSY] * 3
        assert b.claim(1, [[c1]]) == [Claim.MINE]
        a.commit_shards([c1], 0, [shard()])
        assert a.shards_of_all([c1]) == {0} and a.shards_of_all([c1, c2]) == set()  # c2 is not stored
        assert b.claim(0, [[c1], [c2]]) == [Claim.DONE, Claim.BUSY]
        leases = "SELECT COUNT(*) FROM leases WHERE cell_id = ? AND shard = 0"
        assert a.db.execute(leases, (c1,)).fetchone() == (0,)  # released by the commit
        a.release()
        assert b.claim(0, [[c1], [c2]]) == [Claim.DONE, Claim.MINE]
        # a task of several cells (an attack's epsilons, one added since) is done when all are stored
        assert a.claim(0, [[c1, c2]]) == [Claim.BUSY] and b.claim(0, [[c1, c2]]) == [Claim.MINE]


def test_a_closed_store_leaves_no_leases(store_path):
    """Closing a store drops its leases: another store of this process (a notebook's next eval),
    whose owner is alive, takes the shards at once rather than after the lease time."""
    with Store(store_path) as a:
        cell = a.cell_id(open_run(a).id, CellKey("clean"))
        assert a.claim(0, [[cell]]) == [Claim.MINE]
    with Store(store_path) as b:
        assert b.db.execute("SELECT COUNT(*) FROM leases").fetchone() == (0,)
        assert b.claim(0, [[cell]]) == [Claim.MINE]


def test_a_stop_inside_a_commit_stores_nothing_and_the_store_goes_on(store_path, monkeypatch):
    """A Ctrl-C between a shard's rows and the end of its transaction rolls the transaction back:
    the shard is not half stored, and the next write begins afresh."""
    from robustbench_gcp.store import leases

    def stopped(*args):
        raise KeyboardInterrupt

    with Store(store_path) as store:
        cell = store.cell_id(open_run(store).id, CellKey("clean"))
        with monkeypatch.context() as patch:
            patch.setattr(leases, "finish", stopped)
            with pytest.raises(KeyboardInterrupt):
                store.commit_shard(cell, 0, shard())
        assert not store.db.in_transaction and store.done_shards(cell) == set()
        assert store.commit_shard(cell, 0, shard()) and store.done_shards(cell) == {0}


def _claim_then_die(path, cell):
    store = Store(path)
    assert store.claim(0, [[cell]]) == [Claim.MINE]
    os.kill(os.getpid(), signal.SIGKILL)


def test_the_leases_of_a_killed_process_are_taken_over(store_path):
    with Store(store_path) as store:
        cell = store.cell_id(open_run(store).id, CellKey("clean"))
        process = mp.get_context("spawn").Process(target=_claim_then_die, args=(store_path, cell))
        process.start()
        process.join(120)
        assert process.exitcode == -signal.SIGKILL
        (owner,) = store.db.execute("SELECT owner FROM leases").fetchone()
        assert owner.split(":")[1] == str(process.pid)
        assert store.claim(0, [[cell]]) == [Claim.MINE]  # its process is gone: at once
        assert store.db.execute("SELECT owner FROM leases").fetchall() == [(store.owner,)]  # now its


def _taken_over_at_once(store_path, owner: str) -> bool:
    """Whether this process claims a shard ``owner`` holds a lease on for another 100 s."""
    with Store(store_path) as store:
        cell = store.cell_id(open_run(store).id, CellKey("clean"))
        with sqlite3.connect(store_path) as db:
            db.execute("INSERT INTO leases VALUES (?, 0, ?, ?)", (cell, owner, time.time() + 100))
        return store.claim(0, [[cell]]) == [Claim.MINE]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads Linux's /proc")
def test_the_leases_of_a_killed_process_not_yet_collected_are_taken_over(store_path):
    """A job script that kills eval and starts it again before its wait(): the killed process is a
    zombie, which kill(pid, 0) still finds; its leases held the resume for two minutes."""
    import subprocess

    from robustbench_gcp.store.leases import is_alive, this_host

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = f"{this_host()}:{child.pid}:0dead0"
        assert is_alive(owner)
        child.kill()
        deadline = time.monotonic() + 30
        while is_alive(owner):  # a zombie as soon as the kernel has killed it; not collected
            assert time.monotonic() < deadline, "the killed child still counts as alive"
            time.sleep(0.05)
        assert _taken_over_at_once(store_path, owner)
    finally:
        child.kill()
        child.wait()


def test_a_lease_of_an_earlier_process_with_this_pid_is_taken_over(store_path):
    """A container restarted after a SIGKILL runs gcp-robust as the same pid on the same host: the
    lease its earlier life left is not this process's, so it is taken over at once (not in 2 min)."""
    from robustbench_gcp.store.leases import this_host

    with Store(store_path) as store:
        cell = store.cell_id(open_run(store).id, CellKey("clean"))
        earlier = f"{this_host()}:{os.getpid()}:0dead0"
        with sqlite3.connect(store_path) as db:
            db.execute("INSERT INTO leases VALUES (?, 0, ?, ?)", (cell, earlier, time.time() + 100))
        assert store.claim(0, [[cell]]) == [Claim.MINE]


@pytest.mark.skipif(not os.path.exists("/proc/sys/kernel/random/boot_id"), reason="reads Linux's /proc")
def test_a_lease_of_another_machine_of_this_host_name_is_kept(store_path):
    """Two machines of one host name sharing a store: the other's pid, dead here, is alive there.
    Its lease was taken over at once, and the shard computed twice."""
    import socket

    from robustbench_gcp.store.leases import is_alive, this_host

    gone = _a_gone_pid()
    assert not is_alive(f"{this_host()}:{gone}:0dead0")
    with Store(store_path) as store:
        cell = store.cell_id(open_run(store).id, CellKey("clean"))
        other = f"{socket.gethostname()}/0000beef:{gone}:feed"  # another machine's kernel
        assert this_host() != f"{socket.gethostname()}/0000beef" and is_alive(other)
        with sqlite3.connect(store_path) as db:
            db.execute("INSERT INTO leases VALUES (?, 0, ?, ?)", (cell, other, time.time() + 100))
        assert store.claim(0, [[cell]]) == [Claim.BUSY]


def test_a_container_restarted_on_this_machine_takes_its_earlier_leases_over(store_path):
    """A container killed and started again runs in a new pid namespace, as pid 1 again: its earlier
    life's lease is of this kernel and its process is gone, so it is taken over at once."""
    import shutil
    import subprocess

    unshare = shutil.which("unshare")
    life = ("import os, sys\n"
            "from robustbench_gcp.store import Store\n"
            "store = Store(sys.argv[1])\n"
            "print(os.getpid(), store.claim(0, [[int(sys.argv[2])]])[0].value, flush=True)\n"
            "os._exit(0)  # killed: its lease stays\n")
    with Store(store_path) as store:
        cell = store.cell_id(open_run(store).id, CellKey("clean"))
    lives = []
    for _ in range(2):
        command = [unshare, "-pf", "--mount-proc", sys.executable, "-c", life, str(store_path), str(cell)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120) if unshare else None
        if done is None or (done.returncode != 0 and "unshare" in done.stderr):
            pytest.skip("no unshare (new pid namespaces) here")
        assert done.returncode == 0, done.stderr
        lives.append(done.stdout.split())
    assert lives == [["1", "mine"], ["1", "mine"]]


def _a_gone_pid() -> int:
    """A pid no process of this machine has now."""
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leases_expire_without_renewal(store_path):
    with Store(store_path) as store:
        cell = store.cell_id(open_run(store).id, CellKey("clean"))
        with sqlite3.connect(store_path) as db:  # a process of another machine, then silence
            db.execute("INSERT INTO leases VALUES (?, 0, 'another-host:1:feed', ?)", (cell, time.time() + 2))
        assert store.claim(0, [[cell]]) == [Claim.BUSY]
        deadline = time.monotonic() + 30
        while store.claim(0, [[cell]]) != [Claim.MINE]:
            assert time.monotonic() < deadline, "a lease never expired"
            time.sleep(0.2)


def test_a_live_process_renews_its_leases(store_path):
    with Store(store_path, lease_seconds=0.8) as holder, Store(store_path) as other:
        cell = holder.cell_id(open_run(holder).id, CellKey("clean"))
        assert holder.claim(0, [[cell]]) == [Claim.MINE]
        time.sleep(2.0)  # more than twice the lease: its heartbeat keeps it
        assert other.claim(0, [[cell]]) == [Claim.BUSY]


def test_a_lease_never_lapses_between_heartbeats(store_path):
    """Beats come every quarter of the lease time: read throughout 2.5 leases, the lease is never
    past its expiry (a beat every 2 leases left it lapsed from 1 to 2 leases, where another process
    may take it, and a check at 2 leases passed)."""
    with Store(store_path, lease_seconds=1.2) as holder:
        cell = holder.cell_id(open_run(holder).id, CellKey("clean"))
        assert holder.claim(0, [[cell]]) == [Claim.MINE]
        start = time.monotonic()
        with sqlite3.connect(store_path) as db:
            while time.monotonic() - start < 3.0:
                (expires,) = db.execute("SELECT expires FROM leases WHERE cell_id = ?", (cell,)).fetchone()
                assert expires > time.time(), f"lapsed {time.monotonic() - start:.2f} s after the claim"
                time.sleep(0.05)


def test_the_heartbeat_renews_the_store_it_was_given_after_a_change_of_folder(tmp_path, monkeypatch):
    """A relative store path: the heartbeat's connection opened it in the working folder of its
    first beat, a new empty store where a library user had changed folder, and renewed nothing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    with Store("s.db", lease_seconds=0.8) as holder, Store("s.db") as other:
        cell = holder.cell_id(open_run(holder).id, CellKey("clean"))
        monkeypatch.chdir(tmp_path / "elsewhere")
        assert holder.claim(0, [[cell]]) == [Claim.MINE]
        time.sleep(2.0)
        assert other.claim(0, [[cell]]) == [Claim.BUSY]
    assert not (tmp_path / "elsewhere" / "s.db").exists()


def test_a_heartbeat_that_cannot_open_the_store_tries_again_at_the_next_beat(store_path, monkeypatch):
    """The heartbeat's thread opened its connection once, before its loop: where that failed (too
    many open files), the thread died without a word and the leases lapsed during a long shard."""
    from robustbench_gcp.store import leases

    real, failed = sqlite3.connect, []

    def connect(*args, **kwargs):
        if threading.current_thread().name == "gcp-robust-leases" and not failed:
            failed.append(True)
            raise sqlite3.OperationalError("unable to open database file")
        return real(*args, **kwargs)

    monkeypatch.setattr(leases.sqlite3, "connect", connect)
    with Store(store_path, lease_seconds=0.8) as holder, Store(store_path) as other:
        cell = holder.cell_id(open_run(holder).id, CellKey("clean"))
        assert holder.claim(0, [[cell]]) == [Claim.MINE]
        time.sleep(2.0)
        assert failed and other.claim(0, [[cell]]) == [Claim.BUSY]


def test_two_processes_on_one_run_split_the_work(tmp_path, demo_val):
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet", "OMP_NUM_THREADS": "1"}
    store = tmp_path / "shared.db"
    args = [str(a) for a in eval_args(demo_val, store, "--shard-size", 2, "--limit", 100,
                                      corruptions="gaussian_noise,glass_blur,fog")]
    command = [sys.executable, "-m", "robustbench_gcp", *args]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    reports = [json.loads(out) for out, _ in outputs]
    total = 7 * 50  # (clean + 3 corruptions x 2 severities) x 50 shards of 2 images
    computed = [r["computed"]["computed"] for r in reports]
    assert sum(computed) == total, computed
    assert all(r["computed"]["units"] == total for r in reports)
    # what the other one stored counts as reused: each unit is computed here or reused
    assert all(r["computed"]["computed"] + r["computed"]["reused"] == total for r in reports), computed
    assert without_computed(outputs[0][0]) == without_computed(outputs[1][0])
    alone = cli(*eval_args(demo_val, tmp_path / "alone.db", "--shard-size", 2, "--limit", 100,
                           corruptions="gaussian_noise,glass_blur,fog"))
    assert alone.exit_code == 0, alone.output
    assert table_rows(store).keys() == table_rows(tmp_path / "alone.db").keys()
    shared, single = table_rows(store), table_rows(tmp_path / "alone.db")
    assert {k: v[:4] for k, v in shared.items()} == {k: v[:4] for k, v in single.items()}


def test_messages_for_a_busy_store_a_full_disk_and_a_read_only_wal(store_path, monkeypatch):
    """A write lock held past the wait, SQLite's 'disk I/O error' on a full disk (it cannot make the
    -shm file) and a read-only folder with a -wal but no -shm each get a message that says so."""
    import shutil
    import sqlite3
    from collections import namedtuple

    from robustbench_gcp.store import sqlite_file

    with Store(store_path) as store:
        open_run(store)
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with Store(store_path, timeout=0.2) as store, pytest.raises(StoreError) as error:
            store.cell_id(store.runs()[0].id, CellKey("clean"))
        assert "is busy: another process held its write lock for longer than the wait" in str(error.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    io_error = sqlite3.OperationalError("disk I/O error")
    io_error.sqlite_errorcode = sqlite3.SQLITE_IOERR_WRITE
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10 << 20, 10 << 20, 4096))
    full = str(sqlite_file.store_error(io_error, store_path, None))
    assert "is full (disk I/O error; 4.1 KB free in" in full
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10 << 30, 1 << 30, 9 << 30))
    # another I/O error (a file size limit, a failing disk): not "cannot use ... as a results store"
    assert str(sqlite_file.store_error(io_error, store_path, None)) == (
        f"store {store_path}: the system failed to read or write it (disk I/O error: the disk, the file "
        "system, or a limit on file sizes); the shards stored so far are kept: mend the cause, then re-run "
        "the same command")

    cannot_open = sqlite3.OperationalError("unable to open database file")
    cannot_open.sqlite_errorcode = sqlite3.SQLITE_CANTOPEN
    (store_path.parent / f"{store_path.name}-wal").write_bytes(b"")
    (store_path.parent / f"{store_path.name}-shm").unlink(missing_ok=True)
    message = str(sqlite_file.store_error(cannot_open, store_path, "its folder is read-only"))
    assert message.startswith(f"cannot read store {store_path}: its folder is read-only, and SQLite needs a")


def test_the_wal_stays_small(store_path):
    """SQLite's default lets the -wal grow to 4 MB before it is copied back; a store keeps it near
    1 MB, so that a nearly full disk holds a whole run."""
    with Store(store_path) as store:
        run = open_run(store)
        assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 256
        cell = store.cell_id(run.id, CellKey("clean"))
        for shard in range(400):  # about 5 MB of per-image values
            store.commit_shard(cell, shard, ShardResult(100, {"x": 1}, None, np.ones((100, 32))))
        wal = store_path.parent / f"{store_path.name}-wal"
        assert wal.stat().st_size < 2 << 20, wal.stat().st_size


@pytest.mark.parametrize(("edit", "said"), [
    ("counts = '{not json'", "Expecting property name"),
    ("counts = '[1, 2]'", "shard 0: its counts are a JSON list, not an object"),  # a traceback
    # an empty or short bitmap was read as errors (zeros) or as whatever NumPy found, and the
    # report's tables (from the bits) disagreed with its JSON (from the counts)
    ("bitmap = X''", "shard 0: a bitmap of 0 bytes for 10 images"),
    ("bitmap = X'ff'", "shard 0: a bitmap of 1 bytes for 10 images"),
    ("bitmap = X'ffc0'", "shard 0: its bitmap tells 0 top1_errors, its counts 3"),
    # no bitmap beside the counts it repeats: a ValueError in the report's per-image errors
    ("bitmap = NULL", "shard 0: its counts hold top1_errors, and it has no bitmap"),
    # read as 0 errors, whatever the bitmap said (a probe of damaged stores)
    ("counts = '{}'", "shard 0: its counts are empty beside its bitmap"),
])
def test_a_shard_row_edited_by_hand_is_a_one_line_error(store_path, edit, said):
    with Store(store_path) as store:
        run = open_run(store)
        cell = store.cell_id(run.id, CellKey("clean"))
        correct = np.array([True] * 7 + [False] * 3)
        store.commit_shard(cell, 0, ShardResult(10, {"top1_errors": 3}, correct, None))
        assert store.results(run)[0].counts == {"top1_errors": 3}
    with sqlite3.connect(store_path) as db:
        db.execute(f"UPDATE shards SET {edit}")
    with Store(store_path, read_only=True) as store, pytest.raises(StoreError) as error:
        store.results(store.runs()[0])
    assert str(error.value).startswith(f"store {store_path}: a stored shard of cell clean is damaged (")
    assert said in str(error.value)


def test_a_shard_whose_counts_lack_its_cells_bitmap_count_is_damaged(store_path):
    """A shard whose top1_errors was removed by hand: the cell's errors were the other shards' alone.
    Other names may differ between shards (ImageNet-P's before 0.7.7 lack the later totals)."""
    with Store(store_path) as store:
        run = open_run(store, n_images=4, shard_size=2)
        cell = store.cell_id(run.id, CellKey("clean"))
        for index in (0, 1):
            store.commit_shard(cell, index, ShardResult(2, {"top1_errors": 1, "top5_errors": 1},
                                                        np.array([True, False]), None))
        legacy = store.cell_id(run.id, CellKey("imagenet-p", "rotate", "1"))
        for index, later in ((0, {}), (1, {"flips": 3})):
            counts = {"videos": 2, "flip_rate_sum": 0.5, **later}
            store.commit_shard(legacy, index, ShardResult(2, counts, None, np.ones((2, 2))))
        assert {r.key.kind: r.counts.get("videos") for r in store.results(run)}["imagenet-p"] == 4
    with sqlite3.connect(store_path) as db:
        db.execute("""UPDATE shards SET counts = '{"top5_errors": 1}' WHERE shard = 1 AND cell_id = ?""",
                   (cell,))
    db.close()
    with Store(store_path, read_only=True) as store, pytest.raises(StoreError) as error:
        store.results(store.runs()[0])
    said = "a stored shard of cell clean is damaged (shard 1: its counts hold top5_errors, shard 0's "
    assert said + "top1_errors" in str(error.value)


def test_a_cell_or_run_row_edited_by_hand_is_a_one_line_error(store_path):
    """A level that is no number (a ValueError where a suite read it as a severity) and a run's
    n_images below its stored shards (an IndexError in the report's image ranges)."""
    with Store(store_path) as store:
        run = open_run(store, n_images=6, shard_size=2)
        cell = store.cell_id(run.id, CellKey("imagenet-c", "fog", "3"))
        for k in range(3):
            store.commit_shard(cell, k, shard())
    for edit, said in (("UPDATE cells SET level = 'abc'", "cell imagenet-c/fog/abc: its level 'abc' is not "
                                                           "a number: the row is damaged (edited by hand?)"),
                       ("UPDATE cells SET level = '3'; UPDATE runs SET n_images = 3",
                        "a stored shard of cell imagenet-c/fog/3 is damaged (shard 2 of a run of 2 shards)")):
        with sqlite3.connect(store_path) as db:
            db.executescript(edit)
        with Store(store_path, read_only=True) as store, pytest.raises(StoreError) as error:
            store.results(store.runs()[0])
        assert said in str(error.value)
    result = cli("report", "--store", store_path)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "(shard 2 of a run of 2 shards)" in result.stderr


def test_an_attack_shard_bitmap_holds_its_robust_images(store_path):
    """An attack shard's bitmap marks the robust images (its ones), which its "robust" count repeats;
    a shard whose count disagrees with its bitmap is damaged."""
    with Store(store_path) as store:
        run = open_run(store)
        cell = store.cell_id(run.id, CellKey("attack", "pgd", "0.5"))
        robust = np.array([True] * 7 + [False] * 3)
        store.commit_shard(cell, 0, ShardResult(10, {"clean_errors": 1, "successes": 2, "robust": 7}, robust))
        result, = store.results(run)
        assert result.counts["robust"] == 7 and result.correct.tolist() == robust.tolist()
    with sqlite3.connect(store_path) as db:
        db.execute("""UPDATE shards SET counts = '{"clean_errors": 1, "successes": 2, "robust": 3}'""")
    db.close()
    with Store(store_path, read_only=True) as store, pytest.raises(StoreError) as error:
        store.results(store.runs()[0])
    assert "shard 0: its bitmap tells 7 robust, its counts 3" in str(error.value)


@pytest.mark.parametrize(("edit", "said"), [
    ("UPDATE runs SET identity = '{bad'", "its identity is not JSON (Expecting property name"),
    ("UPDATE runs SET identity = '[1]'", "its identity is not a JSON object"),
    ("UPDATE runs SET shard_size = 0", "n_images 10 and shard_size 0 should be positive integers"),
    ("UPDATE runs SET n_images = 0", "n_images 0 and shard_size 10 should be positive integers"),
    ("UPDATE cells SET variant = '{bad'", "cell clean: its variant is not JSON"),
    ("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'", "its schema version is 'abc'"),
])
def test_a_run_cell_or_meta_row_edited_by_hand_is_a_one_line_error(store_path, edit, said):
    """Tracebacks (JSONDecodeError, ZeroDivisionError, ValueError), where a damaged shard row was one
    line already."""
    with Store(store_path) as store:
        run = open_run(store, n_images=10, shard_size=10)
        store.commit_shard(store.cell_id(run.id, CellKey("clean")), 0, shard())
    with sqlite3.connect(store_path) as db:
        db.execute(edit)
    db.close()
    report = cli("report", "--store", store_path)
    assert report.exit_code == 1 and "Traceback" not in report.output, report.output
    assert said in report.stderr.strip().splitlines()[-1], report.stderr


def test_a_store_whose_table_is_gone_is_a_one_line_error(store_path):
    """Reads are as clear as writes: a damaged store (here its shards table dropped) names itself."""
    with Store(store_path) as store:
        run = open_run(store)
        store.commit_shard(store.cell_id(run.id, CellKey("clean")), 0, shard())
    with sqlite3.connect(store_path) as db:
        db.execute("DROP TABLE shards")
    db.close()
    with Store(store_path, read_only=True) as store, pytest.raises(StoreError) as error:
        store.results(store.runs()[0])
    assert str(error.value).startswith(f"store {store_path} is damaged (no such table: shards): what it "
                                       "holds cannot be read")
    report = cli("report", "--store", store_path)
    assert report.exit_code == 1 and "Traceback" not in report.output
    assert report.stderr.strip().splitlines()[-1].startswith(f"Error: store {store_path} is damaged")


def test_the_advice_for_a_damaged_store_saves_its_rows(store_path, tmp_path):
    """A page of the store overwritten: the command the error gives makes a store that reads, where
    the sqlite3 shell has .recover (it named the store without its folder, and no database to
    write the SQL to)."""
    with Store(store_path) as store:
        run = open_run(store, n_images=400, shard_size=2)
        cell = store.cell_id(run.id, CellKey("clean"))
        for index in range(200):
            store.commit_shard(cell, index, shard())
    data = bytearray(store_path.read_bytes())  # its last page: one of the shards' leaves
    data[-4096:] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    store_path.write_bytes(bytes(data))
    report = cli("report", "--store", store_path)
    said = one_line_error(report)
    saved = store_path.with_name("results-saved.db")
    assert f"is damaged (database disk image is malformed): what it holds cannot be read; `sqlite3 " \
           f"{store_path} .recover | sqlite3 {saved}` may save the rows it can read in a new store" in said
    # .recover reads pages through sqlite_dbpage, which Debian's sqlite3 3.40 shell lacks
    pages = shutil.which("sqlite3") and subprocess.run(["sqlite3", ":memory:", "SELECT 1 FROM sqlite_dbpage"],
                                                       capture_output=True, check=False).returncode == 0
    if not pages:
        pytest.skip("no sqlite3 shell with .recover here to follow the advice with")
    sql = subprocess.run(["sqlite3", str(store_path), ".recover"], capture_output=True, check=False).stdout
    subprocess.run(["sqlite3", str(saved)], input=sql, check=True)
    with Store(saved, read_only=True) as store:
        (kept,) = store.runs()
        kept_shards = store.done_shards(store.cells(kept.id)[0][0])
    assert 0 < len(kept_shards) < 200  # the rows of the other pages


@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_a_store_named_as_the_wal_of_another_is_refused(store_path, demo_val, suffix):
    """report leaves an empty s.db-wal; eval --store s.db-wal made a store of it, which the next
    eval on s.db deleted (SQLite resets a -wal without a header)."""
    with Store(store_path) as store:
        open_run(store)
    companion = Path(f"{store_path}{suffix}")
    before = companion.read_bytes() if companion.exists() else None
    with pytest.raises(StoreError, match=rf"store path {re.escape(str(companion))} is the {suffix} file that "
                                         rf"SQLite keeps beside the database {re.escape(str(store_path))}: "
                                         "results stored there would be deleted"):
        Store(companion)
    said = one_line_error(cli(*eval_args(demo_val, companion)))
    assert said.startswith(f"Error: store path {companion} is the {suffix} file"), said
    assert (companion.read_bytes() if companion.exists() else None) == before  # left as it was
    # a store of that name beside a file that is no database, or itself a store: a store
    paper = store_path.with_name("paper")
    paper.write_text("notes")
    with Store(Path(f"{paper}{suffix}")):
        pass
    exp = store_path.with_name("exp")
    with Store(Path(f"{exp}{suffix}")) as store:  # a store named exp-wal, then a store exp beside it:
        open_run(store)
    with pytest.raises(StoreError, match=rf"beside the store {re.escape(str(exp))} is a database "
                                         rf"exp{suffix}, which SQLite would take for exp's {suffix} file"):
        Store(exp)  # SQLite reset it as exp's -wal, deleting the runs
    with Store(Path(f"{exp}{suffix}")) as store:
        assert len(store.runs()) == 1


def test_a_cell_read_on_some_shards(store_path):
    """`report` reads a stopped run's cells on the shards they all have: filtered in SQL, or (more
    shards than SQLite binds at once) after reading; the same either way."""
    with Store(store_path) as store:
        run = open_run(store, n_images=1400, shard_size=2)
        cell = store.cell_id(run.id, CellKey("clean"))
        for i in range(700):
            store.commit_shard(cell, i, ShardResult(2, {"top1_errors": i % 2}, np.array([i % 2 == 0, True]),
                                                    None))
        few, many = range(0, 700, 7), range(1, 700)
        for shards in (few, many):
            result = store.cell_result(cell, CellKey("clean"), run.n_shards, shards)
            assert result.shards == list(shards) and result.n == 2 * len(shards)
            assert result.counts["top1_errors"] == sum(i % 2 for i in shards) and not result.complete
            assert result.correct.tolist() == [b for i in shards for b in (i % 2 == 0, True)]


def test_under_torchrun_a_read_only_store_missing_shards_stops_before_any_rank_computes(store_path):
    """Rank 0 refuses as one process does, and hands the reason to the other ranks (no round of
    compute whose shards could not be stored): a stop they wait on until rank 0 has said it."""
    from types import SimpleNamespace

    from robustbench_gcp.engine.distributed import execute_distributed

    with Store(store_path) as store:
        run = open_run(store, n_images=4, shard_size=2)
        store.commit_shard(store.cell_id(run.id, CellKey("clean")), 0, shard())
    sent = []
    job = SimpleNamespace(is_main=True, rank=0, world_size=2,
                          stop_others=lambda why, before_work: sent.append((why, before_work)))
    task = SimpleNamespace(keys=(CellKey("clean"),), source=None)
    with Store(store_path, read_only=True) as store, pytest.raises(StoreError) as error:
        execute_distributed([task], None, store, store.runs()[0], None, None, None, job)
    assert "1 shard still to compute" in str(error.value) and sent == [(str(error.value), True)]


def test_a_read_only_file_is_read_without_a_shm_file(store_path):
    """A .db file that no user may write is opened immutable (no -wal beside it): SQLite leaves no
    -shm file, which would get the file's read-only mode and block writes once the file is writable
    again. A file its owner may write keeps the locks: a writer may be at work."""
    from robustbench_gcp.store import sqlite_file

    with Store(store_path) as store:
        open_run(store)
    for side in ("-wal", "-shm"):
        Path(f"{store_path}{side}").unlink(missing_ok=True)
    assert sqlite_file._read_only_uri(store_path).endswith("?mode=ro")
    store_path.chmod(0o444)
    assert sqlite_file._read_only_uri(store_path).endswith("?mode=ro&immutable=1")
    with Store(store_path, read_only=True) as store:
        assert len(store.runs()) == 1
    assert not Path(f"{store_path}-shm").exists()
    # an empty -wal holds nothing (a reader of 0.7.29 and before left one): still read without locks
    Path(f"{store_path}-wal").write_bytes(b"")
    assert sqlite_file._read_only_uri(store_path).endswith("?mode=ro&immutable=1")
    Path(f"{store_path}-wal").write_bytes(b"x" * 32)
    assert sqlite_file._read_only_uri(store_path).endswith("?mode=ro")


def test_reading_a_store_leaves_no_wal_or_shm_beside_it(store_path):
    """A read-only connection cannot delete the -wal and -shm files it creates: report left two empty
    files beside a store that its run had tidied. A writer at work keeps its own."""
    with Store(store_path) as store:
        open_run(store)
    sides = [Path(f"{store_path}{side}") for side in ("-wal", "-shm")]
    assert not any(side.exists() for side in sides)
    with Store(store_path, read_only=True) as reader:
        assert len(reader.runs()) == 1
        assert all(side.exists() for side in sides)  # SQLite's, while it reads
    assert not any(side.exists() for side in sides)
    with Store(store_path) as writer:
        writer.db.execute("PRAGMA wal_autocheckpoint=0")
        writer.run({**IDENTITY, "seed": 9}, model="m2", arch="demo-gap", checkpoint=None, data="d",
                   n_images=20, shard_size=2)
        with Store(store_path, read_only=True) as reader:
            assert len(reader.runs()) == 2
        assert Path(f"{store_path}-wal").stat().st_size > 0  # the writer's pages, untouched
        writer.run({**IDENTITY, "seed": 10}, model="m3", arch="demo-gap", checkpoint=None, data="d",
                   n_images=20, shard_size=2)
    assert not any(side.exists() for side in sides)
    with Store(store_path, read_only=True) as reader:
        assert len(reader.runs()) == 3


def test_a_store_read_without_locks_that_another_process_writes_is_an_error(store_path):
    """A reader that cannot write the folder (or no user the file) reads without SQLite's locks; a
    writer through another path (a read-only mount of a folder the host writes) changed the file
    under it, and it returned a mix of two states (2 runs of 7, 86 shards of 246) without a word."""
    with Store(store_path) as store:
        open_run(store)
    for side in ("-wal", "-shm"):
        Path(f"{store_path}{side}").unlink(missing_ok=True)
    store_path.chmod(0o444)
    with Store(store_path, read_only=True) as reader:
        assert len(reader.runs()) == 1
        store_path.chmod(0o644)  # the owner, elsewhere, writes on
        with Store(store_path) as writer:
            writer.run({**IDENTITY, "seed": 9}, model="m2", arch="demo-gap", checkpoint=None, data="d",
                       n_images=20, shard_size=2)
        with pytest.raises(StoreError, match=rf"^store {re.escape(str(store_path))} changed while it was "
                                             "read: another process writes it"):
            reader.runs()


def test_a_relative_store_read_without_locks_reads_on_after_a_change_of_folder(store_path, monkeypatch):
    """The check of the file named it as given: after a library user changed folder, every read said
    the store had changed."""
    with Store(store_path) as store:
        open_run(store)
    for side in ("-wal", "-shm"):
        Path(f"{store_path}{side}").unlink(missing_ok=True)
    store_path.chmod(0o444)
    monkeypatch.chdir(store_path.parent)
    with Store(store_path.name, read_only=True) as reader:
        monkeypatch.chdir(store_path.parent.parent)
        assert len(reader.runs()) == 1


def test_a_read_only_file_system_is_named(store_path, monkeypatch):
    import os
    from types import SimpleNamespace

    from robustbench_gcp.store import sqlite_file

    with Store(store_path) as store:
        open_run(store)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_flag=os.ST_RDONLY))
    assert sqlite_file.read_only_reason(store_path, False) == "its file system is read-only"
    monkeypatch.setattr(os, "statvfs", lambda path: SimpleNamespace(f_flag=0))
    assert sqlite_file.read_only_reason(store_path, False) == "the file is read-only"


def test_report_on_a_pipe_says_it_is_not_a_file(tmp_path):
    pipe = tmp_path / "s.db"
    os.mkfifo(pipe)
    out = cli("report", "--store", pipe)
    assert out.exit_code == 1 and out.stderr.strip().splitlines()[-1] == (
        f"Error: store {pipe} is not a file (a folder, a pipe ...): give the .db file of a store")


@pytest.mark.parametrize("sql", [
    "ALTER TABLE runs RENAME TO runs_real; CREATE VIEW runs AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
    "SELECT x + 1 FROM c) SELECT r.* FROM runs_real r, c",
    "CREATE TRIGGER t AFTER INSERT ON shards BEGIN DELETE FROM runs; END",
])
def test_a_store_with_views_or_triggers_is_refused_before_any_query(store_path, sql):
    """A store someone hands you is an input: a view in the runs table's place made report query
    without end, deaf to Ctrl-C and SIGTERM (security audit); a trigger would run its SQL on our
    writes. gcp-robust makes neither."""
    with Store(store_path) as store:
        open_run(store)
    with sqlite3.connect(store_path) as db:
        db.executescript(sql)
    db.close()
    report = cli("report", "--store", store_path)
    assert report.exit_code == 1 and "Traceback" not in report.output, report.output
    assert "is not a results store gcp-robust wrote (it holds a " in report.stderr


def test_a_lease_owner_edited_by_hand_is_not_a_traceback(store_path):
    """leases.is_alive unpacked host:pid:token: 'bad' was a ValueError traceback (security audit),
    and report's Store.computing then an IndexError (review)."""
    from robustbench_gcp.store.leases import is_alive, this_host

    assert is_alive("bad") and is_alive("a:b") and is_alive(f"{this_host()}:x:t")
    with Store(store_path) as store:
        run = open_run(store)
        cell = store.cell_id(run.id, CellKey("clean"))
        store.commit_shard(cell, 0, shard())
    with sqlite3.connect(store_path) as db:
        db.executemany("INSERT INTO leases VALUES (?, ?, ?, ?)",
                       [(cell, 1, "bad", time.time() + 1000), (cell, 2, "h:12x:t", time.time() + 1000)])
    db.close()
    with Store(store_path, read_only=True) as store:
        assert store.computing(run.id) == []
    report = cli("report", "--store", store_path)
    assert "Traceback" not in report.output and report.exit_code == 0, report.output


def test_a_wal_removed_under_a_writer_is_named(tmp_path):
    """SQLite says only "disk I/O error" when the -wal a -shm indexes was deleted while a process wrote
    the store: the message named the disk or a file size limit."""
    from robustbench_gcp.store.sqlite_file import open_store_file

    path = tmp_path / "s.db"
    writer, _, _ = open_store_file(path, timeout=5, read_only=False)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO meta (key, value) VALUES ('note', 'x')")
        writer.execute("COMMIT")
        Path(f"{path}-wal").unlink()
        with pytest.raises(StoreError) as caught:
            Store(path, read_only=True).close()
        assert str(caught.value) == (
            f"store {path}: its s.db-wal file was removed or moved while a process was writing the store "
            "(the shards it stored since its last checkpoint are in that file): let that process finish, "
            "or stop it, then re-run the same command; what the .db file holds is kept")
    finally:
        writer.close()


@pytest.mark.skipif(sys.platform == "win32", reason="needs setrlimit")
def test_a_file_size_limit_is_not_said_to_be_a_removed_wal(tmp_path):
    """Under `ulimit -f 8` SQLite cannot grow a new store's -shm (32 KB) and says "disk I/O error";
    the -shm it leaves (indexing no frame) beside an empty -wal was taken for a removed -wal."""
    path = tmp_path / "s.db"
    Store(path).close()
    script = ("import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))\n"
              "from robustbench_gcp.errors import StoreError\nfrom robustbench_gcp.store import Store\n"
              f"try:\n    Store({str(path)!r}, read_only=True).close()\n"
              "except StoreError as e:\n    print(e)")
    said = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert said.stdout.strip() == (
        f"store {path}: the system failed to read or write it (disk I/O error: the disk, the file system, "
        "or a limit on file sizes); the shards stored so far are kept: mend the cause, then re-run the "
        "same command"), said.stdout + said.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads Linux's /proc")
def test_a_lease_whose_pid_another_process_now_has_is_taken_over(store_path):
    """A killed run's pid given to another process (pids wrap around) held its leases for two
    minutes: the owner now carries its process's start time, and another start time is another
    process. Owners without one (0.7.16's) are judged by the pid alone, as before."""
    import subprocess

    from robustbench_gcp.store.leases import is_alive, new_owner, start_time, this_host

    mine = new_owner()
    assert mine.rpartition(".")[2] == start_time(os.getpid()) and is_alive(mine)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = start_time(child.pid)
        assert started is not None and started.isdigit()
        assert is_alive(f"{this_host()}:{child.pid}:0dead0.{started}")
        assert is_alive(f"{this_host()}:{child.pid}:0dead0")
        reused = f"{this_host()}:{child.pid}:0dead0.{int(started) - 1}"  # an earlier process's
        assert not is_alive(reused)
        assert _taken_over_at_once(store_path, reused)
        # a name with ") " in it (Linux's comm, in brackets, may hold both) moves no field
        renamed = subprocess.Popen([sys.executable, "-c", "import time; open('/proc/self/comm', 'w')"
                                    ".write('a) b ) c'); time.sleep(60)"])
        try:
            before = start_time(renamed.pid)
            deadline = time.monotonic() + 30
            while b") c" not in Path(f"/proc/{renamed.pid}/stat").read_bytes():
                assert time.monotonic() < deadline, "the child never renamed itself"
                time.sleep(0.05)
            assert before is not None and start_time(renamed.pid) == before
        finally:
            renamed.kill()
            renamed.wait()
    finally:
        child.kill()
        child.wait()


def test_the_wait_for_other_processes_counts_cells_and_a_unit_stored_first_elsewhere_is_reused(
        tmp_path, demo_val):
    """An attack at three epsilons is one task of three cells: the units held are 3 per shard (the
    line counted the tasks, 4 where 12 were held). A unit committed again after another process
    stored it counts as reused, not computed (the first write wins)."""
    import threading
    from types import SimpleNamespace

    from robustbench_gcp import evaluate
    from robustbench_gcp.engine.runner import ExecutionStats, ProgressHook, commit_unit

    path = tmp_path / "s.db"
    kw = dict(suite="adversarial", attacks="fgsm", epsilons="1/255,2/255,4/255", data=demo_val,
              class_order="sorted", workers=0, device="cpu", store=path, shard_size=10, batch_size=5,
              limit=40)
    evaluate("demo-gap", **kw)
    with sqlite3.connect(path) as db:  # a run stopped after its clean cell
        fgsm = [row[0] for row in db.execute("SELECT id FROM cells WHERE kind = 'adversarial'")]
        db.execute(f"DELETE FROM shards WHERE cell_id IN ({','.join('?' * len(fgsm))})", fgsm)
    assert len(fgsm) == 3
    held, waited, claims, said = threading.Event(), threading.Event(), [], []

    def holder():  # another process's store leases the task on its 4 shards, and stops once waited for
        with Store(path) as other:
            claims.extend(other.claim(s, [fgsm]) for s in range(4))
            held.set()
            waited.wait(60)

    class Hook(ProgressHook):
        def say(self, text):
            said.append(text)
            waited.set()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(60)
    assert claims == [[Claim.MINE]] * 4
    report = evaluate("demo-gap", progress=Hook(), **kw)
    thread.join()
    assert [text.split(";")[0] for text in said] == ["waiting for 12 (cell, shard) units that other "
                                                     "processes hold"]
    assert report.computed["computed"] == 12
    with Store(path) as store:  # shard 0 of the three cells again, as another process would
        stats = ExecutionStats(units_total=3)
        task = SimpleNamespace(keys=["a", "b", "c"])
        commit_unit(store, dict(zip(task.keys, fgsm)), task, 0, [shard(10)] * 3, 1.0, stats)
        assert (stats.units_computed, stats.units_skipped) == (0, 3)


def test_leases_of_a_claim_that_failed_after_its_commit_are_released_on_close(store_path, monkeypatch):
    """A claim whose transaction committed and that then failed (a stop, or no thread for the
    heartbeat) left its leases when the store closed: close released only after a heartbeat began."""
    from robustbench_gcp.store import results_store

    def no_thread(*args, **kwargs):
        raise RuntimeError("can't start new thread")

    with Store(store_path) as store:
        run = open_run(store)
        cell = store.cell_id(run.id, CellKey("clean"))
    monkeypatch.setattr(results_store, "Heartbeat", no_thread)
    store = Store(store_path)
    with pytest.raises(RuntimeError, match="new thread"):
        store.claim(0, [[cell]])
    assert store.db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 1
    store.close()
    with sqlite3.connect(store_path) as db:
        assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
