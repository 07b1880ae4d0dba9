"""The SQLite store: round trips, resumable shards, several writers."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from robustbench_gcp.errors import StoreError
from robustbench_gcp.store import CellKey, ShardResult, Store

IDENTITY = {"arch": "resnet18-gap", "weights": "abc", "seed": 0}


def open_run(store, n_images=20, shard_size=7):
    return store.run(IDENTITY, model="m", arch="resnet18-gap", checkpoint=None, data="d",
                     n_images=n_images, shard_size=shard_size)


def test_run_is_found_again_by_identity(store_path):
    with Store(store_path) as store:
        run = open_run(store)
        assert open_run(store).id == run.id
        other = store.run({**IDENTITY, "seed": 1}, model="m", arch="a", checkpoint=None, data=None,
                          n_images=20, shard_size=7)
        assert other.id != run.id and run.n_shards == 3


def test_a_run_found_again_under_another_label_takes_it(store_path):
    """The same weights and settings evaluated under a new ``--name``: one run, whose reports show
    the new name; a read-only store finds it under its stored label and writes nothing."""
    def named(store, model):
        return store.run(IDENTITY, model=model, arch="resnet18-gap", checkpoint=None, data="d",
                         n_images=20, shard_size=7)

    with Store(store_path) as store:
        first = named(store, "m")
        again = named(store, "mine")
        assert again.id == first.id and again.model == "mine"
        assert [run.model for run in store.runs()] == ["mine"]
    with Store(store_path, read_only=True) as store:
        assert named(store, "theirs").model == "mine"
    with Store(store_path) as store:
        assert [run.model for run in store.runs()] == ["mine"]


def test_shards_combine_in_order_with_bitmaps_and_values(store_path):
    rng = np.random.default_rng(0)
    correct = rng.random(20) < 0.5
    values = rng.random((20, 2)).astype(np.float32)
    key = CellKey("imagenet-c", "fog", "3", '{"source":"torch"}')
    with Store(store_path) as store:
        run = open_run(store)
        cell = store.cell_id(run.id, key)
        for shard, (a, b) in reversed(list(enumerate([(0, 7), (7, 14), (14, 20)]))):
            result = ShardResult(b - a, {"top1_errors": int((~correct[a:b]).sum()), "x": 0.5},
                                 correct[a:b], values[a:b])
            assert store.commit_shard(cell, shard, result)
        assert store.done_shards(cell) == {0, 1, 2}
        combined = store.cell_result(cell, key, run.n_shards)
    assert combined.complete and combined.n == 20 and combined.shards == [0, 1, 2]
    assert combined.counts == {"top1_errors": int((~correct).sum()), "x": 1.5}
    np.testing.assert_array_equal(combined.correct, correct)
    np.testing.assert_array_equal(combined.extra, values)


def test_first_write_wins_and_partial_cells_are_incomplete(store_path):
    key = CellKey("clean")
    with Store(store_path) as store:
        run = open_run(store)
        cell = store.cell_id(run.id, key)
        assert store.commit_shard(cell, 1, ShardResult(7, {"top1_errors": 3}, np.arange(7) >= 3))
        assert not store.commit_shard(cell, 1, ShardResult(7, {"top1_errors": 5}, np.arange(7) >= 5))
        result = store.cell_result(cell, key, run.n_shards)
    assert not result.complete and result.counts == {"top1_errors": 3}


def test_bad_shapes_are_refused(store_path):
    with Store(store_path) as store:
        cell = store.cell_id(open_run(store).id, CellKey("clean"))
        with pytest.raises(StoreError, match="expected \\(7,\\)"):
            store.commit_shard(cell, 0, ShardResult(7, {}, np.ones(6, bool)))
        with pytest.raises(StoreError, match="counts must be numbers"):
            store.commit_shard(cell, 0, ShardResult(7, {"a": "1"}))
        with pytest.raises(StoreError, match="have 6 rows, expected 7"):
            store.commit_shard(cell, 0, ShardResult(7, {}, None, np.ones((6, 2))))
        with pytest.raises(StoreError, match="counts must be numbers, got True"):  # bool is an int
            store.commit_shard(cell, 0, ShardResult(7, {"top1_errors": True}, np.ones(7, bool)))
        with pytest.raises(StoreError, match="shard 0: counts top1_errors come with the per-image bitmap"):
            store.commit_shard(cell, 0, ShardResult(7, {"top1_errors": 1}))
        assert store.done_shards(cell) == set()


def test_unusable_store_paths(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        Store(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing" / "x.db")
    # a link into a missing folder: SQLite's "unable to open database file" said nothing of it
    (tmp_path / "link.db").symlink_to("nowhere/x.db")
    link, folder = tmp_path / "link.db", tmp_path / "nowhere"
    with pytest.raises(StoreError, match=rf"^store {link} is a symbolic link to nowhere/x.db, whose folder "
                                         rf"{folder} does not exist$"):
        Store(tmp_path / "link.db")
    (tmp_path / "there").mkdir()
    (tmp_path / "ok.db").symlink_to("there/x.db")  # a link to a file to be made: made there
    Store(tmp_path / "ok.db").close()
    assert (tmp_path / "there" / "x.db").is_file()
    (tmp_path / "link.db").unlink()
    (tmp_path / "ok.db").unlink()
    shutil.rmtree(tmp_path / "there")
    fifo = tmp_path / "pipe"  # a device or a pipe: refused, and no <path>-journal left beside it
    os.mkfifo(fifo)
    with pytest.raises(StoreError, match="is not a regular file"):
        Store(fifo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot use .*junk.db as a results store: file is not a database "
                                         r"\(another kind of file, left as it is\): give another --store$"):
        Store(junk)
    assert junk.read_bytes() == b"this is not sqlite" * 100
    old = tmp_path / "old.db"
    Store(old).close()
    with sqlite3.connect(old) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="schema version 99, this gcp-robust uses 1; it was written by a "
                                         "newer gcp-robust: upgrade this one, or use another --store file"):
        Store(old)


def test_store_names_sqlite_reads_otherwise_are_the_files_named(tmp_path, monkeypatch):
    """`file:x.db` wrote to x.db (SQLite took the name for a URI) and `:memory:` kept nothing (the
    results lost, an empty file of that name left); a store under a file said its folder was
    read-only."""
    monkeypatch.chdir(tmp_path)
    for name in ("file:x.db", ":memory:"):
        with Store(Path(name)) as store:
            store.run({"model": "m"}, model="m", arch="m", checkpoint=None, data=None, n_images=4,
                      shard_size=4)
        with Store(Path(name), read_only=True) as store:
            assert [r.model for r in store.runs()] == ["m"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == \
        [":memory:", "file:x.db"]
    (tmp_path / "a_file").write_text("")
    with pytest.raises(StoreError, match=r"^cannot create store a_file/s\.db: a_file is a file, not a "
                                         r"folder$"):
        Store(Path("a_file/s.db"))


def _opener(folder, rounds, barrier):
    for i in range(rounds):
        barrier.wait(60)
        Store(folder / f"fresh-{i}.db", timeout=60).close()


def test_many_processes_creating_one_store_at_once(tmp_path):
    """Several processes creating the same new file race to switch it to WAL; none may fail.

    SQLite answers "database is locked" at once, without waiting, to the loser of that race; before the
    retry in Store.__init__ about one open in seventy failed here.
    """
    workers, rounds = 6, 40
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_opener, args=(tmp_path, rounds, barrier)) for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * workers
    for i in range(rounds):
        with Store(tmp_path / f"fresh-{i}.db") as store:
            assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _writer(path, worker, n):
    with Store(path, timeout=120) as store:
        run = open_run(store, n_images=7 * n, shard_size=7)
        cell = store.cell_id(run.id, CellKey("imagenet-c", "fog", str(worker), "{}"))
        for shard in range(n):
            errors = shard % 8  # the bitmap's zeros
            store.commit_shard(cell, shard, ShardResult(7, {"top1_errors": errors}, np.arange(7) >= errors))


def test_two_processes_writing_one_file(store_path):
    n = 40
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(store_path, w, n)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(store_path) as store:
        run = open_run(store, n_images=7 * n, shard_size=7)
        cells = store.cells(run.id)
        assert len(cells) == 2
        for cell_id, key in cells:
            result = store.cell_result(cell_id, key, run.n_shards)
            assert result.complete and result.counts["top1_errors"] == sum(s % 8 for s in range(n))
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_baseline_name_is_checked_and_given_in_one_transaction(store_path):
    """Two processes naming two runs at once both read the name as free and both said "stored as
    baseline": the last one took it. The check and the write are one transaction now."""
    with Store(store_path) as a, Store(store_path) as b:
        first = open_run(a)
        second = b.run({**IDENTITY, "seed": 1}, model="m", arch="a", checkpoint=None, data=None,
                       n_images=20, shard_size=7)
        assert a.set_baseline("base", first.id, replace=False) is None
        held = b.set_baseline("base", second.id, replace=False)
        assert held is not None and held.id == first.id and b.baseline("base").id == first.id
        assert b.set_baseline("base", first.id, replace=False) is None  # its own run: the same name
        assert b.set_baseline("base", second.id) is None and a.baseline("base").id == second.id
