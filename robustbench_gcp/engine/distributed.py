"""Several processes under torchrun: rank 0 owns the store, every rank computes shards.

``torchrun --nproc-per-node N $(which gcp-robust) eval ...`` runs the command
unchanged: the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR ...) is detected, torch.distributed is initialized (NCCL on GPUs,
gloo on CPU; ``GCP_ROBUST_DIST_BACKEND=gloo`` forces gloo, which lets several ranks
share one GPU, e.g. to try torchrun on a one-GPU machine) and the work is shared out:

1. rank 0 opens the SQLite store, drops finished (cell, shard) units, leases the
   rest for the job (other processes on the store skip them, and it theirs) and
   broadcasts the *loads* it leased (a shard of images and the cells that need it);
2. rank r computes loads r, r + N, r + 2N ... in rounds; after every round the
   ranks' counts and bitmaps are gathered on rank 0, which commits them; units
   another process held are leased and computed in later passes, or found stored;
3. the other ranks never open the store, and only rank 0 prints.

No image is evaluated twice and none is padded in: a load belongs to exactly
one rank, and randomness depends only on (seed, cell, image index), so the
numbers equal a single process's. If a rank dies, the others fail at the next
exchange (gloo and NCCL notice the closed connection) or when the launcher
stops them, and say so; every round committed before stays, and re-running the
command finishes the rest.
"""

from __future__ import annotations

import atexit
import datetime
import itertools
import os
import signal
import sys
import time
from collections.abc import Sequence

import torch

from robustbench_gcp.engine.ranks import env_int, launched_by_torchrun
from robustbench_gcp.errors import ConfigError, GcpRobustError

DEFAULT_TIMEOUT = 1800.0  # seconds a rank waits for the others at an exchange
BACKEND_VARIABLE = "GCP_ROBUST_DIST_BACKEND"  # nccl or gloo; default: nccl on GPUs, gloo on CPU


class RankFailure(GcpRobustError):
    """A rank lost the others, or was stopped by the launcher."""


class RankRefused(RankFailure):
    """Rank 0 refused the run before any work and says why itself: the other ranks stop quietly."""


class Distributed:
    """This process's place in a torchrun job (a process-wide singleton)."""

    _current: Distributed | None = None

    def __init__(self, rank: int, world_size: int, local_rank: int, backend: str, gpu: int | None = None):
        self.rank, self.world_size, self.local_rank, self.backend = rank, world_size, local_rank, backend
        self.gpu = local_rank if gpu is None else gpu  # this rank's GPU on its machine

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
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
            cls._current = Distributed(dist.get_rank(), dist.get_world_size(), local_rank, backend, gpu)
            signal.signal(signal.SIGTERM, cls._current._stopped)
            atexit.register(_destroy_process_group)
        return cls._current

    def device(self, device: torch.device) -> torch.device:
        """Each rank's own GPU (LOCAL_RANK; shared round-robin under gloo); the CPU stays the CPU."""
        return torch.device("cuda", self.gpu) if device.type == "cuda" else device

    def _stopped(self, signum, frame):
        raise RankFailure(
            f"rank {self.rank} of {self.world_size}: stopped by the launcher (signal {signum}): another rank "
            "failed or the job was cancelled; finished shards are in the store, re-run the same command "
            "to compute the rest"
        )

    def _exchange(self, what: str, operation, *, broadcasting: bool = False):
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
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise RankFailure(
                f"rank {self.rank} of {self.world_size}: lost contact with the other ranks while {what} "
                f"({first}); finished shards are in the store, re-run the same command to compute the rest"
            ) from None

    def broadcast(self, obj=None, *, before_work: bool = True):
        """``obj`` from rank 0, on every rank (``before_work``: no rank has computed anything yet)."""
        import torch.distributed as dist

        box = [obj]
        self._exchange("receiving the work list", lambda: dist.broadcast_object_list(box, src=0),
                       broadcasting=before_work)
        return box[0]

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` on rank 0 (None elsewhere)."""
        import torch.distributed as dist

        out = [None] * self.world_size if self.is_main else None
        self._exchange("exchanging results", lambda: dist.gather_object(obj, out, dst=0))
        return out


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
    """The process group's backend: NCCL on GPUs, gloo on CPU, or ``$GCP_ROBUST_DIST_BACKEND``.

    Raises:
        ConfigError: the variable names another backend, or NCCL for CPU processes.
    """
    forced = os.environ.get(BACKEND_VARIABLE, "").strip().lower()
    if not forced:
        return "nccl" if device.type == "cuda" else "gloo"
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
                      f"needs one per rank: start at most {gpus} processes per machine, or set "
                      f"{BACKEND_VARIABLE}=gloo to let ranks share GPUs")


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


def execute_distributed(tasks: Sequence, images, store, run, ctx, options, progress, job: Distributed):
    """:func:`robustbench_gcp.engine.runner.execute` across the ranks of ``job``.

    ``store`` and ``run`` are used on rank 0 only (None elsewhere). Rank 0 leases the units in the
    store for the whole job, as :func:`~robustbench_gcp.engine.runner.execute` does for one process,
    a pass at a time: every load it can lease, then the ranks compute them. Units another process
    holds are looked at again in further passes (every ``WAIT_SECONDS``, each broadcast to all
    ranks) until stored or leased, so that a job beside other processes on the store repeats none
    of their work, nor they its. The statistics count the whole job on rank 0 and the rank's own
    share elsewhere.
    """
    from robustbench_gcp.engine.runner import (
        WAIT_SECONDS,
        ExecutionStats,
        Leasing,
        ProgressHook,
        cell_ids_of,
        check_all_stored,
        make_workload,
        shard_ranges,
        waiting_words,
    )

    progress = progress if job.is_main and progress is not None else ProgressHook()
    if job.is_main:
        try:
            if store.read_only:  # before any rank computes: nothing it made could be stored
                check_all_stored(tasks, store, run)
        except GcpRobustError as error:
            job.broadcast(str(error))  # the other ranks stop with it, rather than by the launcher
            raise
        cell_ids = cell_ids_of(tasks, store, run)
        work = make_workload(tasks, store, run, cell_ids)
        shared = (images.fingerprint(), run.shard_size, work.total_images, work.units_total,
                  work.units_skipped)
    else:
        cell_ids, shared = None, None
    shared = job.broadcast(shared)
    if isinstance(shared, str):  # rank 0 refused the run
        raise RankRefused(f"rank {job.rank} of {job.world_size}: rank 0 stopped before any work: {shared}")
    fingerprint, shard_size, total, units_total, skipped = shared  # the run's shard size, as rank 0's
    if fingerprint != images.fingerprint():
        raise RankFailure(f"rank {job.rank} sees other images than rank 0 (is the data folder the same on "
                          "every machine?)")
    stats = ExecutionStats(units_total=units_total, units_skipped=skipped)
    progress.plan(total, units_total, skipped)
    started = time.perf_counter()
    waiting, said = (work.loads if job.is_main else []), False
    shards = shard_ranges(run.n_images, run.shard_size) if job.is_main else []
    for first in itertools.chain([True], itertools.repeat(False)):
        if job.is_main:  # lease what it can; the rest (other processes hold it) waits for the next pass
            leasing = Leasing(store, tasks, cell_ids, shards, stats, progress)
            leased = [load for load in map(leasing, waiting) if load is not None]
            waiting = leasing.busy
        loads, more = job.broadcast((leased, bool(waiting)) if job.is_main else None, before_work=first)
        _compute_pass(loads, tasks, images, shard_size, store, cell_ids, ctx, options, progress, job, stats)
        if not more:
            break
        if job.is_main:
            if not said:
                said = True
                progress.say(waiting_words(waiting, tasks, store))
            time.sleep(WAIT_SECONDS)
    stats.seconds = time.perf_counter() - started
    return stats


def _compute_pass(loads: Sequence, tasks: Sequence, images, shard_size: int, store, cell_ids, ctx, options,
                  progress, job: Distributed, stats) -> None:
    """Compute one pass's ``loads``: rank r those at r, r + N, r + 2N ... in rounds, each round's
    results gathered on rank 0 and committed there."""
    from robustbench_gcp.engine.runner import compute, task_sources

    mine = loads[job.rank::job.world_size]
    rounds = -(-len(loads) // job.world_size)
    produced = compute(mine, tasks, task_sources(tasks), images, shard_size, ctx, options, progress)
    for round_index in range(rounds):
        payload = None
        # its load's tasks, taken one by one: grouping them looked at the next load's first task
        # (decoding its images, and failing there before this round was sent)
        if round_index < len(mine) and mine[round_index].tasks:
            entries = list(itertools.islice(produced, len(mine[round_index].tasks)))
            payload = (entries[0][0].shard, [(task, results, secs) for _, task, results, secs in entries])
        if job.is_main and payload is not None:  # its own first: kept if another rank fails this round
            _commit(store, tasks, cell_ids, payload, stats)
        gathered = job.gather((job.rank, payload))
        if not job.is_main:  # this rank's own share, for its RankResult
            for task, results, _ in (payload[1] if payload else ()):
                stats.units_computed += len(tasks[task].keys)
                stats.images_computed += results[0].n
            continue
        for rank, item in gathered:
            if item is not None and rank != job.rank:
                _commit(store, tasks, cell_ids, item, stats)
                progress.advance_total(sum(results[0].n for _, results, _ in item[1]))


def _commit(store, tasks: Sequence, cell_ids: dict, item: tuple, stats) -> None:
    """Store one rank's load of a round: ``(shard, [(task index, results, seconds), ...])``."""
    from robustbench_gcp.engine.runner import commit_unit

    shard, entries = item
    for task_index, results, seconds in entries:
        commit_unit(store, cell_ids, tasks[task_index], shard, results, seconds, stats)
