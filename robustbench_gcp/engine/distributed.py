"""Several processes under torchrun: rank 0 owns the store, every rank computes shards.

``torchrun --nproc-per-node N $(which gcp-robust) eval ...`` runs the command
unchanged: the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR ...) is detected, torch.distributed is initialized with gloo, on GPUs too
(``GCP_ROBUST_DIST_BACKEND=nccl`` asks for NCCL there) and the work is shared out:

1. rank 0 opens the SQLite store and drops finished (cell, shard) units; the rest
   goes in rounds of one *load* (a shard of images and the cells that need it) per
   rank, which rank 0 leases in the store (other processes on the store skip them,
   and it theirs) and broadcasts a round ahead;
2. rank r computes load r of each round, decoding its next meanwhile; after every
   round the ranks' counts and bitmaps are gathered on rank 0, which commits them;
   units another process held are leased once the rest is, or found stored;
3. the other ranks never open the store, and only rank 0 prints.

No image is evaluated twice and none is padded in: a load belongs to exactly
one rank, and randomness depends only on (seed, cell, image index), so the
numbers equal a single process's. If a rank dies, the others fail at the next
exchange (gloo notices the closed connection) or when the launcher stops them,
and say so; every round committed before stays, and re-running the command
finishes the rest.

Why gloo on GPUs: the ranks exchange only small Python objects of host data (the
work lists, each shard's counts and bitmaps), never a tensor on a GPU, so NCCL
brings nothing but its costs: every object is copied to the GPU and back, each
rank needs a GPU of its own, and a rank whose peer died may wait inside NCCL, deaf
to SIGTERM, until the launcher's SIGKILL or the timeout (30 minutes by default),
where gloo's broken connection ends the other ranks' waits at once (what
:func:`_wait_for_rank_0` relies on).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import datetime
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from robustbench_gcp.engine.ranks import env_int, launched_by_torchrun
from robustbench_gcp.errors import ConfigError, GcpRobustError

DEFAULT_TIMEOUT = 1800.0  # seconds a rank waits for the others at an exchange
BACKEND_VARIABLE = "GCP_ROBUST_DIST_BACKEND"  # gloo (the default) or nccl (GPUs only)
AFTER_LOST = "finished shards are in the store, re-run the same command to compute the rest"
STORED_ALL = "every result of this run is in the store: re-run the same command to report them"


class RankFailure(GcpRobustError):
    """A rank lost the others, or was stopped by the launcher."""


class RankRefused(RankFailure):
    """Rank 0 refused the run before any work and says why itself: the other ranks stop quietly."""


class RankErrorSent(RankRefused):
    """This rank's error in a round, sent to rank 0 (:class:`_Failed`), which says it: this rank
    stops quietly."""


class RankStopped(RankRefused):
    """The launcher's SIGTERM on a rank other than its machine's first, which says it: this rank
    stops quietly (every rank said it, one line each)."""


@dataclasses.dataclass(frozen=True)
class _Failed:
    """A rank's error in a round, sent to rank 0 in place of its results: rank 0 stores its own and
    the other ranks' results of the round, then stops with it. A rank that left at its error had
    torchrun stop rank 0 midway through its shard, which was lost."""

    kind: str  # "DataError", "ModelCodeError" (raised so on rank 0, with their advice), or another
    message: str
    gone: str | None = None  # a DataError's folder that is gone, as that rank saw it (DataError.gone)

    def error(self, rank: int, world_size: int) -> GcpRobustError:
        from robustbench_gcp.errors import DataError, ModelCodeError

        said = f"rank {rank} of {world_size}: {self.message}"
        error = {"DataError": DataError, "ModelCodeError": ModelCodeError}.get(self.kind, RankFailure)(said)
        if self.gone is not None:
            error.gone = self.gone
        return error


@dataclasses.dataclass(frozen=True)
class _Stop:
    """Rank 0's word, in place of the next round's loads, that a rank failed in this round: the
    other ranks stop quietly (rank 0 says why). They ran into the next broadcast and said they
    "lost contact" with the other ranks."""

    why: str


class Distributed:
    """This process's place in a torchrun job (a process-wide singleton)."""

    _current: Distributed | None = None

    def __init__(self, rank: int, world_size: int, local_rank: int, backend: str, gpu: int | None = None):
        self.rank, self.world_size, self.local_rank, self.backend = rank, world_size, local_rank, backend
        self.gpu = local_rank if gpu is None else gpu  # this rank's GPU on its machine
        self.stopped: str | None = None  # the error that stopped a run of the job: it runs no more
        self._sigterm_before = None  # the SIGTERM handler before this job's (:meth:`_handle_sigterm`)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def get(cls, device: torch.device) -> Distributed | None:
        """The job this process belongs to (initialized on first use), or None outside torchrun."""
        if not launched_by_torchrun():
            return None
        if cls._current is None:
            import torch.distributed as dist

            backend = choose_backend(device)
            timeout = dist_timeout()
            local_rank = env_int("LOCAL_RANK", 0)
            gpu = None
            if device.type == "cuda":
                gpu = rank_gpu(local_rank, torch.cuda.device_count(), backend)
                torch.cuda.set_device(gpu)
            with _killed_by_sigterm():
                try:
                    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
                except (RuntimeError, ValueError) as error:  # DistNetworkError ..., MASTER_ADDR unset
                    raise _join_failure(error, timeout) from None
            cls._current = job = Distributed(dist.get_rank(), dist.get_world_size(), local_rank, backend, gpu)
            job._handle_sigterm()
            atexit.register(_destroy_process_group)
        return cls._current

    @contextlib.contextmanager
    def one_run(self):
        """A run of this job (:func:`robustbench_gcp.pipeline.run`): refused once one has failed, on
        this rank or at rank 0's word. After a failure the ranks no longer agree on what comes next
        (one may wait for rank 0 to leave, or in the first broadcast of the run rank 0 gave up), and
        a library caller that caught the error and ran again paired its collectives with theirs."""
        if self.stopped is not None:
            raise RankFailure(
                f"rank {self.rank} of {self.world_size}: this torchrun job stopped at an error before "
                f"({self.stopped}): its ranks no longer agree on what comes next, so it runs nothing more; "
                "start a new job to compute the rest")
        try:
            yield
        except BaseException as error:
            self.stopped = _first_line(error)
            raise

    def device(self, device: torch.device) -> torch.device:
        """Each rank's own GPU (LOCAL_RANK; shared round-robin under gloo); the CPU stays the CPU."""
        return torch.device("cuda", self.gpu) if device.type == "cuda" else device

    def _handle_sigterm(self) -> None:
        """The launcher's SIGTERM raises :meth:`_stopped` from here on, where it was the command
        line's stop or the system's default; a handler of a library caller's own stays (it was
        replaced, helper-225), and so does an ignored SIGTERM. Main thread only (signal.signal
        raises elsewhere: under a caller's thread the job was set up, the error said as a
        traceback). The handler before is put back when the job is torn down."""
        from robustbench_gcp.engine import stops

        if threading.current_thread() is not threading.main_thread():
            return
        if (before := signal.getsignal(signal.SIGTERM)) in (signal.SIG_DFL, stops.stop):
            signal.signal(signal.SIGTERM, self._stopped)
            self._sigterm_before = before

    def _restore_sigterm(self) -> None:
        before = self._sigterm_before
        if before is not None and threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) == self._stopped:
            signal.signal(signal.SIGTERM, before)

    def _stopped(self, signum, frame):
        """SIGTERM from the launcher: said by each machine's first rank (LOCAL_RANK 0), rank 0's
        included. Nothing when a stop is on its way out already: a Ctrl-C of torchrun reaches each
        rank as SIGINT and SIGTERM together, and this replaced the run's own stop (rank 0's
        "interrupted after N of M shards", a quiet exit elsewhere), helper-226."""
        from robustbench_gcp.engine import stops

        if isinstance(sys.exc_info()[1], KeyboardInterrupt):
            return
        raise stops.record(signum, (RankFailure if self.local_rank == 0 else RankStopped)(
            f"rank {self.rank} of {self.world_size}: stopped by the launcher (signal {signum}): another rank "
            "failed or the job was cancelled; finished shards are in the store, re-run the same command "
            "to compute the rest"
        ))

    def _exchange(self, what: str, operation, *, broadcasting: bool = False, after: str = AFTER_LOST):
        try:
            return operation()
        except RankFailure:
            raise
        except RuntimeError as error:  # DistBackendError, gloo connection errors, timeouts
            if broadcasting and not self.is_main:  # rank 0 failed before the work (its error says so)
                raise RankFailure(
                    f"rank {self.rank} of {self.world_size}: lost contact with rank 0 before it sent the "
                    "work list (if rank 0 stopped, its own error says why); this rank computed nothing "
                    "of this run, and what earlier runs stored is kept"
                ) from None
            first = _first_line(error)
            raise RankFailure(
                f"rank {self.rank} of {self.world_size}: lost contact with the other ranks while {what} "
                f"({first}); {after}"
            ) from None

    def broadcast(self, obj=None, *, before_work: bool = True, what: str = "the work list",
                  after: str = AFTER_LOST):
        """``obj`` from rank 0, on every rank (``before_work``: no rank has computed anything yet);
        ``what`` it is and ``after`` (what became of the results) for the error of a lost rank."""
        import torch.distributed as dist

        box = [obj]
        doing = f"sending {what}" if self.is_main else f"receiving {what}"
        self._exchange(doing, lambda: dist.broadcast_object_list(box, src=0), broadcasting=before_work,
                       after=after)
        return box[0]

    def stop_others(self, why: str, *, before_work: bool) -> None:
        """On rank 0, about to raise ``why``: a :class:`_Stop` in place of what the other ranks wait
        for (a round's loads, the job's end), so that they stop quietly (:func:`_unless_stopped`);
        a rank lost meanwhile changes nothing (rank 0 says ``why`` all the same)."""
        with contextlib.suppress(RankFailure):
            self.broadcast(_Stop(why), before_work=before_work, what="the stop")

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` on rank 0 (None elsewhere)."""
        import torch.distributed as dist

        out = [None] * self.world_size if self.is_main else None
        self._exchange("exchanging results", lambda: dist.gather_object(obj, out, dst=0))
        return out


def _join_failure(error: Exception, timeout: float) -> RankFailure:
    """``init_process_group``'s ``error``, said in a line: the ranks did not all come within
    ``timeout`` seconds, or this one could not join (an address in use: said as a timeout before,
    helper-225)."""
    first = _first_line(error)
    rank, world = os.environ.get("RANK", "?"), os.environ.get("WORLD_SIZE", "?")
    if "timed out" in first.lower():  # the client's connect, the server's wait for clients
        return RankFailure(
            f"rank {rank} of {world}: the ranks did not all join the job within {timeout:g} s ({first}): if "
            "a rank stopped before (an error of its command or files), its own error says why, else check "
            "MASTER_ADDR and MASTER_PORT; nothing was computed")
    return RankFailure(
        f"rank {rank} of {world}: could not join the job ({first}): check MASTER_ADDR and MASTER_PORT (set, "
        "reachable, the port free on rank 0's machine); nothing was computed")


def _first_line(error: BaseException) -> str:
    """A backend error's first line, at most 200 characters (gloo's run to pages), else its type."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


@contextlib.contextmanager
def _killed_by_sigterm():
    """SIGTERM ends this process at once while it joins the process group (nothing computed yet).
    The command line's handler runs only between bytecodes, and a rank waiting inside
    ``init_process_group`` for a rank that had stopped (a refusal of rank 0's alone) outlived the
    launcher's SIGTERM until its SIGKILL, 30 s later."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is None:
        yield  # signal.signal raises in other threads; a handler set from C could not be put back
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def dist_timeout() -> float:
    """``$GCP_ROBUST_DIST_TIMEOUT`` (seconds a rank waits for the others), else the default.

    Raises:
        ConfigError: the variable is not a positive number (a traceback under torchrun before).
    """
    text = os.environ.get("GCP_ROBUST_DIST_TIMEOUT", "").strip()
    if not text:
        return float(DEFAULT_TIMEOUT)
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"`GCP_ROBUST_DIST_TIMEOUT` should be a positive number of seconds. Got {text!r}")
    return seconds


def choose_backend(device: torch.device) -> str:
    """The process group's backend: gloo, or ``$GCP_ROBUST_DIST_BACKEND`` (nccl on GPUs). gloo on
    GPUs too: see the module's text (NCCL was the default there; this project never ran it).

    Raises:
        ConfigError: the variable names another backend, or NCCL for CPU processes.
    """
    forced = os.environ.get(BACKEND_VARIABLE, "").strip().lower()
    if not forced:
        return "gloo"
    if forced not in ("nccl", "gloo"):
        raise ConfigError(f"`{BACKEND_VARIABLE}` should be nccl or gloo. Got {forced!r}")
    if forced == "nccl" and device.type != "cuda":
        raise ConfigError(f"`{BACKEND_VARIABLE}=nccl` needs --device cuda (NCCL runs on GPUs only); "
                          "unset it to use gloo")
    return forced


def rank_gpu(local_rank: int, gpus: int, backend: str) -> int:
    """The GPU of the rank with ``local_rank`` on a machine with ``gpus`` GPUs.

    NCCL needs a GPU per rank; under gloo ranks beyond the GPU count share them round-robin.

    Raises:
        ConfigError: more NCCL ranks on this machine than GPUs.
    """
    if local_rank < gpus:
        return local_rank
    if backend == "gloo" and gpus > 0:
        return local_rank % gpus
    raise ConfigError(f"local rank {local_rank} has no GPU of its own (this machine has {gpus}) and NCCL "
                      f"needs one per rank: start at most {gpus} processes per machine, or unset "
                      f"{BACKEND_VARIABLE} to use gloo, which lets ranks share GPUs")


def _destroy_process_group(*, barrier: bool = False) -> None:
    """Tear the process group down while the interpreter is still whole.

    Without it, Gloo's worker threads can still hold work items with Python tensors at
    interpreter finalization, and releasing them aborts the process ("terminate called
    without an active exception", SIGABRT) after all its work is done (pytorch/pytorch#190489,
    #179291): about one 2-rank run in ten on a loaded machine. It still happened after this
    teardown, so the CLI's ranks that succeeded leave before finalization
    (:func:`leave_after_success`); this remains the teardown at exit.
    """
    import torch.distributed as dist

    if dist.is_initialized():
        # ``barrier``: every rank done with the group before any tears it down; never at exit after
        # an error (atexit), where the other ranks wait in another collective and would hold the
        # failed rank, unseen by torchrun, for the whole timeout
        try:
            if barrier:
                dist.barrier()
        except Exception:  # noqa: BLE001 - a failed rank broke the group: tear down what is left
            pass
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - exiting anyway; a failed rank may have broken the group
            pass
    if Distributed._current is not None:
        Distributed._current._restore_sigterm()


def leave_after_success() -> None:
    """End this torchrun rank, its work done and stored: every rank meets at a barrier, tears the
    process group down and leaves with ``os._exit(0)`` (output flushed), skipping the interpreter's
    and C++'s finalization, where Gloo's threads could abort a finished rank (see
    :func:`_destroy_process_group`) and so fail a job whose results were all stored. Nothing
    happens outside a torchrun job."""
    if Distributed._current is None:
        return
    _destroy_process_group(barrier=True)  # every rank succeeded: all reach it
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def execute_distributed(tasks: Sequence, images, store, run, ctx, options, progress, job: Distributed,
                        settings: Mapping[str, Any] | None = None):
    """:func:`robustbench_gcp.engine.runner.execute` across the ranks of ``job``.

    ``settings`` (named values) are what every rank must share with rank 0: a rank started with
    other ones (another checkpoint, seed, suite option) stops before any work, naming them, where
    rank 0 stored its results as its own.

    ``store`` and ``run`` are used on rank 0 only (None elsewhere). The work goes in rounds of one
    load per rank. Rank 0 leases each round's loads in the store (:class:`_RoundLeases`) as
    :func:`~robustbench_gcp.engine.runner.execute` leases one process's, and sends them to every
    rank one round ahead, so that each rank decodes its next load while it computes this one; a
    job so holds about two rounds of leases, and beside other processes on the store it repeats
    none of their work, nor they its. The statistics count the whole job on rank 0 and the rank's
    own share elsewhere.
    """
    from robustbench_gcp.engine.runner import (
        ExecutionStats,
        ProgressHook,
        advance_total,
        cell_ids_of,
        check_all_stored,
        make_workload,
    )

    progress = progress if job.is_main and progress is not None else ProgressHook()
    if job.is_main:
        try:
            if store.read_only:  # before any rank computes: nothing it made could be stored
                check_all_stored(tasks, store, run)
        except GcpRobustError as error:  # the other ranks stop with it, rather than by the launcher
            job.stop_others(str(error), before_work=True)
            raise
        cell_ids = cell_ids_of(tasks, store, run)
        work = make_workload(tasks, store, run, cell_ids)
        shared = (images.fingerprint(), run.shard_size, work.total_images, work.units_total,
                  work.units_skipped, work.units_stored, dict(settings or {}))
    else:
        cell_ids, shared = None, None
    # rank 0's _Stop where it refused the run (a read-only store missing results): the others left at
    # once, and torchrun could stop rank 0 before it said why (helper-232)
    shared = _unless_stopped(job, job.broadcast(shared))
    # the run's shard size, as rank 0's
    fingerprint, shard_size, total, units_total, skipped, stored, theirs = shared
    ours = dict(settings or {})
    differ = [name for name in {**theirs, **ours} if theirs.get(name) != ours.get(name)]
    problem = (f"rank {job.rank} sees other images than rank 0 (are the data folder and --limit, --labels "
               "and --class-order the same on every machine?)" if fingerprint != images.fingerprint() else
               f"rank {job.rank} was started with other settings than rank 0: {', '.join(differ)} (every "
               "rank of a job runs the same command on the same files)" if differ else None)
    # every rank's, to rank 0 too, before any work: it stops saying why (it said only that it lost
    # contact, and to re-run the same command, on a machine that never saw the cause)
    problems = job.gather(problem)
    if problem is not None:
        _wait_for_rank_0(job)
        # rank 0 says it: on rank 0's machine (torchrun numbers a machine's ranks from its first, so
        # there the local rank is the rank) this rank stops quietly (each said it: helper-262); on
        # another machine its log says it too
        raise (RankErrorSent if job.local_rank == job.rank else RankFailure)(problem)
    if said := [p for p in problems or () if p is not None]:
        # each rank's own (those on rank 0's machine leave it to rank 0: helper-265), said once each
        refusal = RankFailure("\n  ".join(dict.fromkeys(said)))
        job.stop_others(str(refusal), before_work=True)  # they wait for the first round (helper-225)
        raise refusal
    stats = ExecutionStats(units_total=units_total, units_skipped=skipped)
    progress.plan(total, units_total, stored)
    started = time.perf_counter()
    leases = _RoundLeases(store, tasks, cell_ids, run, work.loads, job.world_size, stats, progress) \
        if job.is_main else None
    mine = _RankLoads(job.rank, tasks, images, shard_size, ctx, options, progress)
    current = _next_round(job, leases, idle=True, before_work=True)  # (loads, more to come)
    mine.receive(current[0])
    computed_before = False  # a round with loads gone by: a lost rank loses more than the work list
    while current[0] or current[1]:
        loads, _ = current
        # the next round's, before this one's images are decoded: the rank decodes its next meanwhile
        current = _next_round(job, leases, idle=not loads, before_work=not computed_before)
        mine.receive(current[0])
        if not loads:  # a round of waiting for units other processes hold
            continue
        computed_before = True
        error = None
        try:
            payload = mine.compute(loads[job.rank]) if job.rank < len(loads) else None
            if job.is_main and payload is not None:  # kept if another rank fails this round
                _commit(store, tasks, cell_ids, payload, stats)
        except RankFailure:  # the launcher's stop (Distributed._stopped): not this rank's error to send
            raise
        except GcpRobustError as failure:  # an unreadable image, a brought model's code, the store (full)
            gone = getattr(failure, "gone", None)  # a DataError's folder gone, said as this machine sees it
            error, payload = failure, _Failed(type(failure).__name__, str(failure), gone)
        try:
            gathered = job.gather((job.rank, payload))  # a failed rank's error too: rank 0 stores the rest
        except RankFailure:
            if error is not None:  # rank 0 left first (an error of its own, the launcher): say this one
                raise error from None
            raise
        if not job.is_main:
            if error is not None:
                _wait_for_rank_0(job)
                raise RankErrorSent(f"rank {job.rank} of {job.world_size}: {error}") from error
            for task, results, _ in (payload[1] if payload else ()):  # its own share, for its RankResult
                stats.units_computed += len(tasks[task].keys)
                stats.images_computed += results[0].n
            continue
        stored_error = None  # the store refusing another rank's results: the others are stopped too (they
        for rank, item in gathered:  # waited in the next round's broadcast, and said they "lost contact")
            if item is not None and rank != job.rank and not isinstance(item, _Failed):
                try:
                    _commit(store, tasks, cell_ids, item, stats)
                except RankFailure:
                    raise
                except GcpRobustError as failure:
                    stored_error = failure
                    break
                advance_total(progress, sum(results[0].n for _, results, _ in item[1]), ranks=True)
        failed = [item.error(rank, job.world_size) for rank, item in gathered
                  if isinstance(item, _Failed) and rank != job.rank]
        if problems := [e for e in (error, stored_error) if e is not None] + failed:
            said = problems[0]  # its own first, the others' after it (said the first alone)
            for other in problems[1:]:
                if str(other) != str(said):  # a full store refuses every commit: said once (helper-231)
                    said.add_note(f"{other} (failed in the same round)")
            # the others wait for the next round's loads, or after the last round for the job's end
            # (they returned as if it had succeeded, a command of several runs starting the next one)
            job.stop_others(str(said), before_work=False)
            raise said
    # every rank hears that the job ended well: after a last round rank 0 failed in, _Stop (above).
    # Rank 0 has stored every result by now: a rank lost since its last ones loses nothing (helper-232)
    _unless_stopped(job, job.broadcast(None, before_work=not computed_before, what="the job's end",
                                       after=STORED_ALL if job.is_main else AFTER_LOST))
    stats.seconds = time.perf_counter() - started
    return stats


def _next_round(job: Distributed, leases: _RoundLeases | None, *, idle: bool, before_work: bool):
    """The next round's loads, leased and sent by rank 0 (``leases``), received by the others; a
    store that refuses rank 0's leases (locked, full) stops the others with it: they waited in
    this broadcast, and said they "lost contact"."""
    sent = None
    if leases is not None:
        try:
            sent = leases.next_round(idle=idle)
        except RankFailure:  # the launcher's stop (Distributed._stopped)
            raise
        except GcpRobustError as error:
            job.stop_others(str(error), before_work=before_work)
            raise
    # nothing being computed and nothing more to send: every result is stored, a rank lost now loses
    # nothing (rank 0 said to re-run to compute the rest, helper-237)
    done = idle and sent is not None and not sent[0] and not sent[1]
    return _unless_stopped(job, job.broadcast(sent, before_work=before_work,
                                              after=STORED_ALL if done else AFTER_LOST))


def _unless_stopped(job: Distributed, received):
    """``received`` from rank 0, unless it is rank 0's :class:`_Stop` (another rank failed, or
    disagreed with rank 0 before any work): then this rank stops quietly, rank 0 saying why."""
    if isinstance(received, _Stop):
        _wait_for_rank_0(job)
        raise RankRefused(f"rank {job.rank} of {job.world_size}: rank 0 stopped the job: {received.why}")
    return received


def _wait_for_rank_0(job: Distributed) -> None:
    """On a rank other than 0 that stops with rank 0 (its error sent, or rank 0's :class:`_Stop`
    received): wait until rank 0 has said why and left (its leaving ends the wait; the launcher's
    stop too). Leaving at once, it had torchrun stop rank 0 before it said why ("stopped by the
    launcher")."""
    with contextlib.suppress(Exception):
        while True:  # rank 0 sends at most its _Stop, then leaves
            job.broadcast(None, before_work=False)


class _RoundLeases:
    """Rank 0's leases: each round's loads, one per rank, leased in the store just before they are
    sent (:class:`~robustbench_gcp.engine.runner.Leasing`); loads another process holds are looked
    at again once the others are leased, every ``WAIT_SECONDS`` when nothing else is left."""

    def __init__(self, store, tasks: Sequence, cell_ids: dict, run, loads: Sequence, ranks: int, stats,
                 progress) -> None:
        from robustbench_gcp.engine.runner import Leasing, shard_ranges

        self.store, self.tasks, self.ranks, self.progress = store, tasks, ranks, progress
        self.leasing = Leasing(store, tasks, cell_ids, shard_ranges(run.n_images, run.shard_size), stats,
                               progress)
        self.waiting = collections.deque(loads)
        self.said = False

    def next_round(self, idle: bool) -> tuple[list, bool]:
        """The next round's loads (at most one per rank) and whether more may follow. ``idle``: the
        ranks have nothing to compute meanwhile (then, with only held units left, it waits first)."""
        from robustbench_gcp.engine.runner import WAIT_SECONDS, waiting_words

        loads = []
        while len(loads) < self.ranks and self.waiting:
            leased = self.leasing(self.waiting.popleft())
            if leased is not None:
                loads.append(leased)
        held = self.leasing.busy
        if not self.waiting and held:  # only units other processes hold are left: look at them again
            if not loads and idle:
                if not self.said:
                    self.said = True
                    self.progress.say(waiting_words(held, self.tasks, self.store))
                time.sleep(WAIT_SECONDS)
            self.waiting.extend(held)
            held.clear()
        return loads, bool(self.waiting)


class _RankLoads:
    """This rank's loads as they are sent, computed by one
    :func:`~robustbench_gcp.engine.runner.compute`, which decodes the next load while it computes
    one; a new one starts after a round the rank had no load in."""

    def __init__(self, rank: int, tasks: Sequence, images, shard_size: int, ctx, options, progress) -> None:
        from robustbench_gcp.engine.runner import task_sources

        self.rank, self.tasks, self.sources = rank, tasks, task_sources(tasks)
        self.images, self.shard_size = images, shard_size
        self.ctx, self.options, self.progress = ctx, options, progress
        self.queue: collections.deque = collections.deque()
        self.produced = None
        self.ended = False  # the compute looked for a next load and found none: it ends after this one

    def receive(self, loads: Sequence) -> None:
        """A round's loads, one per rank: this rank's, if any, is queued."""
        if self.rank < len(loads):
            self.queue.append(loads[self.rank])

    def _next(self):
        if self.queue:
            return self.queue.popleft()
        self.ended = True
        return None

    def compute(self, load) -> tuple:
        """``load``'s results, ``(shard, [(task index, results, seconds), ...])``."""
        from robustbench_gcp.engine.runner import compute

        if self.produced is None:
            self.ended = False
            self.produced = compute(iter(self._next, None), self.tasks, self.sources, self.images,
                                    self.shard_size, self.ctx, self.options, self.progress)
        # its tasks, taken one by one: grouping them looked at the next load's first task (decoding
        # its images, and failing there before this round was sent)
        entries = list(itertools.islice(self.produced, len(load.tasks)))
        if self.ended:
            self.produced.close()
            self.produced = None
        return entries[0][0].shard, [(task, results, secs) for _, task, results, secs in entries]


def _commit(store, tasks: Sequence, cell_ids: dict, item: tuple, stats) -> None:
    """Store one rank's load of a round: ``(shard, [(task index, results, seconds), ...])``."""
    from robustbench_gcp.engine.runner import commit_unit

    shard, entries = item
    for task_index, results, seconds in entries:
        commit_unit(store, cell_ids, tasks[task_index], shard, results, seconds, stats)
