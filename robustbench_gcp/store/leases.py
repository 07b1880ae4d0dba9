"""Shard leases: several processes on one machine share the work of a run instead of repeating it.

Before computing shard ``s`` of a task, a process *claims* it in a write transaction: for each cell of
the task it inserts a row ``(cell_id, s, owner, expires)`` into the ``leases`` table, unless the shard
is stored already (:attr:`Claim.DONE`) or another owner holds an unexpired lease on one of the cells
(:attr:`Claim.BUSY`). Committing the shard deletes its leases in the same transaction. The owner is
``host:pid:random.start`` (``start``: when the process started); a :class:`Heartbeat` thread renews
the owner's leases every quarter of the lease time, so a lease expires only when its process is gone
(killed, or its machine asleep) and another process then takes the shard over. A lease whose owner
is a process of this host (host name and boot id) that no longer exists, or whose pid another
process has since been given, is taken over at once (a re-run after a SIGKILL does not wait for the
expiry). Should two processes compute a shard all the same, the first commit wins and the
second is ignored, so the stored numbers never depend on who computed them.
"""

from __future__ import annotations

import enum
import functools
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

LEASE_SECONDS = 120.0  # a lease not renewed for this long is taken over


class Claim(enum.Enum):
    """What a claim on one task's shard found."""

    MINE = "mine"  # leased to this process: compute it
    DONE = "done"  # every cell of it is stored already
    BUSY = "busy"  # another live process holds it


#: the owners this process has made (its stores')
_OURS: set[str] = set()


def new_owner() -> str:
    """``host:pid:random.start``: unique among the processes sharing a store (``host``:
    :func:`this_host`; ``.start``: the process's :func:`start_time`, where Linux tells it)."""
    start = start_time(os.getpid())
    owner = f"{this_host()}:{os.getpid()}:{secrets.token_hex(4)}{'' if start is None else '.' + start}"
    _OURS.add(owner)
    return owner


def start_time(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux's ``/proc/<pid>/stat`` field
    22), or None (not Linux; no such process). With the pid it names one process, whatever pid
    later comes back to: a killed run's pid given to another process kept its leases for their
    two minutes."""
    fields = _stat_fields(pid)
    return fields[19].decode() if len(fields) > 19 else None


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` from the third (the state) on; [] where there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()  # the name, in brackets, may hold spaces
    except OSError:  # not Linux, or gone meanwhile
        return []


@functools.cache
def this_host() -> str:
    """Where this process's pids mean something: the host name and, where Linux tells it, the
    kernel's boot id. Two machines of one host name sharing a store (nodes cloned from one image)
    took each other's live leases over, reading the other's pids as their own. A container
    restarted on the same kernel keeps its host (its earlier life's leases, pid 1 too, are taken
    over at once); containers of one host name on one kernel in separate pid namespaces still
    cannot be told apart.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:  # not Linux: the host name alone
        return socket.gethostname()
    return f"{socket.gethostname()}/{boot}"


def claim(db: sqlite3.Connection, owner: str, shard: int, groups: Sequence[Sequence[int]],
          lease_seconds: float) -> list[Claim]:
    """Lease shard ``shard`` of each group of cells (a task's cells) to ``owner`` where it is neither
    stored nor held by another owner. Call it inside a write transaction."""
    now = time.time()
    claims = []
    for cells in groups:
        marks = ",".join("?" * len(cells))
        stored = db.execute(f"SELECT COUNT(*) FROM shards WHERE shard = ? AND cell_id IN ({marks})",
                            (shard, *cells)).fetchone()[0]
        if stored == len(set(cells)):
            claims.append(Claim.DONE)
            continue
        holders = db.execute(f"SELECT owner FROM leases WHERE shard = ? AND cell_id IN ({marks}) "
                             "AND owner != ? AND expires > ?", (shard, *cells, owner, now)).fetchall()
        if any(is_alive(holder) for (holder,) in holders):
            claims.append(Claim.BUSY)
            continue
        db.executemany("INSERT OR REPLACE INTO leases (cell_id, shard, owner, expires) VALUES (?, ?, ?, ?)",
                       [(cell, shard, owner, now + lease_seconds) for cell in cells])
        claims.append(Claim.MINE)
    return claims


def is_alive(owner: str) -> bool:
    """False only for an owner that was a process of this host (:func:`this_host`) and is gone
    (elsewhere: unknown, True).
    An owner with this process's pid that this process did not make is gone too: a container
    restarted after a SIGKILL runs gcp-robust again as the same pid (1), on the same host name."""
    parsed = _parsed(owner)
    if parsed is None or parsed[0] != this_host():  # one we did not write; another host's
        return True
    _, pid, started = parsed
    if pid == os.getpid():
        return owner in _OURS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process; a pid beyond the system's
        return True
    if started is not None and start_time(pid) not in (None, started):
        return False  # its pid is another process's now
    return not _is_zombie(pid)


def owner_pid(owner: str) -> int | None:
    """The process id of a lease's ``owner`` (``host:pid:token``), or None for an owner that
    gcp-robust did not write (a store edited by hand)."""
    parsed = _parsed(owner)
    return None if parsed is None else parsed[1]


def _parsed(owner: str) -> tuple[str, int, str | None] | None:
    """An owner's host, pid and process start time (None in owners of 0.7.16 and before, whose
    token has none), or None for an owner that gcp-robust did not write."""
    parts = str(owner).rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    host, pid, token = parts
    return host, int(pid), token.rpartition(".")[2] if "." in token else None


def _is_zombie(pid: int) -> bool:
    """A killed process whose parent has not collected it yet (Linux's state Z, or X): ``kill(pid,
    0)`` still finds it, but its leases are gone with it (a job script that kills ``eval`` and
    starts it again before its ``wait()`` waited for the leases to expire)."""
    return _stat_fields(pid)[:1] in ([b"Z"], [b"X"])


def finish(db: sqlite3.Connection, cell_ids: Sequence[int], shard: int) -> None:
    """Drop the leases of a shard that is now stored (inside the transaction that stores it)."""
    marks = ",".join("?" * len(cell_ids))
    db.execute(f"DELETE FROM leases WHERE shard = ? AND cell_id IN ({marks})", (shard, *cell_ids))


def release(db: sqlite3.Connection, owner: str) -> None:
    """Drop every lease of ``owner`` (a process that stops), so that others take its shards at once."""
    db.execute("DELETE FROM leases WHERE owner = ?", (owner,))


class Heartbeat:
    """Renews an owner's leases from a daemon thread with its own connection, every quarter of the
    lease time, until :meth:`stop`. A failed renewal (the store busy or full, or its connection not
    opened: too many open files) is retried at the next beat."""

    def __init__(self, path: Path, owner: str, lease_seconds: float):
        self.path, self.owner, self.lease_seconds = path, owner, lease_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="gcp-robust-leases", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        every = self.lease_seconds / 4
        db = None
        try:
            while not self._stopped.wait(every):
                try:
                    if db is None:  # opened at a beat, so that a failure to open it is retried at the next
                        db = sqlite3.connect(os.path.abspath(self.path), timeout=every,  # not a URI
                                             isolation_level=None)
                    db.execute("UPDATE leases SET expires = ? WHERE owner = ?",
                               (time.time() + self.lease_seconds, self.owner))
                except sqlite3.Error:
                    pass
        finally:
            if db is not None:
                db.close()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)
