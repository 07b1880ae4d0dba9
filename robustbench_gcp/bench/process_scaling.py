"""Throughput of ``gcp-robust eval`` in one process against N under torchrun (``gcp-robust bench scaling``).

Both runs evaluate the same plan from an empty store, as child processes with
``threads`` threads each, and count only the engine's time (rank 0's
``computed.seconds``, not start-up).

Example:
    >>> rows = scaling("demo-gap", suite="imagenet-c", corruptions="fog", severities="3",
    ...                limit=20, device="cpu")              # doctest: +SKIP
    >>> [r["processes"] for r in rows]                      # doctest: +SKIP
    [1, 2]
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from robustbench_gcp.errors import ConfigError, GcpRobustError

if TYPE_CHECKING:
    import torch


__all__ = ["eval_throughput", "scaling"]


def _child_error(stderr: str) -> str:
    """A failed child's error: from its last line starting "Error:" to the end (eval's messages
    run over several lines, and the last of them alone dropped what the file did not fit), else its
    last line."""
    lines = stderr.strip().splitlines() or ["(no output)"]
    starts = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    said = lines[starts[-1]:] if starts else lines[-1:]
    return "\n  ".join(line.strip() for line in said if line.strip())


def eval_throughput(processes: int, args: list[str], env: dict) -> dict:
    """Run ``gcp-robust eval`` with ``processes`` ranks; images and engine seconds from rank 0's JSON.

    Args:
        processes: 1 (a plain process) or more (``torch.distributed.run --standalone``).
        args: the command line after ``gcp-robust`` (``eval ... --format json``).
        env: the child processes' environment.

    Returns:
        ``{"processes", "images", "seconds", "images_per_s"}``.

    Raises:
        GcpRobustError: the run failed (its last line of stderr in the message).
    """
    launcher = [sys.executable, "-m", "robustbench_gcp"]
    if processes > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                    str(processes), "-m", "robustbench_gcp"]
    process = subprocess.Popen([*launcher, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        stdout, stderr = process.communicate()
    except BaseException:  # Ctrl-C, SIGTERM: torchrun stops its ranks (in sessions of their own) first
        _stop(process)
        raise
    if process.returncode != 0:
        raise GcpRobustError(f"the {processes}-process run failed: {_child_error(stderr)}\n  (it ran "
                             f"`gcp-robust {shlex.join(args)}`: an option the message names is that "
                             "command's)")
    report = json.loads(stdout)
    computed = report["computed"]
    return {"processes": processes, "images": computed["images"], "seconds": computed["seconds"],
            "images_per_s": computed["images"] / computed["seconds"] if computed["seconds"] else None}


def _stop(process: subprocess.Popen, grace: float = 20.0) -> None:
    """End a run this bench started: SIGTERM, which torchrun passes on to its ranks, and SIGKILL
    after ``grace`` seconds (``subprocess.run`` killed torchrun at once, and its ranks, in sessions
    of their own, went on computing as orphans)."""
    if process.poll() is None:
        process.terminate()
    try:
        process.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def takes_corruptions(suite: str, config: str | None = None) -> bool:
    """Whether ``suite`` of benchmarks.yaml (``config``; None: the shipped one) takes
    ``--corruptions`` and ``--severities``.

    Raises:
        UnknownNameError: ``suite`` is not in benchmarks.yaml.
    """
    from robustbench_gcp.config import load_config
    from robustbench_gcp.suites import get_suite

    taken = {flag.name for flag in get_suite(load_config(config).suite(suite).kind).flags}
    return {"corruptions", "severities"} <= taken


def corruption_flags(suite: str, config: str | Path | None, corruptions: str | None,
                     severities: str | None) -> dict[str, str]:
    """The ``--corruptions`` / ``--severities`` a scaling run passes to ``eval``: those given, else
    the suite's own corruptions (``imagenet-c-extra``'s 4; a landscape's none: its clean cells) at
    severity 3 alone, a bench's size; nothing for a suite without corruptions (``--suite
    imagenet-c-extra`` ran the 15 benchmark corruptions, which the bench's defaults were).

    Raises:
        UnknownNameError: ``suite`` is not in benchmarks.yaml.
    """
    from robustbench_gcp.config import load_config

    if not takes_corruptions(suite, config):
        return {}
    own = tuple(getattr(load_config(config).suite(suite), "corruptions", ()))
    if corruptions is None and not own:  # no corrupted cells: severities only where given (eval says why not)
        return {"severities": severities} if severities is not None else {}
    # (an empty --corruptions goes to eval, which refuses it: it was the whole suite, in silence)
    return {"corruptions": ",".join(own) if corruptions is None else corruptions,
            "severities": severities if severities is not None else "3"}


def _check_demo_fits(suite: str, config: str | Path | None) -> None:
    """The demo data are ImageNet-style photographs: a suite on another dataset's images (CIFAR's
    32 px) refuses them in each child run; said here, before either starts.

    Raises:
        ConfigError: ``suite`` runs on another dataset than ImageNet.
        UnknownNameError: ``suite`` is not in benchmarks.yaml.
    """
    from robustbench_gcp.config import load_config
    from robustbench_gcp.data.datasets import DATASETS

    dataset = load_config(config).suite(suite).dataset
    if dataset not in (None, "imagenet"):
        info = DATASETS[dataset]
        raise ConfigError(f"suite '{suite}' runs on {info.title} images ({info.image_size} px) and the demo "
                          f"data are ImageNet-style photographs: give --data, a folder of {info.title} "
                          "images")


def scaling(model: str, *, checkpoint: str | None = None, random_weights: bool = False,
            data: str | None = None, class_order: str | None = None, suite: str = "imagenet-c",
            corruptions: str | None = None, severities: str | None = None, limit: int | None = None,
            device: str | torch.device = "auto", batch_size: int = 32, shard_size: int = 20,
            threads: int = 1, processes: int = 2, config: str | Path | None = None,
            repeats: int = 2) -> list[dict]:
    """Images per second of the same evaluation with 1 process and with ``processes``.

    Args:
        model: a model of benchmarks.yaml or the registry.
        checkpoint, random_weights: ``eval``'s ``--checkpoint`` / ``--random-weights``; the model
            and its weights are checked (a checkpoint downloaded) here, before either run.
        data: image folder (default: the embedded demo data, generated in a temporary folder).
        class_order: ``eval``'s ``--class-order`` for ``data`` (None: the dataset's; the demo data
            is always ``sorted``).
        suite: a suite of benchmarks.yaml (``config``; None: the shipped one).
        corruptions, severities: ``eval``'s ``--corruptions`` / ``--severities`` (None: the suite's
            own corruptions, at severity 3 alone: :func:`corruption_flags`).
        limit: class-balanced subset of the images (None: all).
        device: ``eval``'s ``--device``, resolved here (``auto`` -> ``cuda`` or ``cpu``) so that
            both runs get the same device and an absent one fails before any run starts.
        batch_size, shard_size: ``eval``'s options.
        threads: threads per process (``OMP_NUM_THREADS``).
        processes: ranks of the parallel run.
        repeats: rounds of both runs, each from an empty store, in turns (1 then N, N then 1, ...:
            neither run is always the first, on a cold machine); the fastest of each counts.

    Returns:
        Two rows of :func:`eval_throughput` (1 process, then ``processes``), each the fastest
        of its ``repeats`` and with ``ratio``: its images/s over the single process's (None
        without a rate).

    Raises:
        ConfigError: ``device`` is not a device of this machine, ``limit`` is not a positive
            integer, NCCL (asked for) would have more ranks than GPUs, or ``data`` is None for a suite on
            another dataset than ImageNet.
        UnknownNameError: ``suite`` or ``model`` is not in benchmarks.yaml.
        MissingCheckpointError, CheckpointError: the model has no weights, or they cannot be had.
        GcpRobustError: a run failed.
    """
    from robustbench_gcp.engine.device import resolve_device
    from robustbench_gcp.errors import check_integer

    device = resolve_device(device)
    check_integer("repeats", repeats)
    if limit is not None:
        check_integer("limit", limit)
    if data is None:
        _check_demo_fits(suite, config)
    if device.type == "cuda":  # NCCL's ranks (asked for) need a GPU each: said before the 1-process run
        import torch

        from robustbench_gcp.engine.distributed import choose_backend, rank_gpu

        gpus = torch.cuda.device_count()
        backend = choose_backend(device)  # a mistyped one said as such, not as NCCL's GPU count
        try:
            rank_gpu(processes - 1, gpus, backend)
        except ConfigError:
            raise ConfigError(f"--processes {processes} needs {processes} GPUs under NCCL, one per process, "
                              f"and this machine has {gpus}: unset GCP_ROBUST_DIST_BACKEND to use gloo, "
                              "which lets the processes share them") from None
    flags = corruption_flags(suite, config, corruptions, severities)
    with tempfile.TemporaryDirectory(prefix="gcp-robust-scaling-") as tmp:
        if data is None:
            if class_order not in (None, "sorted"):  # it was replaced, in silence (helper-289)
                raise ConfigError(f"`--class-order {class_order}` applies to --data; the demo data's class "
                                  "folders are named, in sorted order")
            from robustbench_gcp.data.demo_images import build_demo_dataset

            data = str(build_demo_dataset(Path(tmp) / "data") / "val")
            class_order = "sorted"  # named class folders, not wnids
        # planned here, as each run will: the model, its weights (their fit) and a bad --corruptions,
        # --severities or --data are one line before any run (each was the 1-process run's failure)
        from robustbench_gcp.pipeline import plan

        plan(model, suite=suite, data=data, config=config, checkpoint=checkpoint,
             random_weights=random_weights, class_order=class_order, store=Path(tmp) / "plan.db",
             device=str(device), limit=limit, batch_size=batch_size, shard_size=shard_size, **flags)
        # TMPDIR: torchrun's torchelastic_* folders (and any run's temporary files) go with this one
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "GIT_PYTHON_REFRESH": "quiet", "TMPDIR": tmp}

        def _eval_args(n: int, round_: int) -> list[str]:  # each run from an empty store of its own
            args = ["eval", "--model", model, "--suite", suite, "--data", data,
                    *(["--config", str(config)] if config is not None else []),
                    *(["--checkpoint", checkpoint] if checkpoint is not None else []),
                    *(["--random-weights"] if random_weights else []),
                    *(["--class-order", class_order] if class_order else []),
                    "--store", str(Path(tmp) / f"store-{n}-{round_}.db"), "--device", str(device),
                    "--batch-size", str(batch_size), "--shard-size", str(shard_size), "--workers", "0",
                    "--format", "json"]
            for name, value in flags.items():
                args += [f"--{name}", value]
            if limit is not None:
                args += ["--limit", str(limit)]
            return args

        best: dict[int, dict] = {}
        for round_ in range(repeats):
            for n in (1, processes)[::1 if round_ % 2 == 0 else -1]:
                row = eval_throughput(n, _eval_args(n, round_), env)
                if n not in best or (row["seconds"] or 0) < (best[n]["seconds"] or 0):
                    best[n] = row
        rows = [best[1], best[processes]]
    for row in rows:
        row["ratio"] = row["images_per_s"] / rows[0]["images_per_s"] if rows[0]["images_per_s"] else None
    return rows
