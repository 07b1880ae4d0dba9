"""A run killed with SIGKILL resumes and gives exactly the counts of an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

from robustbench_gcp.store import Store


def command(image_folder, checkpoint, store):
    return [sys.executable, "-m", "robustbench_gcp", "eval", "--model", "resnet18-gap",
            "--checkpoint", str(checkpoint), "--data", str(image_folder), "--store", str(store),
            "--suite", "imagenet-c", "--corruptions", "gaussian_noise,shot_noise,contrast,brightness",
            "--severities", "2,4", "--shard-size", "4", "--batch-size", "1", "--workers", "0",
            "--format", "json"]


def committed(store):
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM shards").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def stored_cells(store):
    with Store(store) as s:
        (run,) = s.runs()
        return {key: s.cell_result(cid, key, run.n_shards) for cid, key in s.cells(run.id)}


def test_sigkill_loses_at_most_the_shard_in_flight(image_folder, gap_checkpoint, tmp_path):
    env = {**os.environ, "GIT_PYTHON_REFRESH": "quiet"}
    killed_store = tmp_path / "killed.db"
    proc = subprocess.Popen(command(image_folder, gap_checkpoint, killed_store), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    total = 9 * 3  # (clean + 4 corruptions x 2 severities) x 3 shards of 4 images
    deadline = time.time() + 120
    while committed(killed_store) < 1:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no shard committed within 120 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    at_kill = committed(killed_store)
    assert 1 <= at_kill < total, f"{at_kill} of {total} shards were committed before the kill"

    # The .db file copied without its -wal file is a store: the schema, and the shards of the last
    # checkpoint (created with the schema, then every few minutes: none in so short a run).
    alone = tmp_path / "alone" / "killed.db"
    alone.parent.mkdir()
    shutil.copyfile(killed_store, alone)
    with Store(alone, read_only=True) as copy:
        assert copy.db.execute("SELECT COUNT(*) FROM shards").fetchone()[0] <= at_kill

    resumed = subprocess.run(command(image_folder, gap_checkpoint, killed_store), env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert committed(killed_store) == total

    clean_store = tmp_path / "uninterrupted.db"
    fresh = subprocess.run(command(image_folder, gap_checkpoint, clean_store), env=env,
                           capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    a, b = stored_cells(killed_store), stored_cells(clean_store)
    assert a.keys() == b.keys() and len(a) == 9
    for key in a:
        assert a[key].complete and b[key].complete
        assert a[key].counts == b[key].counts, key
        assert (a[key].correct == b[key].correct).all(), key
